"""The queue-time estimate (authz.transports.admission) on scripted counts and a scripted clock.

The gRPC tests (test_shedding.py) show it wired into a real server; here the core's count
of started calls and the time are set by the test, so each case is exact whatever the
machine's load: the estimator's own code runs, only grpcio's channelz count is scripted.
"""

from __future__ import annotations

from authz.transports.admission import MIN_BACKLOG, STUCK_SECONDS, Admission

SERVER = 1


class Core:
    """What channelz would report: calls started so far, and the time."""

    def __init__(self) -> None:
        self.started = 0
        self.now = 1000.0

    def count(self, server_id: int) -> int:
        assert server_id == SERVER
        return self.started


def _admission(core: Core, budget: float) -> Admission:
    admission = Admission(budget, started=core.count, clock=lambda: core.now)
    admission.watch({SERVER})
    return admission


def _take(admission: Admission) -> str | None:
    """The loop takes one call from the core: the refusal's message, or None when admitted."""
    admission.arrived()
    return admission.overloaded()


def test_a_caller_with_one_call_at_a_time_is_never_refused() -> None:
    # On a stalled machine, calls a few milliseconds apart, with calls the core ended before
    # the loop took them (just under MIN_BACKLOG): never a backlog, even at a 1 ms budget.
    core = Core()
    admission = _admission(core, budget=0.001)
    core.started = MIN_BACKLOG - 1
    for n in range(2000):
        core.now += 0.001 * (1 + n % 7)
        core.started += 1
        assert _take(admission) is None, n
    assert admission.refused["queue_time"] == 0


def test_a_flood_in_the_core_is_refused_until_it_drains() -> None:
    core = Core()
    admission = _admission(core, budget=0.01)
    core.started = 1000  # a flood: the core started a thousand calls at once
    outcomes = []
    while admission.taken < core.started:
        # An answer costs the loop 0.4 ms, a refusal a third of that.
        refused = _take(admission)
        outcomes.append(refused)
        core.now += 0.0004 if refused is None else 0.00013
    refusals = [message for message in outcomes if message is not None]
    assert refusals, "a backlog of a thousand calls at about 2,500 a second was not refused"
    assert all("the server is behind" in m and "over its 10 ms budget" in m for m in refusals)
    assert admission.refused["queue_time"] == len(refusals)
    # The first calls are answered (no rate measured yet), the last ones too (drained).
    assert outcomes[0] is None and outcomes[-1] is None
    first, last = outcomes.index(refusals[0]), len(outcomes) - 1 - outcomes[::-1].index(refusals[-1])
    assert all(message is not None for message in outcomes[first : last + 1]), "refusals came and went"
    # Once drained, a caller one call at a time is answered.
    for _ in range(100):
        core.now += 0.001
        core.started += 1
        assert _take(admission) is None


def test_calls_the_core_ended_unseen_are_no_backlog_after_stuck_seconds() -> None:
    # 50 calls the core started and ended (their clients gave up) before the loop took them:
    # they never drain. Once refusing every call for STUCK_SECONDS left them as they were,
    # they are taken as gone, and calls are answered again, for good.
    core = Core()
    admission = _admission(core, budget=0.01)
    core.started = 50
    refused_at = []
    for n in range(3000):
        core.now += 0.001  # a steady 1,000 calls a second: the loop keeps up with them
        core.started += 1
        if _take(admission) is not None:
            refused_at.append(n)
    assert refused_at, "50 waiting calls at 1,000 a second are 50 ms: over the budget at first"
    assert refused_at[-1] - refused_at[0] <= 2 * STUCK_SECONDS / 0.001 + 50
    assert refused_at[-1] < 1000, "refusals went on after the lost calls were written off"


def test_off_without_a_channelz_server() -> None:
    core = Core()
    admission = Admission(0.01, started=core.count, clock=lambda: core.now)
    admission.watch(set())
    core.started = 10_000
    assert _take(admission) is None and admission.server_id is None
