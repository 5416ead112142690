"""The bench's command line: choose sections, run them, print targets, write results.json."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import engine, plan, policyload, rpc, store, tokens, transport
from bench.machine import describe
from bench.profile import Profile
from bench.report import Report

RESULTS = Path(__file__).resolve().parent / "results.json"
SECTIONS: dict[str, Callable[[Profile, Report], None]] = {
    "engine": engine.run,
    "load": policyload.run,
    "tokens": tokens.run,
    "grpc": rpc.run,
    "workers": rpc.run_workers,
    "transport": transport.run,
    "store": store.run,
    "plan": plan.run,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """--quick, --only SECTION[,SECTION], --out FILE."""
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, short durations (harness check)")
    parser.add_argument("--only", help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (default bench/results.json)")
    ns = parser.parse_args(argv)
    ns.sections = [s.strip() for s in ns.only.split(",")] if ns.only else list(SECTIONS)
    unknown = [s for s in ns.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")
    return ns


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections; exit 0 whatever the verdicts (a bench reports, it does not gate)."""
    ns = parse_args(argv)
    # Only warnings from the bench's own process: its output is the tables.
    logging.basicConfig(level=logging.WARNING)
    machine = describe()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="authz-bench-") as tmp:
        profile = Profile.quick(Path(tmp)) if ns.quick else Profile(Path(tmp))
        report = Report(machine, {"quick": ns.quick, "sections": ns.sections})
        print(
            f"authz bench on {machine['cores']} cores, {machine['cpu']}, {machine['python']}"
            f"{' (quick)' if ns.quick else ''}; load average {machine['load_average_at_start']:.2f}",
            flush=True,
        )
        for name in ns.sections:
            SECTIONS[name](profile, report)
        report.print_targets()
        report.options["elapsed_s"] = round(time.monotonic() - started, 1)
        machine["load_average_at_end"] = os.getloadavg()[0]
        report.write(ns.out)
    print(
        f"\nwrote {ns.out} ({report.options['elapsed_s']} s; "
        f"load average {machine['load_average_at_end']:.2f} at the end)",
        flush=True,
    )
    return 0
