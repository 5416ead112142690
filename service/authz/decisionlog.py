"""The decision log: one line per call, written off the request path.

Formatting log records and writing them costs more than a decision, so the request
thread only appends a tuple to a deque and counts its size (no wake-up); a daemon thread
drains it every few milliseconds into `authz.decisions` lines. The queue is bounded in
entries (MAX_PENDING) and in the characters they hold (MAX_PENDING_CHARS); an entry that
finds it full is dropped and counted (`dropped`, exported as
`authz_decision_log_dropped_total`), never lost silently. A line that a handler of
`authz.decisions` fails to write (one whose `emit` raises instead of calling `handleError`,
as the stdlib's handlers do) is counted too (`failed`, `authz_decision_log_failed_total`)
and reported at most once a minute on `authz.server`; the writer goes on with the next
line (before, it died: the queue filled behind it and every later line was dropped). The
writer shares the interpreter with the request threads, so it builds each record itself:
`Logger.info` would walk the stack for the caller's file and line on every line. A line carries the
decision id that the response returns, never the token. The caller-supplied values
(subject, action, resource) are written logfmt-style, quoted and escaped when they hold a
space, a quote, `=` or a control character, so a crafted resource cannot forge a line or
a field of this audit trail. A BatchCheck is one line with
every item's outcome, as its response has one decision id. `mode` chooses what is
logged: every decision, only denials, or nothing.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from typing import Literal

from authz.decision import Decision
from authz.logrecords import record_maker

log = logging.getLogger("authz.decisions")
report = logging.getLogger("authz.server")

MODES = ("all", "deny", "off")
Mode = Literal["all", "deny", "off"]
MAX_PENDING = 100_000
# The queued entries' strings together (their characters, plus ENTRY_OVERHEAD per decision): a
# count alone let 100,000 BatchChecks of 4 KiB resources wait in memory behind a stalled sink.
MAX_PENDING_CHARS = 64 * 1024 * 1024
ENTRY_OVERHEAD = 64
DRAIN_SECONDS = 0.02
# Lines written between two hand-backs of the GIL: about half a millisecond of writing. Each
# hand-back is a thread switch that, on a busy machine, can cost the event loop its core:
# handing back every 8 lines made a cached Check cost about a fifth more server CPU time
# there than every 64 (issue 15, with bench/loadgen.py against `authz serve`).
YIELD_EVERY = 64

# Between two reports of lines that a handler failed to write: each report is a log line too.
FAILURE_REPORT_SECONDS = 60.0

# (action, resource, decision) for each item of one call.
Outcome = tuple[str, str, Decision]
# (decision id, subject, version, outcomes, batch, size): the size (`_size`) is kept with the
# entry, so the writer gives back exactly what the queue counted, without measuring it again.
Entry = tuple[str, str, str, Sequence[Outcome], bool, int]


_UNSAFE = re.compile('[ "=;]')


def field(value: str) -> str:
    """`value` as one logfmt value: as it is when plain, else a JSON string (quoted, escaped)."""
    if value and value.isprintable() and _UNSAFE.search(value) is None:
        return value
    return json.dumps(value)


def line(entry: Entry) -> str:
    """One queued call's log message."""
    decision_id, subject, version, outcomes, batch, _ = entry
    if not batch:
        action, resource, decision = outcomes[0]
        return (
            f"decision id={decision_id} subject={field(subject)} action={field(action)} "
            f"resource={field(resource)} allowed={decision.allowed} reason={decision.reason.name} "
            f"policy={version}"
        )
    items = "; ".join(
        f"{field(a)} {field(r)} allowed={d.allowed} reason={d.reason.name}" for a, r, d in outcomes
    )
    return (
        f"decision id={decision_id} subject={field(subject)} policy={version} batch={len(outcomes)}: {items}"
    )


