"""The HTTP listener's lifecycle: uvicorn on its own thread, bound before start returns."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import uvicorn

from authz.admin.proto import AdminProto
from authz.config import split_host_port
from authz.errors import ListenError
from authz.handlers import DecisionService
from authz.transports.connect import build_http_app
from authz.transports.httplimits import HttpLimits, guarded_protocol
from authz.transports.inflight import InFlightLimit
from authz.transports.requestshape import SingleFraming
from authz.transports.tlsfiles import CertificateFiles, ContextReloader

log = logging.getLogger("authz.http")


@dataclass(frozen=True)
class HttpSettings:
    """Where and how the HTTP listener serves; TLS when `tls_cert` is set, mTLS with `tls_client_ca`."""

    listen: str
    cors_origins: tuple[str, ...] = ()
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    max_workers: int = 16
    reuse_port: bool = False
    forward_auth: bool = False
    limits: HttpLimits = field(default_factory=HttpLimits)


def bind(listen: str, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on `host:port` (port 0 picks a free one); raises OSError when taken.

    Binding here, not inside uvicorn, makes a taken port fail `App.start` at once (uvicorn
    would log and exit the process) and lets port 0 report the port it got.
    """
    host, port = split_host_port(listen)
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, reuse_port=reuse_port)
    except OSError as exc:
        raise ListenError.of("http_listen", listen, exc) from exc
    # Accepted connections inherit it. Without it a keep-alive response (headers and body in
    # two writes) waited for the client's delayed ACK: 44 ms per call instead of 0.5 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class HttpListener:
    """Connect and gRPC-Web over HTTP/1.1 for `service` (and `admin`); call `start`, then `stop`."""

    def __init__(
        self, service: DecisionService, settings: HttpSettings, admin: AdminProto | None = None
    ) -> None:
        self.settings = settings
        self.executor = ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="authz-http")
        app = build_http_app(service, self.executor, settings.cors_origins, admin, settings.forward_auth)
        self.protocol = guarded_protocol(settings.limits)
        # The listener's connections and refusals, for /metrics (`metrics.HttpCollector`).
        self.guard = self.protocol.guard
        # The requests being answered (read by tests that hold the listener at its limit).
        self.in_flight = InFlightLimit(app, settings.limits.max_in_flight, self.guard.refusals)
        self.config = uvicorn.Config(
            # Outermost: a doubly framed request is refused before its body is read.
            SingleFraming(self.in_flight),
            # h11 always (never httptools, even when installed): the read deadlines and the
            # connection caps live in this protocol; requests in progress are InFlightLimit's.
            http=self.protocol,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            ssl_certfile=settings.tls_cert or None,
            ssl_keyfile=settings.tls_key or None,
            ssl_ca_certs=settings.tls_client_ca or None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if settings.tls_client_ca else ssl.CERT_NONE,
        )
        self.server = uvicorn.Server(self.config)
        self.tls: ContextReloader | None = None
        self.port = 0
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind, serve on a background thread and return the bound port."""
        self.config.load()  # here, not on the thread: a bad certificate fails start
        if self.config.ssl is not None:
            s = self.settings
            # The protocol runs the handshake itself, so the caps and the header deadline
            # cover it: uvicorn serves plain TCP.
            self.protocol.tls, self.config.ssl = self.config.ssl, None
            self.tls = ContextReloader(
                self.protocol.tls, CertificateFiles(s.tls_cert, s.tls_key, s.tls_client_ca)
            )
            self.tls.start()
        sock = bind(self.settings.listen, reuse_port=self.settings.reuse_port)
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="authz-http", daemon=True
        )
        self._thread.start()
        return self.port

    def stop(self, grace: float) -> None:
        """Stop accepting, let in-flight requests finish (up to `grace` s), then stop the workers."""
        # uvicorn reads the drain budget when it shuts down, so setting it now applies it.
        self.config.timeout_graceful_shutdown = max(1, round(grace))
        self.server.should_exit = True
        if self.tls is not None:
            self.tls.stop()
        if self._thread is not None:
            self._thread.join(timeout=grace + 2)
            if self._thread.is_alive():
                log.warning("HTTP listener did not stop within %.1f s", grace)
        self.executor.shutdown(wait=False, cancel_futures=True)
