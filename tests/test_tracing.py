"""Tracing: a real authz with the SDK's in-memory exporter, asked over gRPC, Connect and
/forward-auth with a caller's `traceparent`; and the OTLP exporter against a real OTLP/gRPC
receiver on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from authz import tracing
from authz.api.v1 import authz_pb2
from authz.app import App
from authz.config import load_settings
from authz.errors import ConfigError
from authz.handlers import DecisionService
from tests.conftest import HTTP_ORIGIN, REPO, RunningServer, settings_for
from tests.issuer import Issuer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
TRACESTATE = "vendor=opaque"
CHECK_PATH = "/authz.api.v1.AuthorizationService/Check"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def start_app(exporter: InMemorySpanExporter) -> Iterator[Callable[..., RunningServer]]:
    """Start an App (HTTP listener and /forward-auth on) whose spans go to `exporter`."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    started: list[RunningServer] = []

    def start(issuer: Issuer, mode: str = "otlp", **overrides: Any) -> RunningServer:
        settings = settings_for(
            issuer, http_listen="127.0.0.1:0", forward_auth=True, tracing=mode, **overrides
        )
        app = App(settings, tracer_provider=provider)
        app.start()
        running = RunningServer(app)
        started.append(running)
        running.wait_serving()
        return running

    yield start
    for running in started:
        running.close()
    provider.shutdown()


