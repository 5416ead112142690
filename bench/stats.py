"""Timing helpers: percentiles and time-bounded sampling of a call."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary_us(samples_ns: list[int]) -> dict[str, Any]:
    """Median and p99 in microseconds, with the sample count."""
    us = [s / 1000 for s in samples_ns]
    return {"median_us": percentile(us, 0.5), "p99_us": percentile(us, 0.99), "samples": len(us)}


def timed_calls(
    call: Callable[[T], Any], items: Iterable[T], *, budget_s: float, min_n: int, max_n: int
) -> Iterator[tuple[T, Any, int]]:
    """Call `call(item)` for each item, one at a time: (item, result, nanoseconds) per call.

    Stops after `max_n` calls, or once `budget_s` has passed and `min_n` calls were made,
    so a slow engine gets a few samples instead of holding the whole run.
    """
    gc.collect()
    deadline = time.perf_counter() + budget_s
    clock = time.perf_counter_ns
    for n, item in enumerate(items):
        if n >= max_n or (n >= min_n and time.perf_counter() > deadline):
            return
        start = clock()
        result = call(item)
        yield item, result, clock() - start


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is 0 or NaN."""
    if not denominator or denominator != denominator:
        return float("nan")
    return numerator / denominator
