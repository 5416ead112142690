"""`authz check` and `authz principal`: ask a running service and print the answer."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from authz.cli.attrs import UsageError, parse_attributes
from authz.cli.output import print_decision

DEFAULT_ADDRESS = "127.0.0.1:50051"


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    """--address, --token and TLS options shared by the client commands."""
    parser.add_argument(
        "--address",
        default=os.environ.get("AUTHZ_ADDRESS", DEFAULT_ADDRESS),
        help="host:port of the authz gRPC listener (env AUTHZ_ADDRESS)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("AUTHZ_TOKEN", ""),
        help="access token (env AUTHZ_TOKEN); never printed",
    )
    parser.add_argument("--tls-ca", help="CA certificate to verify a TLS listener (default: the system's)")
    parser.add_argument("--tls-cert", help="client certificate for mTLS")
    parser.add_argument("--tls-key", help="client key for mTLS")
    parser.add_argument("--timeout", type=float, default=5.0, help="deadline in seconds")


def channel_for(ns: argparse.Namespace) -> grpc.Channel:
    """A channel to `--address`, with TLS when any TLS option is given."""
    # Any TLS option means TLS: a client certificate must never be dropped for plaintext.
    if not (ns.tls_ca or ns.tls_cert or ns.tls_key):
        return grpc.insecure_channel(ns.address)
    if bool(ns.tls_cert) != bool(ns.tls_key):
        raise UsageError("--tls-cert and --tls-key go together: give both for mTLS, or neither")
    creds = grpc.ssl_channel_credentials(
        root_certificates=Path(ns.tls_ca).read_bytes() if ns.tls_ca else None,
        private_key=Path(ns.tls_key).read_bytes() if ns.tls_key else None,
        certificate_chain=Path(ns.tls_cert).read_bytes() if ns.tls_cert else None,
    )
    return grpc.secure_channel(ns.address, creds)


def request_structs(ns: argparse.Namespace) -> tuple[struct_pb2.Struct, struct_pb2.Struct]:
    """The `--attr` / `--attrs-json` attributes and the `--ctx` / `--context-json` context as Structs."""
    attrs = struct_pb2.Struct()
    attrs.update(parse_attributes(ns.attr, ns.attrs_json))
    context = struct_pb2.Struct()
    context.update(parse_attributes(ns.ctx, ns.context_json))
    return attrs, context


def _reason(value: int) -> str:
    return str(authz_pb2.Reason.Name(value))


def run_check(ns: argparse.Namespace) -> int:
    """Print one decision; exit 0 when allowed, 1 when denied."""
    attrs, context = request_structs(ns)
    request = authz_pb2.CheckRequest(
        token=ns.token,
        resource=ns.resource,
        action=ns.action,
        attributes=attrs,
        context=context,
        explain=True,
        enforce_context=ns.enforce_context,
    )
    with channel_for(ns) as channel:
        reply = authz_pb2_grpc.AuthorizationServiceStub(channel).Check(request, timeout=ns.timeout)
    print_decision(
        ns.action,
        ns.resource,
        reply.allowed,
        _reason(reply.reason),
        [
            ("subject", reply.subject or "-"),
            ("message", reply.message),
            ("policy", f"{reply.policy_version}   decision: {reply.decision_id}"),
        ],
        reply.matched_rules,
    )
    return 0 if reply.allowed else 1


def run_principal(ns: argparse.Namespace) -> int:
    """Print the verified principal and hints; exit 1 when the token is not accepted."""
    with channel_for(ns) as channel:
        reply = authz_pb2_grpc.AuthorizationServiceStub(channel).GetPrincipal(
            authz_pb2.GetPrincipalRequest(token=ns.token), timeout=ns.timeout
        )
    if reply.authenticated:
        print(f"authenticated: {reply.subject}{'  (machine)' if reply.machine else ''}")
        print(f"  permissions: {', '.join(reply.permissions) or '-'}")
        print(f"  roles:       {', '.join(reply.roles) or '-'}")
        print(f"  scopes:      {', '.join(reply.scopes) or '-'}")
        print(f"  org_id:      {reply.org_id or '-'}")
        print(f"  client_id:   {reply.client_id or '-'}")
        if reply.HasField("expires_at"):
            print(f"  expires_at:  {reply.expires_at.ToJsonString()}")
    else:
        print(f"not authenticated: {_reason(reply.reason)}: {reply.message}")
    for hint in reply.hints:
        print(f"hint: {hint}", file=sys.stdout)
    return 0 if reply.authenticated else 1
