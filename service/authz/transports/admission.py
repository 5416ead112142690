"""Load shedding by queue time: while calls wait longer than a budget, new ones are refused at once.

Under overload the queue is not where Python can see it. grpc.aio takes one call per
method at a time from grpcio's core, and only when the event loop gets to it; the calls
that arrive meanwhile wait in the core, unseen, for as long as the loop is behind (about
a second at twice authz's sustainable rate, when the core's own limit of 1,000 to 3,000
waiting calls starts cancelling them). So the backlog is measured from outside:

- channelz counts every call the core has started, and the gate counts every call the
  loop has taken (`arrived`). Their difference, less its lowest value so far, is the
  number of calls waiting in the core; divided by the rate the loop takes calls at, it
  is how long the newest of them will have waited. That rate is measured only while at
  least `MIN_BACKLOG` calls wait (the loop is then taking calls as fast as it can), and
  fewer waiting calls are never a backlog: a caller with one call at a time on a stalled
  machine, or a call the core ended before the loop took it, must not read as a queue;
- while that wait is over the budget, every call but a health check is refused with
  RESOURCE_EXHAUSTED before its request is read (a flood of calls that never send one
  is refused too, while it keeps the loop behind). A refusal costs the loop a third to a
  half of an answer, so the loop catches up, and the calls it answers waited about the
  budget at most;
- calls the core ended while they waited, or that the gate never sees (an unknown
  method's, reflection's), widen the difference for good. When refusing every call for
  `STUCK_SECONDS` has left the backlog as it was (a real one shrinks, or grows when the
  loop cannot even refuse as fast as calls arrive), it is taken as such and no longer
  counted.

Channelz is read on calls' arrival, at most every `CALM_SAMPLE_SECONDS`, and every
`SAMPLE_SECONDS` while there is a backlog: an idle server pays nothing. Clients with a
few calls in flight build a backlog of those calls at most, however long they keep the
server busy (8 of them make about 3 ms on a busy 2-core machine). A refusal is not
free: far beyond twice the sustainable rate the loop cannot even refuse as fast as calls
arrive, and the core's own limit is what bounds the queue.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, get_args

from grpc._cython import cygrpc  # type: ignore[attr-defined]  # channelz, as grpcio-channelz reads it
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Off unless configured: the estimate reads grpcio's channelz through its private module,
# and a busy machine's stalls look like a backlog. A budget of 0.1 s is far above what
# clients calling back to back build up (8 calls in flight make about 3 ms on a busy
# 2-core machine) and a tenth of the second that grpcio's core would queue for.
MAX_QUEUE_SECONDS = 0.0
# How often, at most, channelz is read while calls arrive: while there is a backlog, and
# while there is none (a read takes 50 to 100 µs: 1% of a core at this pace).
SAMPLE_SECONDS = 0.002
CALM_SAMPLE_SECONDS = 0.01
# Refusing every call drains a real backlog within this; one that stays is not a queue.
STUCK_SECONDS = 0.2
STEADY_CALLS = 2
# Fewer waiting calls than this are not a backlog, and measure no rate: shedding is for floods.
MIN_BACKLOG = 8
Refusal = Literal[
    "queue_time",  # calls waited in grpcio's core longer than the budget (this module)
    "max_concurrent_rpcs",  # that many calls were being answered (callgate)
    "blocking_jobs",  # that many blocking jobs were queued or running (callgate.run_blocking)
    "awaiting_request",  # too many calls were waiting for their request message (callgate)
    "open_streams",  # too many server streams (health Watch) were open (callgate)
]
REFUSALS: tuple[Refusal, ...] = get_args(Refusal)
_STARTED = re.compile(rb'"callsStarted":"(\d+)"')


def server_ids() -> set[int]:
    """Channelz's ids of the gRPC servers of this process.

    grpcio gives a server its id when channelz is first asked, not when the server is made,
    and not in the order they were made: a server made after others may get the smallest
    id. So a new server is found as the one id that was not there before it was made
    (asking gives the servers made so far their ids).
    """
    ids: set[int] = set()
    start = 0
    while True:
        page: dict[str, Any] = json.loads(cygrpc.channelz_get_servers(start))
        found = [int(server["ref"]["serverId"]) for server in page.get("server", ())]
        ids.update(found)
        if page.get("end", True) or not found:
            return ids
        start = max(found) + 1


def started_calls(server_id: int) -> int:
    """The calls grpcio's core has started on channelz server `server_id` (taken by the loop or not)."""
    found = _STARTED.search(cygrpc.channelz_get_server(server_id))
    return int(found[1]) if found else 0