def by_name(spans: Sequence[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def one_trace(exporter: InMemorySpanExporter, server_span: str) -> dict[str, ReadableSpan]:
    """The spans of the only RPC exported so far, by name, checked for their nesting."""
    spans = exporter.get_finished_spans()
    named = {name: found for name, (found,) in by_name(spans).items()}
    assert len(named) == len(spans), [s.name for s in spans]
    server = named[server_span]
    assert server.kind is SpanKind.SERVER
    assert {s.context.trace_id for s in spans} == {server.context.trace_id}
    decide = named.get("authz.decide")
    if decide is not None:
        assert decide.parent is not None and decide.parent.span_id == server.context.span_id
        verify = named["authz.token.verify"]
        assert verify.parent is not None and verify.parent.span_id == decide.context.span_id
    return named


def assert_continues_caller(server: ReadableSpan) -> None:
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert server.parent is not None and server.parent.is_remote
    assert f"{server.parent.span_id:016x}" == PARENT_ID


def assert_no_token_text(spans: Sequence[ReadableSpan], token: str) -> None:
    """Neither the token nor its payload or signature appears anywhere in the spans."""
    _, payload, signature = token.split(".")
    for span in spans:
        texts = [span.name, span.status.description or "", json.dumps(dict(span.attributes or {}))]
        texts += [json.dumps([e.name, dict(e.attributes or {})]) for e in span.events]
        for text in texts:
            for secret in (token, payload, signature):
                assert secret not in text, (span.name, text)


def http_post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json", **headers}
    )
    return _send(request)


def forward_auth(base: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    return _send(urllib.request.Request(f"{base}/forward-auth", headers=headers))


def _send(request: urllib.request.Request) -> tuple[int, dict[str, str], Any]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, got, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, got, body = error.code, error.headers, error.read()
    return status, {k.lower(): v for k, v in got.items()}, json.loads(body)


# --- gRPC ------------------------------------------------------------------------------


def test_a_grpc_check_continues_the_callers_trace(start_app, exporter, issuer):
    server = start_app(issuer)
    token = issuer.mint(sub="alice", permissions=["read:orders"])
    metadata = (
        ("traceparent", TRACEPARENT),
        ("tracestate", TRACESTATE),
        ("authorization", f"Bearer {token}"),
    )
    answer = server.stub.Check(
        authz_pb2.CheckRequest(resource="/api/orders/42", action="GET"), metadata=metadata, timeout=5
    )
    assert answer.allowed

    spans = one_trace(exporter, "authz.Check")
    check, decide, verify = spans["authz.Check"], spans["authz.decide"], spans["authz.token.verify"]
    assert_continues_caller(check)
    assert check.parent is not None and check.parent.trace_state.get("vendor") == "opaque"
    assert check.attributes == {"rpc.method": "Check", "authz.transport": "grpc"}
    assert check.status.status_code is StatusCode.UNSET
    assert decide.attributes == {
        "authz.decision_id": answer.decision_id,
        "authz.policy_version": answer.policy_version,
        "authz.allowed": True,
        "authz.reason": "ALLOWED",
    }
    assert verify.attributes == {"authz.token.cache_hit": False, "authz.token.valid": True}
    assert_no_token_text(list(spans.values()), token)

    # The same token again: verified from the cache, in a new trace of the caller's.
    exporter.clear()
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    server.stub.Check(
        authz_pb2.CheckRequest(token=token, resource="/api/orders/42", action="DELETE"),
        metadata=(("traceparent", other),),
        timeout=5,
    )
    again = one_trace(exporter, "authz.Check")
    assert f"{again['authz.Check'].context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert again["authz.token.verify"].attributes == {
        "authz.token.cache_hit": True,
        "authz.token.valid": True,
    }
    assert again["authz.decide"].attributes is not None
    assert again["authz.decide"].attributes["authz.allowed"] is False
    assert_no_token_text(list(again.values()), token)


def test_a_refused_token_is_traced_by_reason_only(start_app, exporter, issuer):
    server = start_app(issuer)
    token = issuer.mint(exp_in=-3600, permissions=["read:orders"])
    answer = server.stub.Check(
        authz_pb2.CheckRequest(token=token, resource="/api/orders/42", action="GET"),
        metadata=(("traceparent", TRACEPARENT),),
        timeout=5,
    )
    assert answer.reason == authz_pb2.REASON_TOKEN_EXPIRED

    spans = one_trace(exporter, "authz.Check")
    assert spans["authz.token.verify"].attributes == {
        "authz.token.cache_hit": False,
        "authz.token.valid": False,
        "authz.reason": "TOKEN_EXPIRED",
    }
    decide = spans["authz.decide"].attributes
    assert decide is not None
    assert (decide["authz.allowed"], decide["authz.reason"]) == (False, "TOKEN_EXPIRED")
    assert_no_token_text(list(spans.values()), token)


def test_batch_visibility_and_principal_spans(start_app, exporter, issuer):
    server = start_app(issuer)
    token = issuer.mint(sub="alice", permissions=["read:orders"])
    batch = server.stub.BatchCheck(
        authz_pb2.BatchCheckRequest(
            token=token,
            items=[
                authz_pb2.BatchCheckItem(resource="/api/orders/1", action="GET", correlation_id="a"),
                authz_pb2.BatchCheckItem(resource="/api/orders/2", action="GET", correlation_id="b"),
                authz_pb2.BatchCheckItem(resource="/api/orders/3", action="DELETE", correlation_id="c"),
            ],
        ),
        metadata=(("traceparent", TRACEPARENT),),
        timeout=5,
    )
    assert [r.allowed for r in batch.results] == [True, True, False]
    spans = one_trace(exporter, "authz.BatchCheck")
    assert_continues_caller(spans["authz.BatchCheck"])
    assert spans["authz.decide"].attributes == {
        "authz.decision_id": batch.decision_id,
        "authz.policy_version": batch.policy_version,
        "authz.items": 3,
        "authz.allowed_items": 2,
        "authz.reasons": ("ALLOWED", "ATTRIBUTE_MISSING"),
    }

    exporter.clear()
    server.stub.GetVisibility(
        authz_pb2.GetVisibilityRequest(token=token, elements=["ui:menu.orders", "ui:menu.admin"]), timeout=5
    )
    spans = one_trace(exporter, "authz.GetVisibility")
    # No caller trace: the server span starts one.
    assert spans["authz.GetVisibility"].parent is None
    decide = spans["authz.decide"].attributes
    assert decide is not None
    assert (decide["authz.items"], decide["authz.allowed_items"]) == (2, 1)

    exporter.clear()
    server.stub.GetPrincipal(authz_pb2.GetPrincipalRequest(token=token), timeout=5)
    spans = one_trace(exporter, "authz.GetPrincipal")
    assert set(spans) == {"authz.GetPrincipal", "authz.token.verify"}
    verify = spans["authz.token.verify"]
    assert verify.parent is not None and verify.parent.span_id == spans["authz.GetPrincipal"].context.span_id
    assert_no_token_text(exporter.get_finished_spans(), token)


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        f"00-{'0' * 32}-{PARENT_ID}-01",  # an all-zero trace id is invalid
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is forbidden
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 has exactly four fields
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(start_app, exporter, issuer, traceparent):
    server = start_app(issuer)
    token = issuer.mint(sub="alice", permissions=["read:orders"])
    request = authz_pb2.CheckRequest(token=token, resource="/api/orders/42", action="GET")
    assert server.stub.Check(request, metadata=(("traceparent", traceparent),), timeout=5).allowed
    check = one_trace(exporter, "authz.Check")["authz.Check"]
    assert check.parent is None
    assert f"{check.context.trace_id:032x}" != TRACE_ID


def test_a_failed_rpc_is_marked_with_its_code_only(start_app, exporter, issuer):
    server = start_app(issuer)
    with pytest.raises(grpc.RpcError) as failed:
        server.stub.Check(authz_pb2.CheckRequest(resource="/api/orders/1"), timeout=5)
    assert failed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    (check,) = by_name(exporter.get_finished_spans())["authz.Check"]
    assert check.status.status_code is StatusCode.ERROR
    assert check.status.description == "INVALID_ARGUMENT"
    assert check.attributes is not None and check.attributes["authz.error_code"] == "INVALID_ARGUMENT"
    assert check.events == ()


# --- HTTP: Connect and /forward-auth ----------------------------------------------------------


def test_a_connect_check_continues_the_callers_trace(start_app, exporter, issuer):
    server = start_app(issuer)
    token = issuer.mint(sub="alice", permissions=["read:orders"])
    status, _, body = http_post(
        server.http_url + CHECK_PATH,
        {"resource": "/api/orders/42", "action": "GET"},
        {"authorization": f"Bearer {token}", "traceparent": TRACEPARENT, "tracestate": TRACESTATE},
    )
    assert status == 200 and body["allowed"] is True

    spans = one_trace(exporter, "authz.Check")
    assert_continues_caller(spans["authz.Check"])
    assert spans["authz.Check"].attributes == {"rpc.method": "Check", "authz.transport": "connect"}
    decide = spans["authz.decide"].attributes
    assert decide is not None and decide["authz.decision_id"] == body["decisionId"]
    assert_no_token_text(list(spans.values()), token)


def test_forward_auth_continues_the_callers_trace(start_app, exporter, issuer):
    server = start_app(issuer)
    token = issuer.mint(sub="alice", permissions=["read:orders"])
    status, headers, _ = forward_auth(
        server.http_url,
        {
            "X-Forwarded-Method": "GET",
            "X-Forwarded-Uri": "/api/orders/42",
            "Authorization": f"Bearer {token}",
            "traceparent": TRACEPARENT,
        },
    )
    assert status == 200

    spans = one_trace(exporter, "authz.ForwardAuth")
    assert_continues_caller(spans["authz.ForwardAuth"])
    assert spans["authz.ForwardAuth"].attributes == {
        "rpc.method": "ForwardAuth",
        "authz.transport": "forward-auth",
    }
    decide = spans["authz.decide"].attributes
    assert decide is not None
    assert decide["authz.decision_id"] == headers["x-authz-decision-id"]
    assert (decide["authz.allowed"], decide["authz.reason"]) == (True, "ALLOWED")
    assert_no_token_text(list(spans.values()), token)


def test_a_browsers_preflight_may_send_the_trace_headers(start_app, issuer):
    server = start_app(issuer, cors_origins=(HTTP_ORIGIN,))
    preflight = urllib.request.Request(
        server.http_url + CHECK_PATH,
        method="OPTIONS",
        headers={
            "origin": HTTP_ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,traceparent,tracestate",
        },
    )
    with urllib.request.urlopen(preflight, timeout=10) as response:
        assert response.status == 200
        allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"traceparent", "tracestate"} <= allowed


