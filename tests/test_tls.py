"""TLS and mTLS on the gRPC listener, with certificates generated at test time."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from tests.certs import Pki, make_pki, served_serial
from tests.conftest import RunningServer, settings_for
from tests.waiting import wait_for


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
    assert served_serial(srv.app.port, pki.ca, grpc_alpn=True) == first

    # Half-written: the new certificate beside the old key. The old pair keeps serving.
    renewed = pki.renew_server(key_too=False)
    assert served_serial(srv.app.port, pki.ca, grpc_alpn=True) == first
    assert _check(srv.address, _credentials(pki.ca), token).allowed

    pki.finish_renewal()
    assert served_serial(srv.app.port, pki.ca, grpc_alpn=True) == renewed
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
    assert served_serial(srv.app.http_port, pki.ca, grpc_alpn=False) == _serial(pki.server_cert)
    renewed = pki.renew_server()
    # The HTTP listener looks at its files every 2 s; the bound is for a stalled machine.
    wait_for(
        lambda: served_serial(srv.app.http_port, pki.ca, grpc_alpn=False) == renewed,
        60,
        "the HTTP listener serving the renewed certificate",
    )


# --- client CA rotation: both listeners follow the file exactly ------------------------------


def _http_client(server_ca: Path, client: Pki, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server_ca))
    context.load_cert_chain(client.client_cert, client.client_key)
    if version is not None:
        context.maximum_version = version
    return context


def _http_get(
    port: int, context: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> tuple[bool, ssl.SSLSession | None]:
    """Whether an mTLS connection to the HTTP listener gets an HTTP answer; and its session.

    With TLS 1.3 the server checks the client certificate after the client's side of the
    handshake is done, so a refusal shows on the first read, not in wrap_socket.
    """
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls,
        ):
            tls.sendall(b"GET / HTTP/1.1\r\nHost: authz\r\nConnection: close\r\n\r\n")
            answer = tls.recv(64)
            return answer.startswith(b"HTTP/1.1 "), tls.session
    except (ssl.SSLError, ConnectionError):
        return False, None


def test_a_client_ca_removed_from_the_file_is_refused_by_both_listeners(make_server, issuer, tmp_path):
    kept, removed = (
        make_pki(tmp_path / "kept", name="kept CA"),
        make_pki(tmp_path / "removed", name="removed CA"),
    )
    client_ca = tmp_path / "client-ca.pem"
    client_ca.write_bytes(kept.ca.read_bytes() + removed.ca.read_bytes())
    srv = make_server(
        settings_for(
            issuer,
            http_listen="127.0.0.1:0",
            tls_cert=str(kept.server_cert),
            tls_key=str(kept.server_key),
            tls_client_ca=str(client_ca),
        ),
        wait=False,
    )
    _use_secure_channel(srv, _credentials(kept.ca, kept.client_cert, kept.client_key))
    token = issuer.mint(permissions=["read:orders"])
    as_kept = _credentials(kept.ca, kept.client_cert, kept.client_key)
    as_removed = _credentials(kept.ca, removed.client_cert, removed.client_key)
    http_kept, http_removed = _http_client(kept.ca, kept), _http_client(kept.ca, removed)
    http_removed_tls12 = _http_client(kept.ca, removed, ssl.TLSVersion.TLSv1_2)
    assert _check(srv.address, as_removed, token).allowed
    assert _http_get(srv.app.http_port, http_kept)[0]
    ok, session = _http_get(srv.app.http_port, http_removed)
    ok12, session12 = _http_get(srv.app.http_port, http_removed_tls12)
    assert ok and ok12 and session is not None and session12 is not None
    # The same context offered its session again: resumed, while both CAs are trusted.
    assert _http_get(srv.app.http_port, http_removed, session)[0]

    staging = tmp_path / "client-ca.new"
    staging.write_bytes(kept.ca.read_bytes())
    os.replace(staging, client_ca)
    wait_for(
        lambda: not _http_get(srv.app.http_port, _http_client(kept.ca, removed))[0],
        60,
        "the HTTP listener refusing the removed CA",
    )
    assert _http_get(srv.app.http_port, _http_client(kept.ca, kept))[0]
    # A session made while the CA was trusted is not resumed past its removal (TLS 1.3 and 1.2).
    assert not _http_get(srv.app.http_port, http_removed, session)[0]
    assert not _http_get(srv.app.http_port, http_removed_tls12, session12)[0]
    # gRPC takes the file on its next connection: the same answer.
    _refused(srv.address, as_removed, token)
    assert _check(srv.address, as_kept, token).allowed
