"""OpenTelemetry tracing, off by default: every use of OpenTelemetry in authz is here.

With `tracing = "otlp"` each RPC is one SERVER span, `authz.<RPC>` (`authz.Check`,
`authz.ForwardAuth`, the admin RPCs ...), with the children `authz.decide` (the whole
decision: policy version, outcome, decision id, item counts) and, inside it,
`authz.token.verify` (token cache hit, valid, reason). Spans go to a collector through the
OTLP/gRPC exporter, configured by the SDK's standard `OTEL_*` variables
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_TRACES_SAMPLER`, `OTEL_SERVICE_NAME` ...).

A caller's trace continues through W3C Trace Context: `traceparent` / `tracestate` from the
gRPC metadata or the HTTP headers (baggage is not read). Spans carry ids, reasons, counts and
the policy version; never a token, a subject, a resource or an attribute value. The
`authz.decision_id` attribute joins a trace to its decision log line, which has the rest.

The switch is made once per process, when `App` is built (`start`): while tracing is off,
the request path makes no OpenTelemetry call at all: `convert.measured` reads the module's
`enabled`, `continued` hands the transports their call back unchanged and `App` builds a
plain `DecisionService`. The packages are the optional `tracing` extra; without them authz
runs, and only `tracing = "otlp"` is refused.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from authz.errors import ConfigError
from authz.handlers import BatchOutcome, CheckItem, CheckOutcome, DecisionService, VisibilityOutcome
from authz.principal import Principal
from authz.tokens import TokenRejected
from authz.tokens.verify import strip_bearer

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the `tracing` extra is not installed: tracing stays off
    pass
else:
    # The server span's `authz.transport`, handed from `continued` to `serve` in the context.
    _TRANSPORT = otel_context.create_key("authz.transport")

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

P = ParamSpec("P")
R = TypeVar("R")

# gRPC metadata and ASGI headers: (name, value) pairs; Connect's headers: a mapping.
HeaderSource = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]
TRACE_FIELDS = ("traceparent", "tracestate")
SERVICE_NAME = "authz"
# How long stopping waits for the last spans to go out (see `stop`).
STOP_SECONDS = 2.0
EXTRA_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.grpc.trace_exporter")

# Read on every RPC: the only cost tracing has while it is off.
enabled = False
_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None
# The provider `start` built for OTLP (shut down by `stop`), not one a test handed in.
_built: TracerProvider | None = None


def _require_extra() -> None:
    missing = []
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(
            [
                f"tracing = otlp needs the tracing extra (pip install 'authz[tracing]'): "
                f"cannot import {', '.join(missing)}"
            ]
        )


def _otlp_provider() -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win; "authz" replaces only the SDK's fallback.
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    # The sampler (OTEL_TRACES_SAMPLER, default: follow the caller's sampled flag, else
    # sample) and the exporter's endpoint, headers, TLS and batching come from OTEL_*.
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def start(mode: str, provider: TracerProvider | None = None) -> TracerProvider | None:
    """Turn tracing on (`otlp`) or off for this process; called once, by `App`.

    `provider` replaces the OTLP exporter's (tests give one with the SDK's in-memory
    exporter); it is used only when `mode` is `otlp`. Returns the provider in use, or None.
    Raises ConfigError when `otlp` is asked for without the `tracing` extra installed.
    """
    global enabled, _tracer, _provider, _built
    enabled = False
    if mode != "otlp":
        return None
    _require_extra()
    if provider is None:
        provider = _built = _otlp_provider()
    _provider = provider
    _tracer = provider.get_tracer("authz")
    enabled = True
    return provider


def stop(provider: TracerProvider) -> None:
    """Export what is pending and shut the OTLP provider down, waiting at most STOP_SECONDS.

    Tracing goes off if `provider` is still the one in use. A provider handed to `start`
    is flushed, not shut down: its owner does that.
    """
    global enabled, _built
    if provider is _provider:
        enabled = False
    if provider is not _built:
        provider.force_flush()
        return
    _built = None
    # A collector that is down or stalls would hold the drain for the exporter's timeout
    # and retries (OTEL_EXPORTER_OTLP_TIMEOUT, 10 s): its last spans are not worth that.
    last = threading.Thread(target=provider.shutdown, name="authz-tracing-stop", daemon=True)
    last.start()
    last.join(STOP_SECONDS)


def _tracer_in_use() -> trace.Tracer:
    if _tracer is None:
        raise RuntimeError("tracing was not started")
    return _tracer


def _carrier(headers: HeaderSource) -> dict[str, list[str]]:
    """The W3C Trace Context fields of gRPC metadata, Connect's headers or ASGI's raw pairs."""
    if isinstance(headers, Mapping):
        return {name: [headers[name]] for name in TRACE_FIELDS if name in headers}
    carrier: dict[str, list[str]] = {}
    for raw_name, raw_value in headers:
        # gRPC metadata and ASGI header names arrive lower case.
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name
        if name in TRACE_FIELDS:
            value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
            carrier.setdefault(name, []).append(value)
    return carrier


def continued(call: Callable[P, R], headers: Callable[[], HeaderSource], transport: str) -> Callable[P, R]:
    """`call`, run in the trace the caller's `traceparent` names: a transport's hand-off.

    While tracing is off, `call` itself. The headers are read (`headers()`) and the caller's
    context attached where the returned function runs, so it can go to a thread pool.
    `transport` becomes the server span's `authz.transport` attribute.
    """
    if not enabled:
        return call

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        # A fresh context each call: nothing of the thread's previous RPC carries over.
        parent = TraceContextTextMapPropagator().extract(_carrier(headers()))
        token = otel_context.attach(otel_context.set_value(_TRANSPORT, transport, parent))
        try:
            return call(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return run


def serve(
    rpc: str, classify: Callable[[Exception], str], call: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> R:
    """`call` inside the RPC's SERVER span `authz.<rpc>`; a failure is marked with its code.

    `classify` gives the failure's canonical code (convert.error_code). Only the code is
    recorded: an unexpected error's text is withheld from the trace as from the caller.
    """
    attributes = {"rpc.method": rpc}
    transport = otel_context.get_value(_TRANSPORT)
    if isinstance(transport, str):
        attributes["authz.transport"] = transport
    with _tracer_in_use().start_as_current_span(
        f"authz.{rpc}",
        kind=trace.SpanKind.SERVER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            code = classify(exc)
            span.set_attribute("authz.error_code", code)
            span.set_status(trace.Status(trace.StatusCode.ERROR, code))
            raise


@contextmanager
def _span(name: str) -> Iterator[trace.Span]:
    # No exception events: their text could quote anything; the server span has the code.
    with _tracer_in_use().start_as_current_span(
        name, record_exception=False, set_status_on_exception=False
    ) as span:
        yield span


class TracedDecisionService(DecisionService):
    """`DecisionService` whose calls are `authz.decide` spans and token checks `authz.token.verify`.

    `App` builds this one instead of `DecisionService` when tracing is on.
    """

    def _principal(self, token: str) -> Principal | TokenRejected:
        with _span("authz.token.verify") as span:
            bare = strip_bearer(token)
            cached = self.verifier.cache.get(bare)
            span.set_attribute("authz.token.cache_hit", cached is not None)
            try:
                principal = cached if cached is not None else self.verifier.verify_uncached(bare)
            except TokenRejected as rejected:
                span.set_attributes({"authz.token.valid": False, "authz.reason": rejected.reason.name})
                return rejected
            span.set_attribute("authz.token.valid", True)
            return principal

    def check(self, token: str, item: CheckItem, *, explain: bool = False) -> CheckOutcome:
        """Check, traced."""
        with _span("authz.decide") as span:
            out = super().check(token, item, explain=explain)
            span.set_attributes(
                {
                    "authz.decision_id": out.decision_id,
                    "authz.policy_version": out.policy_version,
                    "authz.allowed": out.decision.allowed,
                    "authz.reason": out.decision.reason.name,
                }
            )
            return out

    def batch_check(self, token: str, items: Sequence[CheckItem], *, explain: bool = False) -> BatchOutcome:
        """BatchCheck, traced."""
        with _span("authz.decide") as span:
            out = super().batch_check(token, items, explain=explain)
            decisions = [decision for _, decision in out.results]
            span.set_attributes(
                {
                    "authz.decision_id": out.decision_id,
                    "authz.policy_version": out.policy_version,
                    "authz.items": len(decisions),
                    "authz.allowed_items": sum(d.allowed for d in decisions),
                    "authz.reasons": sorted({d.reason.name for d in decisions}),
                }
            )
            return out

    def visibility(
        self,
        token: str,
        *,
        elements: Sequence[str] = (),
        prefix: str = "",
        action: str = "",
        enforce_context: str = "",
    ) -> VisibilityOutcome:
        """GetVisibility, traced."""
        with _span("authz.decide") as span:
            out = super().visibility(
                token, elements=elements, prefix=prefix, action=action, enforce_context=enforce_context
            )
            span.set_attributes(
                {
                    "authz.policy_version": out.policy_version,
                    "authz.items": len(out.decisions),
                    "authz.allowed_items": sum(out.decisions.values()),
                    "authz.reason": out.reason.name,
                }
            )
            return out
