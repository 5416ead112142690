"""Policy load time and resident memory, each load in a fresh process.

The parent runs `python -m bench.policyload ENGINE DIRECTORY` per engine and size; the
child imports everything first, then measures only the load, and prints one JSON line.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.profile import Profile
from bench.report import Report
from bench.stats import ratio
from bench.workloads import FAMILIES, build

TARGET_AT = 100_000
MAX_TIME_RATIO = 2.0
MAX_MEMORY_RATIO = 2.0
_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident set size now, from /proc/self/statm."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE


def measure(engine: str, directory: Path) -> dict[str, Any]:
    """Load `directory` with `engine` (authz or pycasbin) in this process: seconds and bytes retained."""
    from authz.engine import load_snapshot
    from tests.pycasbin_ref import enforcer

    loader = {"authz": load_snapshot, "pycasbin": enforcer}[engine]
    gc.collect()
    before = resident_bytes()
    start = time.perf_counter()
    loaded = loader(directory)
    seconds = time.perf_counter() - start
    gc.collect()
    after = resident_bytes()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    del loaded
    return {"seconds": seconds, "rss_bytes": after - before, "peak_rss_bytes": peak}


def _in_child(engine: str, directory: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.policyload", engine, str(directory)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _best_of(profile: Profile, engine: str, directory: Path) -> dict[str, Any]:
    # The fastest of a few fresh loads: other work on the machine only ever adds time.
    runs = [_in_child(engine, directory) for _ in range(profile.load_rounds)]
    return min(runs, key=lambda r: float(r["seconds"]))


def run(profile: Profile, report: Report) -> None:
    """Load time and memory at each size, both engines; targets at the largest size."""
    data: dict[str, dict[str, Any]] = {}
    rows: list[list[Any]] = []
    mib = 1 << 20
    for family in FAMILIES:
        data[family] = {}
        for size in profile.sizes:
            directory = build(family, size, 0).write(profile.workdir / f"load-{family}-{size}")
            authz, pycasbin = _best_of(profile, "authz", directory), _best_of(profile, "pycasbin", directory)
            cell = {
                "authz": authz,
                "pycasbin": pycasbin,
                "time_ratio": ratio(authz["seconds"], pycasbin["seconds"]),
                "memory_ratio": ratio(authz["rss_bytes"], pycasbin["rss_bytes"]),
            }
            data[family][str(size)] = cell
            rows.append(
                [
                    family,
                    size,
                    authz["seconds"] * 1000,
                    pycasbin["seconds"] * 1000,
                    cell["time_ratio"],
                    authz["rss_bytes"] / mib,
                    pycasbin["rss_bytes"] / mib,
                    cell["memory_ratio"],
                ]
            )
        if str(TARGET_AT) in data[family]:
            at = data[family][str(TARGET_AT)]
            report.target(
                f"load {family}: time vs pycasbin at {TARGET_AT:,}",
                at["time_ratio"],
                MAX_TIME_RATIO,
                at_least=False,
            )
            report.target(
                f"load {family}: memory vs pycasbin at {TARGET_AT:,}",
                at["memory_ratio"],
                MAX_MEMORY_RATIO,
                at_least=False,
            )
    report.section(
        "load",
        "Policy load (fresh process per load; ms, MiB of resident memory retained)",
        ["family", "lines", "authz ms", "pycasbin ms", "time x", "authz MiB", "pycasbin MiB", "memory x"],
        rows,
        data,
    )


if __name__ == "__main__":
    import logging

    logging.disable(logging.CRITICAL)
    print(json.dumps(measure(sys.argv[1], Path(sys.argv[2]))))
