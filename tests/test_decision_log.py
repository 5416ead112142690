"""The decision log (`authz.decisions`) written by a real server: its lines, its modes, its quoting."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from authz import decisionlog
from authz.api.v1 import authz_pb2
from authz.decision import Decision, Reason
from tests.conftest import settings_for
from tests.test_metrics import scrape, value
from tests.waiting import wait_for


def decision_lines(srv: Any, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every decision log line so far (the writer's queue flushed first)."""
    srv.app.service.decision_log.flush()
    return [r.getMessage() for r in caplog.records if r.name == "authz.decisions"]


def with_id(lines: list[str], decision_id: str) -> list[str]:
    return [line for line in lines if line.startswith(f"decision id={decision_id} ")]


def test_a_check_is_one_line_with_its_decision_id(server, issuer, caplog):
    caplog.set_level(logging.INFO, logger="authz.decisions")
    token = issuer.mint(sub="alice", permissions=["read:orders"])
    reply = server.stub.Check(
        authz_pb2.CheckRequest(token=token, resource="/api/orders/42", action="GET"), timeout=10
    )
    (line,) = with_id(decision_lines(server, caplog), reply.decision_id)
    assert line == (
        f"decision id={reply.decision_id} subject=alice action=GET resource=/api/orders/42 "
        f"allowed=True reason=ALLOWED policy={reply.policy_version}"
    )


def test_a_crafted_resource_cannot_forge_a_line_or_a_field(server, issuer, caplog):
    caplog.set_level(logging.INFO, logger="authz.decisions")
    token = issuer.mint(sub="mallory", permissions=[])
    forged = "/api/orders/1 allowed=True\ndecision id=forged subject=admin allowed=True"
    reply = server.stub.Check(authz_pb2.CheckRequest(token=token, resource=forged, action="GET"), timeout=10)
    assert not reply.allowed
    lines = decision_lines(server, caplog)
    assert not any("id=forged" in line.split("resource=")[0] for line in lines)
    (line,) = with_id(lines, reply.decision_id)
    assert "\n" not in line
    assert (
        'resource="/api/orders/1 allowed=True\\ndecision id=forged subject=admin allowed=True" '
        "allowed=False reason=NO_MATCHING_RULE" in line
    )

    items = [
        authz_pb2.BatchCheckItem(resource="/api/orders/2", action="GET"),
        authz_pb2.BatchCheckItem(resource="/a; GET /api/orders/3 allowed=True", action="GET"),
    ]
    batch = server.stub.BatchCheck(authz_pb2.BatchCheckRequest(token=token, items=items), timeout=10)
    (line,) = with_id(decision_lines(server, caplog), batch.decision_id)
    assert line.endswith(
        "batch=2: GET /api/orders/2 allowed=False reason=NO_MATCHING_RULE; "
        'GET "/a; GET /api/orders/3 allowed=True" allowed=False reason=NO_MATCHING_RULE'
    )


@pytest.mark.parametrize(("mode", "logged"), [("deny", {"deny"}), ("off", set())])
def test_modes_choose_what_is_logged(make_server, issuer, caplog, mode, logged):
    caplog.set_level(logging.INFO, logger="authz.decisions")
    srv = make_server(settings_for(issuer, decision_log=mode))
    token = issuer.mint(permissions=["read:orders"])
    ids = {
        "allow": srv.stub.Check(authz_pb2.CheckRequest(token=token, resource="/api/orders/1", action="GET")),
        "deny": srv.stub.Check(authz_pb2.CheckRequest(token=token, resource="/api/orders", action="POST")),
    }
    items = [
        authz_pb2.BatchCheckItem(resource="/api/orders/1", action="GET"),
        authz_pb2.BatchCheckItem(resource="/api/orders", action="POST"),
    ]
    batch = srv.stub.BatchCheck(authz_pb2.BatchCheckRequest(token=token, items=items))
    lines = decision_lines(srv, caplog)
    assert {kind for kind, reply in ids.items() if with_id(lines, reply.decision_id)} == logged
    # A batch is one line; in `deny` mode it lists only the denied items.
    expected = [] if mode == "off" else [": POST /api/orders allowed=False reason=NO_MATCHING_RULE"]
    assert [line[line.index(": ") :] for line in with_id(lines, batch.decision_id)] == expected


def test_a_full_queue_drops_and_counts_never_silently(make_server, issuer, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="authz.decisions")
    srv = make_server(settings_for(issuer, metrics_listen="127.0.0.1:0"))
    token = issuer.mint(sub="alice", permissions=["read:orders"])
    kept = srv.stub.Check(authz_pb2.CheckRequest(token=token, resource="/api/orders/1", action="GET"))
    # A writer far behind, as a burst beyond MAX_PENDING entries would leave it.
    monkeypatch.setattr(decisionlog, "MAX_PENDING", 0)
    lost = [
        srv.stub.Check(authz_pb2.CheckRequest(token=token, resource=f"/api/orders/{n}", action="GET"))
        for n in (2, 3)
    ]
    item = authz_pb2.BatchCheckItem(resource="/x", action="GET")
    batch = srv.stub.BatchCheck(authz_pb2.BatchCheckRequest(token=token, items=[item]))
    lines = decision_lines(srv, caplog)
    assert with_id(lines, kept.decision_id)
    assert not any(with_id(lines, reply.decision_id) for reply in (*lost, batch))
    # Each call whose line was dropped is counted, here and on /metrics.
    assert srv.app.service.decision_log.dropped == 3
    assert value(scrape(srv.app.metrics_port), "authz_decision_log_dropped_total") == 3


