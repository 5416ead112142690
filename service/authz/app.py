"""Assembling a running service from Settings: keys, policy, handlers, transports, lifecycle."""

from __future__ import annotations

import logging
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, cast

from grpc_health.v1 import health_pb2

from authz import tracing
from authz.admin.proto import AdminProto, admin_service
from authz.admin.service import PolicyAdmin
from authz.config import Settings, with_port
from authz.decisionlog import DecisionLog
from authz.decisionlog import Mode as DecisionLogMode
from authz.devmode import DEV_AUDIENCE, DEV_ROLES_CLAIM, DevIssuer, dev_dir
from authz.errors import Unavailable
from authz.handlers import DecisionService
from authz.live import LivePolicy
from authz.metrics import HttpCollector, Metrics, MetricsListener, ServiceCollector
from authz.policy.runner import require_passing_content
from authz.reload import PolicyReloader
from authz.sources import policy_origin
from authz.tokens import KeySet, TokenSettings, TokenVerifier
from authz.transports.admission import RefusalCollector
from authz.transports.callgate import MAX_AWAITING_REQUEST, MAX_OPEN_STREAMS, REQUEST_MESSAGE_SECONDS
from authz.transports.grpcloop import LoopHealth, ServerLoop
from authz.transports.grpcserver import SERVICE_NAME, GrpcServer, build_server
from authz.transports.httplimits import HttpLimits
from authz.transports.httpserver import HttpListener, HttpSettings
from authz.transports.tlsfiles import CertificateFiles, grpc_credentials

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("authz")


def demo_policy_dir() -> Path:
    """The demo policies shipped inside the package."""
    return Path(str(resources.files("authz") / "demo_policies"))


