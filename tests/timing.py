"""Timing in tests: a call's seconds, the best of a few, and how work grows with its input.

A test that guards against quadratic work by an absolute bound ("under 10 s") fails on a
slow, busy machine and passes the regression on a fast one. `growth` compares the same work
at n and at 4n instead: linear work takes about 4 times as long, quadratic work 16 times,
whatever the machine's speed; LINEAR_AT_4N sits between the two.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from functools import partial

GROWTH_FACTOR = 4
# Linear is about 4 (less where a fixed cost counts), n log n about 5, quadratic about 16:
# the margin on both sides absorbs what is left of the noise after the best of a few runs.
LINEAR_AT_4N = 9.0


def seconds(action: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    """How long `action()` takes on `clock` (wall-clock time unless told)."""
    start = clock()
    action()
    return clock() - start


def best_seconds(action: Callable[[], object], runs: int = 3) -> float:
    """The shortest wall-clock time of `runs` calls: what the work costs without preemption."""
    return min(seconds(action) for _ in range(runs))


def sizes(n: int) -> tuple[int, int]:
    """The two input sizes `growth(work, n)` times: prepare an input for each."""
    return n, GROWTH_FACTOR * n


def growth(work: Callable[[int], object], n: int, runs: int = 3) -> float:
    """How many times longer `work(GROWTH_FACTOR * n)` takes than `work(n)`: the best of `runs` each.

    Timed in this thread's CPU time, so other processes and threads on a busy machine do not
    count; the sizes alternate, so neither is measured only while the machine is quiet.
    Prepare the inputs beforehand: `work` is timed whole.
    """
    best = dict.fromkeys(sizes(n), math.inf)
    for _ in range(runs):
        for size in best:
            best[size] = min(best[size], _cpu_seconds(partial(work, size)))
    return best[GROWTH_FACTOR * n] / best[n]


def assert_linear(work: Callable[[int], object], n: int, what: str) -> None:
    """Fail unless `work` grows about linearly from n to GROWTH_FACTOR * n `what` (see `growth`)."""
    ratio = growth(work, n)
    assert ratio < LINEAR_AT_4N, (
        f"{GROWTH_FACTOR} times the {what} took {ratio:.1f} times as long (linear: about {GROWTH_FACTOR})"
    )


def _cpu_seconds(action: Callable[[], object]) -> float:
    # A full collection walks every object of the process (what earlier tests left too), so
    # it is held off while timing: when one falls is no part of the work.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return seconds(action, time.thread_time)
    finally:
        if enabled:
            gc.enable()
