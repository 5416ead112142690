"""The "afternoon" Python version of authz's Check: grpcio + PyJWT + pycasbin, nothing of authz's own.

    python bench/peers/pycasbin_service.py --port P --policy DIR --jwks-url URL --issuer ISS
        --audience AUD [--roles-claim CLAIM] [--enforcer Enforcer|SyncedEnforcer]

Serves `authz.api.v1.AuthorizationService/Check` from the generated stubs. The token is
verified with PyJWT (RS256 only; signature, exp, iss and aud checked; keys from the JWKS
URL through `PyJWKClient`, which caches them). The token's grants (its `permissions` and
roles) act as the subject's roles: the request is allowed when pycasbin allows it for the
token's subject or for any one of its grants (see bench/peers/README.md). Other RPCs are
left unimplemented, as a team that needed only Check would leave them.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import casbin
import grpc
import jwt

from authz.api.v1 import authz_pb2, authz_pb2_grpc

ENFORCERS = {"Enforcer": casbin.Enforcer, "SyncedEnforcer": casbin.SyncedEnforcer}


class Service(authz_pb2_grpc.AuthorizationServiceServicer):  # type: ignore[misc]
    """Check: verify the token, then ask pycasbin once per name the subject holds."""

    def __init__(self, enforcer: Any, jwks: jwt.PyJWKClient, issuer: str, audience: str, roles: str) -> None:
        self.enforcer = enforcer
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.roles_claim = roles

    def Check(  # noqa: N802 (the generated servicer's method name)
        self, request: authz_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> authz_pb2.CheckResponse:
        """Allowed when the subject, or any permission or role in its token, is allowed."""
        token = request.token.removeprefix("Bearer ")
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            return authz_pb2.CheckResponse(reason=authz_pb2.REASON_TOKEN_EXPIRED)
        except (jwt.PyJWTError, ValueError):
            return authz_pb2.CheckResponse(reason=authz_pb2.REASON_TOKEN_SIGNATURE_INVALID)
        subject = str(claims["sub"])
        names = [subject, *_strings(claims.get("permissions")), *_strings(claims.get(self.roles_claim))]
        allowed = any(self.enforcer.enforce(name, request.resource, request.action) for name in names)
        return authz_pb2.CheckResponse(
            allowed=allowed,
            reason=authz_pb2.REASON_ALLOWED if allowed else authz_pb2.REASON_NO_MATCHING_RULE,
            subject=subject,
        )


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def main() -> None:
    """Load the policy, serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="pycasbin_service")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--policy", type=Path, required=True)
    parser.add_argument("--jwks-url", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--roles-claim", default="")
    parser.add_argument("--enforcer", choices=ENFORCERS, default="Enforcer")
    ns = parser.parse_args()
    enforcer = ENFORCERS[ns.enforcer](str(ns.policy / "model.conf"), str(ns.policy / "policy.csv"))
    service = Service(enforcer, jwt.PyJWKClient(ns.jwks_url), ns.issuer, ns.audience, ns.roles_claim)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    authz_pb2_grpc.add_AuthorizationServiceServicer_to_server(service, server)
    server.add_insecure_port(f"127.0.0.1:{ns.port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