class App:
    """One authz process: call `start`, then `wait` or `stop`.

    With `tracing = "otlp"`, `tracer_provider` (tests: the SDK's in-memory exporter) takes the
    place of the OTLP exporter's. Tracing is per process: the last App built sets it.
    """

    def __init__(self, settings: Settings, *, tracer_provider: TracerProvider | None = None) -> None:
        self.settings = settings
        self.tracer_provider = tracing.start(settings.tracing, tracer_provider)
        self.dev_issuer: DevIssuer | None = None
        issuers, audiences, jwks_url = settings.issuer, settings.audience, settings.jwks_url
        roles_claim = settings.roles_claim or None
        policy_dir = Path(settings.policy_dir)
        if settings.dev:
            self.dev_issuer = DevIssuer(dev_dir(), settings.dev_issuer_port)
            issuers, jwks_url = (self.dev_issuer.issuer,), self.dev_issuer.jwks_url
            audiences = audiences or (DEV_AUDIENCE,)
            roles_claim = roles_claim or DEV_ROLES_CLAIM
            if not policy_dir.exists():
                policy_dir = demo_policy_dir()
        self.policy_dir = policy_dir
        self.keys = KeySet(jwks_url, refresh_interval=settings.jwks_refresh_seconds)
        self.verifier = TokenVerifier(
            TokenSettings(issuers, audiences, settings.algorithms, settings.leeway_seconds, roles_claim),
            self.keys,
        )
        self.store = LivePolicy(
            policy_origin(settings.policy_store, policy_dir, settings.policy_store_check_seconds),
            validate=require_passing_content if settings.reload_requires_tests else None,
        )
        self.reloader = PolicyReloader(self.store)
        self.metrics = Metrics()
        decisions = tracing.TracedDecisionService if self.tracer_provider else DecisionService
        self.service = decisions(
            self.verifier,
            self.store,
            batch_limit=settings.batch_limit,
            decision_log=DecisionLog(cast(DecisionLogMode, settings.decision_log)),
            metrics=self.metrics,
        )
        self.metrics.watch(
            ServiceCollector(self.store, self.keys, self.verifier.cache, self.service.decision_log)
        )
        self._stop = threading.Event()
        self.port = 0
        # How long a gRPC call may take to send its request message, and how many may be
        # waiting for theirs at once (authz.transports.callgate).
        self.request_message_seconds = REQUEST_MESSAGE_SECONDS
        self.max_awaiting_request = MAX_AWAITING_REQUEST
        self.max_open_streams = MAX_OPEN_STREAMS  # health watches open at once
        # How long calls may wait in grpcio's core before others are refused (authz.transports.admission).
        self.max_queue_seconds = settings.max_queue_seconds
        self.grpc = ServerLoop()
        self.grpc_server: GrpcServer | None = None
        self.health: LoopHealth | None = None
        self.http: HttpListener | None = None
        self.http_port = 0
        self.metrics_listener: MetricsListener | None = None
        self.metrics_port = 0

    def start(self) -> None:
        """Load the policy (raises PolicyLoadError when broken), bind and serve."""
        for warning in self.settings.warnings:
            log.warning("%s", warning)
        try:
            self.store.reload()
        except Unavailable as exc:
            # A policy store down at start: serve NOT_SERVING and follow it until it answers.
            log.error("health: NOT_SERVING until a policy loads: %s", exc)
        if self.dev_issuer is not None:
            self.dev_issuer.start()
        s = self.settings
        # With a client CA, client certificates are required (mTLS); rotated files are taken live.
        credentials = (
            grpc_credentials(CertificateFiles(s.tls_cert, s.tls_key, s.tls_client_ca)) if s.tls_cert else None
        )
        admin = AdminProto(PolicyAdmin(self.service)) if s.admin_enabled else None
        self.grpc_server = self.grpc.start(
            lambda: build_server(
                self.service,
                s.listen,
                credentials=credentials,
                max_concurrent_rpcs=s.max_concurrent_rpcs,
                request_seconds=self.request_message_seconds,
                max_awaiting=self.max_awaiting_request,
                max_streams=self.max_open_streams,
                max_queue_seconds=self.max_queue_seconds,
                max_pending_calls=s.max_pending_calls,
                reuse_port=s.workers > 1,
                extra=admin_service(admin) if admin is not None else None,
            )
        )
        self.port = self.grpc_server.port
        self.metrics.registry.register(RefusalCollector(self.grpc_server.gate.admission))
        self.health = LoopHealth(self.grpc_server.health, self.grpc)
        if s.http_listen:
            self._start_http(admin)
        if s.metrics_listen:
            self._start_metrics()
        self.reloader.start()
        self.keys.start(self._stop)
        threading.Thread(target=self._serving_when_ready, name="authz-ready", daemon=True).start()
        log.info(
            "authz listening on %s (policy %s from %s)",
            with_port(s.listen, self.port),
            self.store.current.version if self.store.loaded else "not loaded yet",
            self.store.origin.location,
        )

    def _start_http(self, admin: AdminProto | None) -> None:
        s = self.settings
        http = HttpListener(
            self.service,
            HttpSettings(
                s.http_listen,
                s.cors_origins,
                s.tls_cert,
                s.tls_key,
                s.tls_client_ca,
                reuse_port=s.workers > 1,
                forward_auth=s.forward_auth,
                limits=HttpLimits.of(s),
            ),
            admin,
        )
        try:
            self.http_port = http.start()
        except BaseException:
            self.grpc.stop(None).wait()
            raise
        self.http = http
        self.metrics.watch(HttpCollector(http.guard.refusals.counts, http.guard.open))
        log.info("authz HTTP (Connect, gRPC-Web) listening on %s", with_port(s.http_listen, self.http_port))

    def _start_metrics(self) -> None:
        listener = MetricsListener(self.metrics.registry, self.settings.metrics_listen)
        try:
            self.metrics_port = listener.start()
        except BaseException:
            self.grpc.stop(None).wait()
            if self.http is not None:
                self.http.stop(0)
            raise
        self.metrics_listener = listener
        address = with_port(self.settings.metrics_listen, self.metrics_port)
        log.info("authz metrics (Prometheus) on http://%s/metrics", address)

    def _serving_when_ready(self) -> None:
        # SERVING only once the policy is loaded and the JWKS was fetched once.
        while not self._stop.is_set():
            if self.keys.wait_ready(timeout=0.5) and self.store.loaded and self.health is not None:
                for name in ("", SERVICE_NAME):
                    self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
                log.info("health: SERVING")
                return

    def stop(self, grace: float = 10.0) -> None:
        """Drain: report NOT_SERVING, let in-flight RPCs finish (up to `grace` s), stop."""
        self._stop.set()
        self.reloader.stop()
        if self.health is not None:
            self.health.enter_graceful_shutdown()
        grpc_stopped = self.grpc.stop(grace)
        if self.http is not None:
            self.http.stop(grace)
        grpc_stopped.wait()
        if self.metrics_listener is not None:
            self.metrics_listener.stop()
        self.service.decision_log.flush()
        if self.tracer_provider is not None:
            tracing.stop(self.tracer_provider)
        if self.dev_issuer is not None:
            self.dev_issuer.stop()

    def wait(self) -> None:
        """Block until the server terminates."""
        self.grpc.wait()
