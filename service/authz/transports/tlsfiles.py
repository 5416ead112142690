"""TLS certificates re-read when their files change, so a rotation needs no restart.

cert-manager, Vault agents and the kubelet replace certificate files in place (a Secret
volume is a `..data` symlink swap). The gRPC listener asks for its certificate on every
new connection (`grpc.dynamic_ssl_server_credentials`); the HTTP listener's files are
checked by a watcher thread, and each new TLS handshake is moved onto a context built
afresh from them (`ContextReloader`). Either way the listeners follow the files exactly:
a CA removed from the client CA file is no longer trusted for new connections, and a
session made before the removal is not resumed. The new files are taken only once they
are a matching certificate and key: while a rotation is half-written (the new certificate
beside the old key), the old pair keeps serving and the files are read again on the next
check. Connections already open keep the certificate they were made with.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

log = logging.getLogger("authz.tls")
# How often the HTTP listener looks at its files; the gRPC listener looks per connection.
HTTP_RECHECK_SECONDS = 2.0


@dataclass(frozen=True)
class Pair:
    """One certificate chain with its key, and the client CA bundle (mTLS), as PEM bytes."""

    cert: bytes
    key: bytes
    client_ca: bytes | None


class CertificateFiles:
    """A listener's certificate, key and client CA files, and what was last taken from them."""

    def __init__(self, cert: str, key: str, client_ca: str = "") -> None:
        self.paths = tuple(Path(p) for p in (cert, key, client_ca) if p)
        self.cert, self.key = Path(cert), Path(key)
        self.client_ca = Path(client_ca) if client_ca else None
        self._lock = threading.Lock()
        self._taken = self._stamp()
        # At start a broken pair is an error, not a fallback.
        self.current, self.context = self._read()

    def _stamp(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in self.paths:
            try:
                st = os.stat(path)  # follows symlinks: a `..data` swap changes the target
            except OSError:
                return ()
            stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(stamps)

    def _read(self) -> tuple[Pair, ssl.SSLContext]:
        pair = Pair(
            self.cert.read_bytes(),
            self.key.read_bytes(),
            self.client_ca.read_bytes() if self.client_ca else None,
        )
        # Refuses a certificate that does not match its key, or PEM that does not parse. The
        # context trusts exactly the CAs in the file: a fresh one per read, since a context's
        # store only ever adds.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        if self.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=pair.client_ca.decode("ascii") if pair.client_ca else None)
        return pair, context

    def refresh(self) -> Pair | None:
        """The new pair when the files changed into a usable one since the last call, else None."""
        with self._lock:
            stamp = self._stamp()
            if not stamp or stamp == self._taken:
                return None
            try:
                pair, context = self._read()
            except (OSError, ssl.SSLError, ValueError) as exc:
                log.warning(
                    "TLS files changed but are not usable yet (%s); the previous certificate serves", exc
                )
                return None
            if self._stamp() != stamp:
                return None  # changed again while being read: the next check takes the result
            self._taken, self.current, self.context = stamp, pair, context
        log.info("TLS certificate reloaded from %s", self.cert)
        return pair


def grpc_credentials(files: CertificateFiles) -> grpc.ServerCredentials:
    """gRPC server credentials that take the files' new certificate on the next connection."""

    def configuration(pair: Pair) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(pair.key, pair.cert)], root_certificates=pair.client_ca
        )

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        pair = files.refresh()
        return configuration(pair) if pair is not None else None

    return grpc.dynamic_ssl_server_credentials(
        configuration(files.current),
        # grpcio documents None as "keep the current configuration"; its stubs omit it.
        fetch,  # type: ignore[arg-type]
        require_client_authentication=files.client_ca is not None,
    )


class ContextReloader:
    """Moves each new handshake of the HTTP listener's `ssl.SSLContext` onto `files`' newest context.

    uvicorn serves with one listening context for the life of the process, and a context's
    CA store only ever adds. So the listening context's `sni_callback` (called on every
    handshake, with or without SNI) swaps in the context `files` last built: its
    certificate, and its CA store, which is the one the client certificate is verified
    against. OpenSSL caches sessions in the listening context, and a resumed session is not
    verified again: one made before the client CA file last changed is refused, so a
    removed CA cannot come back through a session ticket or ID.
    """

    def __init__(self, context: ssl.SSLContext, files: CertificateFiles) -> None:
        self.files = files
        self.context = files.context  # what new handshakes are moved onto
        self._client_ca = files.current.client_ca
        self._ca_changed_at = 0.0
        context.sni_callback = self._handshake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="authz-tls-reload", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()

    def _handshake(
        self, connection: ssl.SSLObject, _server_name: str | None, _listening: ssl.SSLContext
    ) -> int | None:
        session = connection.session if connection.session_reused else None
        # SSLSession.time is whole seconds: a session of the very second of the change is
        # refused too, which costs its client one full handshake.
        if session is not None and session.time <= self._ca_changed_at:
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        connection.context = self.context
        return None

    def _run(self) -> None:
        while not self._stop.wait(HTTP_RECHECK_SECONDS):
            pair = self.files.refresh()
            if pair is None:
                continue
            if pair.client_ca != self._client_ca:
                # Before the new context is used: sessions made until now were verified by the old CAs.
                self._client_ca, self._ca_changed_at = pair.client_ca, time.time()
            self.context = self.files.context