def test_a_value_with_a_percent_sign_is_written_as_it_is(server, issuer, caplog):
    caplog.set_level(logging.INFO, logger="authz.decisions")
    token = issuer.mint(sub="alice%s", permissions=["read:orders"])
    reply = server.stub.Check(
        authz_pb2.CheckRequest(token=token, resource="/api/orders/%d%(x)s", action="GET"), timeout=10
    )
    (line,) = with_id(decision_lines(server, caplog), reply.decision_id)
    assert " subject=alice%s action=GET resource=/api/orders/%d%(x)s allowed=True " in line


class StalledSink(logging.Handler):
    """A log handler whose writes wait until released: a pipe nobody reads, a stalled disk."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = threading.Event()
        self.written = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.opened.wait(60)
        self.written += 1


def test_a_stalled_sink_bounds_the_queue_by_its_bytes_and_never_blocks_the_caller(caplog):
    caplog.set_level(logging.INFO, logger="authz.decisions")
    sink = StalledSink()
    logging.getLogger("authz.decisions").addHandler(sink)
    try:
        log = decisionlog.DecisionLog("all")
        decision = Decision(True, Reason.ALLOWED)
        long = "/api/" + "x" * 4_000  # the request bound is 4,096 characters a field
        calls = 20_000  # about 160 MB of fields; every record returns while the sink is stalled
        for n in range(calls):
            log.record(f"id-{n}", "alice", "v1", [(long, long, decision)])
        per_entry = 2 * len(long)
        assert log.dropped >= calls - decisionlog.MAX_PENDING_CHARS // per_entry - 1
        sink.opened.set()
        log.flush()
        assert sink.written + log.dropped == calls
    finally:
        sink.opened.set()
        logging.getLogger("authz.decisions").removeHandler(sink)


class FailingSink(logging.Handler):
    """A handler whose `emit` raises (no `handleError`, unlike the stdlib's) for lines naming `fails`."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "fails" in message:
            raise OSError("the sink is gone")
        self.lines.append(message)


def test_a_handler_that_raises_loses_its_line_only_and_is_counted(make_server, issuer, caplog):
    caplog.set_level(logging.INFO, logger="authz.decisions")
    srv = make_server(settings_for(issuer, metrics_listen="127.0.0.1:0"))
    sink = FailingSink()
    logging.getLogger("authz.decisions").addHandler(sink)
    try:
        token = issuer.mint(sub="alice", permissions=["read:orders"])
        check = srv.stub.Check
        failing = check(authz_pb2.CheckRequest(token=token, resource="/api/orders/fails", action="GET"))
        later = check(authz_pb2.CheckRequest(token=token, resource="/api/orders/7", action="GET"))
        # Written by the writer thread (no flush here): it used to die on the failing line, and
        # every line after it waited in the queue until the queue was full, then was dropped.
        wait_for(lambda: with_id(sink.lines, later.decision_id), what="the line after the failure")
        assert not with_id(sink.lines, failing.decision_id)
        log = srv.app.service.decision_log
        assert (log.failed, log.dropped) == (1, 0)
        samples = scrape(srv.app.metrics_port)
        assert value(samples, "authz_decision_log_failed_total") == 1
        assert value(samples, "authz_decision_log_dropped_total") == 0
        reports = [r.getMessage() for r in caplog.records if r.name == "authz.server"]
        assert any("failed to write 1 line(s) (1 in all), the latest: OSError" in r for r in reports), reports
    finally:
        logging.getLogger("authz.decisions").removeHandler(sink)


def test_lines_a_handler_fails_on_give_their_room_back_exactly(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="authz.decisions")
    # Each entry holds 4 + 5 + 2 characters and one decision of 3 + 6, plus the two overheads.
    per_entry = 4 + 5 + 2 + 3 + 6 + 2 * decisionlog.ENTRY_OVERHEAD
    monkeypatch.setattr(decisionlog, "MAX_PENDING_CHARS", 10 * per_entry)
    sink = FailingSink()
    logging.getLogger("authz.decisions").addHandler(sink)
    try:
        log = decisionlog.DecisionLog("all", background=False)
        decision = Decision(True, Reason.ALLOWED)
        for round_ in range(3):
            for n in range(11):
                log.record(f"id-{n % 10}", "alice", "v1", [("GET", "/fails", decision)])
            # Ten fit, the eleventh does not, every round: a failed line gives back what it held.
            assert log.dropped == round_ + 1
            log.flush()  # the shutdown's flush: it raised the handler's error
        assert log.failed == 30
    finally:
        logging.getLogger("authz.decisions").removeHandler(sink)