# --- off ----------------------------------------------------------------------------------


def test_with_tracing_off_nothing_is_traced(start_app, exporter, issuer):
    server = start_app(issuer, mode="off")
    assert not tracing.enabled
    assert type(server.app.service) is DecisionService
    token = issuer.mint(sub="alice", permissions=["read:orders"])
    request = authz_pb2.CheckRequest(token=token, resource="/api/orders/42", action="GET")
    assert server.stub.Check(request, metadata=(("traceparent", TRACEPARENT),), timeout=5).allowed
    with pytest.raises(grpc.RpcError):
        server.stub.Check(authz_pb2.CheckRequest(resource="/x"), timeout=5)
    status, _, _ = http_post(
        server.http_url + CHECK_PATH,
        {"token": token, "resource": "/api/orders/42", "action": "GET"},
        {"traceparent": TRACEPARENT},
    )
    assert status == 200
    headers = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/orders/42", "traceparent": TRACEPARENT}
    assert forward_auth(server.http_url, headers)[0] == 401
    assert exporter.get_finished_spans() == ()


def test_stopping_the_traced_app_turns_tracing_off(start_app, exporter, issuer):
    server = start_app(issuer)
    assert tracing.enabled
    server.close()
    assert not tracing.enabled


# --- settings and the optional packages ------------------------------------------------------


