"""TLS and mTLS on the gRPC listener, with certificates generated at test time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from tests.certs import Pki, make_pki
from tests.conftest import RunningServer, settings_for


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A second, unrelated CA: its certificates must not be trusted."""
    return make_pki(tmp_path_factory.mktemp("other-pki"), name="some other CA")


def _credentials(ca: Path, cert: Path | None = None, key: Path | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


def _use_secure_channel(srv: RunningServer, credentials: grpc.ChannelCredentials) -> None:
    # The fixture's channel is plaintext; talk TLS instead and wait for SERVING over it.
    srv.channel.close()
    srv.channel = grpc.secure_channel(srv.address, credentials)
    srv.stub = authz_pb2_grpc.AuthorizationServiceStub(srv.channel)
    srv.wait_serving()


def _check(address: str, credentials: grpc.ChannelCredentials | None, token: str) -> Any:
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        stub = authz_pb2_grpc.AuthorizationServiceStub(channel)
        return stub.Check(
            authz_pb2.CheckRequest(token=token, resource="/api/orders/1", action="GET"), timeout=5
        )


def _refused(address: str, credentials: grpc.ChannelCredentials | None, token: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _check(address, credentials, token)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_server(make_server, issuer, pki):
    srv = make_server(
        settings_for(issuer, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)), wait=False
    )
    _use_secure_channel(srv, _credentials(pki.ca))
    token = issuer.mint(permissions=["read:orders"])
    reply = srv.stub.Check(
        authz_pb2.CheckRequest(token=token, resource="/api/orders/1", action="GET"), timeout=5
    )
    assert reply.allowed
    # Without a client CA configured, a client certificate is optional.
    assert _check(srv.address, _credentials(pki.ca, pki.client_cert, pki.client_key), token).allowed


def test_tls_server_refuses_plaintext(make_server, issuer, pki):
    srv = make_server(
        settings_for(issuer, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)), wait=False
    )
    _use_secure_channel(srv, _credentials(pki.ca))
    _refused(srv.address, None, issuer.mint(permissions=["read:orders"]))


def test_client_rejects_a_server_from_an_untrusted_ca(make_server, issuer, pki, other_pki):
    srv = make_server(
        settings_for(issuer, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)), wait=False
    )
    _use_secure_channel(srv, _credentials(pki.ca))
    _refused(srv.address, _credentials(other_pki.ca), issuer.mint(permissions=["read:orders"]))


def test_mtls(make_server, issuer, pki, other_pki):
    settings = settings_for(
        issuer, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key), tls_client_ca=str(pki.ca)
    )
    srv = make_server(settings, wait=False)
    with_cert = _credentials(pki.ca, pki.client_cert, pki.client_key)
    _use_secure_channel(srv, with_cert)
    token = issuer.mint(permissions=["read:orders"])
    assert _check(srv.address, with_cert, token).allowed
    _refused(srv.address, _credentials(pki.ca), token)  # no client certificate
    _refused(
        srv.address, _credentials(pki.ca, other_pki.client_cert, other_pki.client_key), token
    )  # foreign CA
    _refused(srv.address, None, token)  # plaintext