class Admission:
    """Counts the calls the loop takes; refuses calls while those waiting in the core exceed `budget` s.

    Everything runs on the event loop thread; `refused` is read by `/metrics` scrapes.
    """

    def __init__(
        self,
        budget: float,
        *,
        started: Callable[[int], int] = started_calls,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`started` and `clock` are channelz's count and the monotonic clock (a test scripts them)."""
        self.budget = budget
        self._started, self._clock = started, clock
        self.server_id: int | None = None
        self.taken = 0  # calls the loop took from the core
        self.refused: dict[Refusal, int] = dict.fromkeys(REFUSALS, 0)  # by reason, of every limit of the gate
        self.behind = 0.0  # the backlog's estimated wait at the last sample, in seconds
        self._sampled_at = 0.0
        self._taken_then = 0
        self._rate = 0.0  # calls taken per second while behind: the most the loop takes (moving average)
        self._base = 0  # the counts' lowest difference: no backlog then
        self._backlog = 0
        self._refusing_since, self._lag_then = 0.0, 0

    def watch(self, created: set[int]) -> None:
        """Read the core's count of started calls from the channelz server made for this gate:
        the one id in `created` (none, or several made at once: refuse nothing by time)."""
        self.server_id = next(iter(created)) if self.budget > 0 and len(created) == 1 else None
        if self.budget > 0 and self.server_id is None:
            log.warning(
                "the gRPC server's channelz id is unknown (%d new servers): no refusals by queue time",
                len(created),
            )

    def arrived(self) -> None:
        """A call has reached the gate (health checks too: the core counts every call)."""
        self.taken += 1

    def count(self, reason: Refusal) -> None:
        """One call refused for `reason`."""
        self.refused[reason] += 1

    def overloaded(self) -> str | None:
        """The refusal's message while the backlog is over budget (the refusal counted), else None."""
        if self.server_id is None:
            return None
        now = self._clock()
        if now - self._sampled_at >= (SAMPLE_SECONDS if self._backlog > 0 else CALM_SAMPLE_SECONDS):
            self._sample(now, self.server_id)
        if self.behind <= self.budget:
            return None
        self.count("queue_time")
        return (
            f"the server is behind: calls wait about {self.behind * 1000:.0f} ms for it "
            f"({self._backlog} waiting, taken at {self._rate:.0f}/s), "
            f"over its {self.budget * 1000:g} ms budget; retry later"
        )

    def _sample(self, now: float, server_id: int) -> None:
        lag = self._started(server_id) - self.taken  # started, and not taken (yet, or ever)
        elapsed = now - self._sampled_at
        if self._backlog >= MIN_BACKLOG and elapsed <= 4 * SAMPLE_SECONDS:
            # Behind since the last sample: the loop took calls as fast as it can.
            rate = (self.taken - self._taken_then) / elapsed
            self._rate = rate if self._rate == 0 else 0.8 * self._rate + 0.2 * rate
        self._base = min(self._base, lag)
        if self.behind <= self.budget:
            self._refusing_since, self._lag_then = now, lag
        elif now - self._refusing_since > STUCK_SECONDS:
            # Refusing every call shortens a backlog, and one the loop cannot keep up with
            # grows; one that stays as it was is calls that will never be taken.
            if abs(lag - self._lag_then) <= STEADY_CALLS:
                self._base = lag
            self._refusing_since, self._lag_then = now, lag
        self._backlog = lag - self._base
        self.behind = self._backlog / self._rate if self._rate > 0 and self._backlog >= MIN_BACKLOG else 0.0
        self._sampled_at, self._taken_then = now, self.taken


class RefusalCollector(Collector):
    """`authz_grpc_refusals_total` by reason (each listed from 0), read from the gate at each scrape."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    def collect(self) -> Iterator[Metric]:
        """The counts as they stand."""
        family = CounterMetricFamily(
            "authz_grpc_refusals",
            "gRPC calls refused with RESOURCE_EXHAUSTED before being answered, by reason: queue_time "
            "(calls waited longer than AUTHZ_MAX_QUEUE_SECONDS), max_concurrent_rpcs, blocking_jobs "
            "(the thread pool's queue was full), awaiting_request (too many calls were waiting "
            "for their request message).",
            labels=("reason",),
        )
        for reason, count in list(self.admission.refused.items()):
            family.add_metric((reason,), count)
        yield family