def test_the_tracing_setting_takes_off_or_otlp():
    env = {"AUTHZ_ISSUER": "https://tenant.example.com/", "AUTHZ_AUDIENCE": "api"}
    assert load_settings(env=env).tracing == "off"
    assert load_settings(env={**env, "AUTHZ_TRACING": "otlp"}).tracing == "otlp"
    with pytest.raises(ConfigError, match="tracing 'zipkin' must be one of off, otlp"):
        load_settings(env={**env, "AUTHZ_TRACING": "zipkin"})


def test_without_the_packages_authz_runs_and_only_otlp_is_refused():
    # A fresh interpreter in which no opentelemetry module can be imported.
    script = """
import sys
sys.modules["opentelemetry"] = None
from authz import tracing
from authz.transports import convert
from authz.errors import ConfigError
assert tracing.start("off") is None and not tracing.enabled
try:
    tracing.start("otlp")
except ConfigError as exc:
    print(exc)
else:
    raise SystemExit("otlp started without the packages")
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "service")},
    )
    assert out.returncode == 0, out.stderr
    assert "needs the tracing extra (pip install 'authz[tracing]')" in out.stdout


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    """An OTLP/gRPC trace receiver, as a collector runs it: keeps what it is sent."""

    def __init__(self) -> None:
        # While set to an unset Event, every export waits for it: a stalled collector.
        self.hold: threading.Event | None = None
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        if self.hold is not None:
            self.hold.wait(30)
        with self.lock:
            self.requests.append(request)
            self.metadata.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A receiver on loopback that the OTEL_* variables point the exporter at."""
    receiver = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    yield receiver
    if receiver.hold is not None:
        receiver.hold.set()
    server.stop(None)


def test_otlp_exports_to_the_collector_the_otel_variables_name(issuer, collector, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=orders")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    app = App(settings_for(issuer, tracing="otlp"))
    app.start()
    server = RunningServer(app)
    try:
        server.wait_serving()
        token = issuer.mint(sub="alice", permissions=["read:orders"])
        request = authz_pb2.CheckRequest(token=token, resource="/api/orders/42", action="GET")
        assert server.stub.Check(request, metadata=(("traceparent", TRACEPARENT),), timeout=5).allowed
    finally:
        # Stopping shuts the provider down, which exports what the batch still holds.
        server.close()
    assert not tracing.enabled
    spans = {
        span.name: (resource_spans.resource, span)
        for request in collector.requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    }
    assert {"authz.Check", "authz.decide", "authz.token.verify"} <= set(spans)
    resource, check = spans["authz.Check"]
    assert check.trace_id.hex() == TRACE_ID and check.parent_span_id.hex() == PARENT_ID
    assert {a.key: a.value.string_value for a in resource.attributes}["service.name"] == "authz"
    assert all(m.get("x-tenant") == "orders" for m in collector.metadata)
    assert token not in str(collector.requests)


def test_a_stalled_collector_holds_the_drain_only_briefly(issuer, collector):
    collector.hold = threading.Event()
    app = App(settings_for(issuer, tracing="otlp"))
    app.start()
    server = RunningServer(app)
    server.wait_serving()
    request = authz_pb2.CheckRequest(resource="/api/orders/42", action="GET")
    assert not server.stub.Check(request, timeout=5).allowed
    started = time.monotonic()
    server.close()
    # Without the bound, the exporter would wait out its 10 s timeout on the stalled export.
    assert time.monotonic() - started < tracing.STOP_SECONDS + 5
    assert not collector.requests