class DecisionLog:
    """Queue decisions for logging; `flush` writes everything queued so far."""

    def __init__(self, mode: Mode = "all", *, background: bool = True) -> None:
        """`background=False`: the writer thread is never started, entries wait for `flush` (the
        bench times the writer's work on its own)."""
        self.mode = mode
        self._pending: collections.deque[Entry] = collections.deque()
        self._background = background
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._write_lock = threading.Lock()
        # Guards the two counts below: held for an addition or a subtraction, never while writing.
        self._count_lock = threading.Lock()
        self._pending_chars = 0
        self.dropped = 0
        # Lines a handler raised on; changed by the writer, under `_write_lock`.
        self.failed = 0
        self._reported = (0.0, 0)  # (time.monotonic(), `failed`) of the latest report

    def record(
        self,
        decision_id: str,
        subject: str,
        version: str,
        outcomes: Sequence[Outcome],
        *,
        batch: bool = False,
        contexts: Sequence[str] = (),
    ) -> None:
        """Queue one call's decisions (dropped and counted when the writer is far behind).

        `contexts` are the outcomes' enforce contexts, in order (empty when all are the
        default), logged after the policy version as `context=2` (a batch's: `context=,2`).
        """
        if self.mode == "off" or not log.isEnabledFor(logging.INFO):
            return
        if contexts:
            if self.mode == "deny":
                contexts = [c for c, o in zip(contexts, outcomes, strict=True) if not o[2].allowed]
            # Carried with the version, so a line's fields and the queue's entries stay as they were.
            version = f"{version} context={field(','.join(contexts))}"
        if self.mode == "deny":
            outcomes = [o for o in outcomes if not o[2].allowed]
            if not outcomes:
                return
        if self._thread is None and self._background:
            self._start()
        subject = subject or "-"
        size = _size(decision_id, subject, version, outcomes)
        entry: Entry = (decision_id, subject, version, outcomes, batch, size)
        with self._count_lock:
            if len(self._pending) >= MAX_PENDING or self._pending_chars + size > MAX_PENDING_CHARS:
                self.dropped += 1
                return
            self._pending_chars += size
            self._pending.append(entry)

    def flush(self) -> None:
        """Write everything queued so far, in this thread."""
        self._drain()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="authz-decision-log", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        wait = threading.Event().wait
        while True:
            wait(DRAIN_SECONDS)
            self._drain(yield_gil=True)

    def _drain(self, *, yield_gil: bool = False) -> None:
        with self._write_lock:
            pending = self._pending
            written = 0
            make, handle = record_maker(log, __file__, "_drain"), log.handle
            # Checked per drain as Logger.info would per line: lines queued before the logger
            # was turned down are not written.
            enabled = log.isEnabledFor(logging.INFO)
            while pending:
                written += 1
                if yield_gil and written % YIELD_EVERY == 0:
                    # Hand the GIL back now and then: a writer that keeps it for a whole backlog
                    # makes the RPC threads wait out the interpreter's switch interval (5 ms).
                    time.sleep(0)
                entry = pending.popleft()
                with self._count_lock:
                    self._pending_chars -= entry[5]
                if not enabled:
                    continue
                try:
                    handle(make(line(entry)))
                except Exception as exc:  # a handler's fault: this line is lost, the next ones are not
                    self.failed += 1
                    self._report(exc)

    def _report(self, exc: Exception) -> None:
        # At most once a minute (the first at once), so a sink that fails on every line does
        # not double the log; on another logger, and guarded, as its handlers may fail alike.
        at, reported = self._reported
        now = time.monotonic()
        if reported and now - at < FAILURE_REPORT_SECONDS:
            return
        self._reported = (now, self.failed)
        # Counted in `failed` all the same when this fails too.
        with contextlib.suppress(Exception):
            report.error(
                "decision log: a handler of %s failed to write %d line(s) (%d in all), the latest: %s: %s",
                log.name,
                self.failed - reported,
                self.failed,
                type(exc).__name__,
                exc,
            )


def _size(decision_id: str, subject: str, version: str, outcomes: Sequence[Outcome]) -> int:
    """What an entry holds, in characters (ENTRY_OVERHEAD for each decision's own objects)."""
    held = len(decision_id) + len(subject) + len(version) + ENTRY_OVERHEAD
    return held + sum(len(action) + len(resource) + ENTRY_OVERHEAD for action, resource, _ in outcomes)
