"""TLS and mTLS on the gRPC listener, with certificates generated at test time."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509

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


# --- certificate rotation --------------------------------------------------------------------


def _served_serial(port: int, ca: Path, *, grpc_alpn: bool) -> int:
    """The serial of the certificate a new TLS connection to `port` is shown."""
    context = ssl.create_default_context(cafile=str(ca))
    if grpc_alpn:
        context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def _serial(cert: Path) -> int:
    return int(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number)


def test_grpc_takes_a_rotated_certificate_on_the_next_connection(make_server, issuer, tmp_path):
    pki = make_pki(tmp_path / "pki")
    srv = make_server(
        settings_for(issuer, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)), wait=False
    )
    _use_secure_channel(srv, _credentials(pki.ca))
    token = issuer.mint(permissions=["read:orders"])
    first = _serial(pki.server_cert)
    assert _served_serial(srv.app.port, pki.ca, grpc_alpn=True) == first

    # Half-written: the new certificate beside the old key. The old pair keeps serving.
    renewed = pki.renew_server(key_too=False)
    assert _served_serial(srv.app.port, pki.ca, grpc_alpn=True) == first
    assert _check(srv.address, _credentials(pki.ca), token).allowed

    pki.finish_renewal()
    assert _served_serial(srv.app.port, pki.ca, grpc_alpn=True) == renewed
    assert _check(srv.address, _credentials(pki.ca), token).allowed
    # The connection made before the rotation goes on with its certificate.
    assert srv.stub.Check(authz_pb2.CheckRequest(token=token, resource="/api/orders/1", action="GET")).allowed


def test_the_http_listener_takes_a_rotated_certificate(make_server, issuer, tmp_path):
    pki = make_pki(tmp_path / "pki")
    srv = make_server(
        settings_for(
            issuer, http_listen="127.0.0.1:0", tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)
        ),
        wait=False,
    )
    _use_secure_channel(srv, _credentials(pki.ca))
    assert _served_serial(srv.app.http_port, pki.ca, grpc_alpn=False) == _serial(pki.server_cert)
    renewed = pki.renew_server()
    deadline = time.monotonic() + 10  # the HTTP listener looks at its files every 2 s
    while _served_serial(srv.app.http_port, pki.ca, grpc_alpn=False) != renewed:
        assert time.monotonic() < deadline, "the HTTP listener kept the old certificate"
        time.sleep(0.2)
