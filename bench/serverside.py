"""What the server says about a load run: its CPU time per call and its handlers' own time.

Throughput alone cannot say where a Check's extra time goes: the load generator shares the
machine, and the time a handler takes in a serving process is not the time it takes in a
loop of its own (bench/breakdown.py). So each RPC run also reads, before and after, the
server process's CPU time (`/proc/PID/stat`, all of its threads) and its
`authz_rpc_duration_seconds` histogram from its metrics listener: the time each call spent
in the service after grpcio decoded the request, as measured where it ran.
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# The RPC whose handler a load-generator kind calls (health is answered by grpcio-health-checking).
RPC_OF_KIND = {
    "check": "Check",
    "check-cached": "Check",
    "batch": "BatchCheck",
    "batch-cached": "BatchCheck",
    "visibility": "GetVisibility",
    "visibility-cached": "GetVisibility",
}
SCRAPE_SECONDS = 10.0


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` so far (every thread), or None off Linux."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # Fields after the command name, which may hold spaces but ends at the last ')'.
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def handler_seconds(metrics_url: str) -> dict[str, tuple[float, float]]:
    """Per RPC, (calls, seconds in the service) from the server's `authz_rpc_duration_seconds`."""
    with urllib.request.urlopen(metrics_url, timeout=SCRAPE_SECONDS) as answer:  # noqa: S310 - loopback http
        text = answer.read().decode("utf-8")
    found: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "authz_rpc_duration_seconds":
            continue
        for sample in family.samples:
            rpc = sample.labels.get("rpc", "")
            calls, seconds = found.get(rpc, (0.0, 0.0))
            if sample.name.endswith("_count"):
                calls = sample.value
            elif sample.name.endswith("_sum"):
                seconds = sample.value
            found[rpc] = (calls, seconds)
    return found


@dataclass(frozen=True)
class Reading:
    """The server's counters at one moment."""

    cpu: float | None
    handlers: dict[str, tuple[float, float]]


@dataclass(frozen=True)
class Server:
    """One serving process: its pid and its metrics listener's URL."""

    pid: int
    metrics_url: str

    def read(self) -> Reading:
        """The counters now."""
        return Reading(cpu_seconds(self.pid), handler_seconds(self.metrics_url))

    def figures(self, before: Reading, after: Reading, kind: str, calls: int) -> dict[str, float]:
        """`server_cpu_us` per call over the `calls` the run made, and `handler_us`, the mean time in
        the service of the calls of `kind`'s RPC (absent when not measured)."""
        out: dict[str, float] = {}
        if before.cpu is not None and after.cpu is not None and calls:
            out["server_cpu_us"] = (after.cpu - before.cpu) / calls * 1e6
        rpc = RPC_OF_KIND.get(kind)
        if rpc is not None:
            n0, s0 = before.handlers.get(rpc, (0.0, 0.0))
            n1, s1 = after.handlers.get(rpc, (0.0, 0.0))
            if n1 > n0:
                out["handler_us"] = (s1 - s0) / (n1 - n0) * 1e6
        return out
