"""Waiting for a condition with a deadline: the one way tests wait for the service.

A fixed sleep races on a busy machine (the state is not there yet) and wastes time on an
idle one; polling a predicate until a generous deadline does neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout: float = 10.0, what: str = "") -> T:
    """Poll `probe` until it returns something truthy and return that; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or 'condition'}: still {value!r} after {timeout} s")
        time.sleep(0.02)
