"""Whether the serving policy's decisions are cheap enough to be made on the gRPC event loop.

A call on a cached token asking for few decisions runs inline (`grpcserver`), on the premise
that a decision takes microseconds. It takes as long as the lines the index leaves it: 50,000
conditional lines on one route and action cost 15 ms a decision, so an inline `BatchCheck` of
100 such requests would hold the loop, every other call and health check, for 1.5 s (20,000
element lines of `*` and `view` under the demo model cost 54 ms a decision, 5 s a batch,
until the index narrowed them). So each inline call's CPU time is compared with
INLINE_SECONDS_PER_DECISION times its decisions; STRIKES calls over it (one could be a
policy's first, building what later decisions reuse) send every later call to the pool,
until another policy version serves. The CPU time is the loop thread's own
(`time.thread_time`), so time spent waiting for the interpreter lock, which pool threads
hold in turns, never counts against a policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("authz.server")

# On average per decision of a call. A decision of the demo policy costs 30 to 80 µs.
INLINE_SECONDS_PER_DECISION = 0.001
STRIKES = 3

Result = TypeVar("Result")


class InlineCost:
    """The policy version whose decisions proved too slow for the loop. Used on the loop's thread only."""

    def __init__(self, version: Callable[[], str]) -> None:
        self._version = version
        self.slow_version: str | None = None
        self._strikes: tuple[str, int] = ("", 0)  # the version's calls over budget so far

    def allows(self) -> bool:
        """Whether calls may still run inline under the serving policy."""
        return self.slow_version is None or self.slow_version != self._version()

    def run(self, decisions: int, call: Callable[[], Result]) -> Result:
        """`call()` on this thread, timed: past its budget, later calls of this policy go to the pool."""
        version = self._version()
        started = time.thread_time()
        try:
            return call()
        finally:
            spent = time.thread_time() - started
            if spent > max(decisions, 1) * INLINE_SECONDS_PER_DECISION:
                self._over(version, decisions, spent)

    def _over(self, version: str, decisions: int, spent: float) -> None:
        seen, strikes = self._strikes
        strikes = strikes + 1 if seen == version else 1
        self._strikes = (version, strikes)
        if strikes >= STRIKES and version != self.slow_version:
            self.slow_version = version
            log.info(
                "policy %s: %d decision(s) took %.3f s of the event loop; its calls now run on the pool",
                version,
                decisions,
                spent,
            )
