"""Resident memory: after loading a large policy, after N decisions on it, after 2N; beside pycasbin.

Each engine runs in a fresh process (`python -m bench.memory ENGINE DIRECTORY N`) that
imports everything first and then reports its resident set at each step. authz's child
makes N and then N more decisions on distinct requests (the decision cache on, as served)
and fills the verified-token cache past its bound with token-sized entries in each half,
so both caches churn; its growth between N and 2N shows they are bounded. pycasbin's
child makes a few decisions only (each takes a large fraction of a second at 100k lines).
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.policyload import resident_bytes
from bench.profile import Profile
from bench.report import Report
from bench.serving import check_templates
from bench.stats import ratio
from bench.workloads import Workload, build

MAX_MEMORY_RATIO = 1.5
# "No growth" from N to 2N decisions, within the allocator's noise.
MAX_GROWTH = 1.05
_MIB = 1 << 20
_FAKE_TOKEN = "eyJ" + "x" * 900  # about an Auth0 access token's length; the cache only keys by it


def _requests(workload: Workload) -> tuple[list[str], list[tuple[str, str]]]:
    return workload.users, check_templates([(r.obj, r.act) for r in workload.requests])


def _fill_token_cache(cache: Any, start: int, permissions: tuple[str, ...]) -> None:
    from authz.principal import Principal

    expires = time.time() + 3600
    for i in range(start, start + 2 * cache.max_entries):
        principal = Principal(id=f"auth0|user{i}", permissions=permissions, expires_at=expires)
        cache.put(f"{_FAKE_TOKEN}{i}", principal, expires)


def measure_authz(directory: Path, workload: Workload, decisions: int) -> dict[str, Any]:
    """Resident bytes after the load, after `decisions` and after twice as many; the caches' sizes."""
    from authz.engine import load_snapshot
    from authz.principal import Principal
    from authz.tokens.cache import TokenCache

    users, templates = _requests(workload)
    principals = [Principal(id=user) for user in users]
    permissions = tuple(workload.permissions[:12])
    gc.collect()
    before = resident_bytes()
    snapshot = load_snapshot(directory)
    tokens = TokenCache()
    gc.collect()
    result: dict[str, Any] = {"loaded": resident_bytes() - before}
    _fill_token_cache(tokens, -2 * tokens.max_entries, permissions)
    gc.collect()
    # What a full token cache holds; pycasbin's service has none, so the ratio leaves it out.
    result["token_cache_bytes"] = resident_bytes() - before - result["loaded"]
    n = 0
    for mark in ("after_n", "after_2n"):
        _fill_token_cache(tokens, n, permissions)
        for _ in range(decisions):
            template, action = templates[n % len(templates)]
            snapshot.decide(principals[n % len(principals)], template.format(n=n), action, None)
            n += 1
        gc.collect()
        result[mark] = resident_bytes() - before
    cache = snapshot.cache
    result["decision_cache"] = {"entries": len(cache._entries), "bound": cache.max_entries} if cache else None
    result["token_cache"] = {"entries": len(tokens._entries), "bound": tokens.max_entries}
    return result


def measure_pycasbin(directory: Path, workload: Workload, decisions: int) -> dict[str, Any]:
    """Resident bytes after pycasbin's Enforcer loaded `directory`, and after a few decisions."""
    from tests.pycasbin_ref import enforcer

    users, templates = _requests(workload)
    gc.collect()
    before = resident_bytes()
    loaded = enforcer(directory)
    gc.collect()
    result: dict[str, Any] = {"loaded": resident_bytes() - before}
    for n in range(decisions):
        template, action = templates[n % len(templates)]
        loaded.enforce(users[n % len(users)], template.format(n=n), action)
    gc.collect()
    result["after_n"] = resident_bytes() - before
    result["decisions"] = decisions
    return result


def _child(engine: str, lines: int, directory: Path, decisions: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", engine, str(lines), str(directory), str(decisions)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(profile: Profile, report: Report) -> None:
    """authz and pycasbin at `memory_lines`: retained memory, and authz's growth from N to 2N decisions."""
    lines = profile.memory_lines
    directory = build("routes", lines, 0).write(profile.workdir / f"memory-{lines}")
    authz = _child("authz", lines, directory, profile.memory_decisions)
    pycasbin = _child("pycasbin", lines, directory, profile.memory_pycasbin_decisions)
    n = profile.memory_decisions
    data: dict[str, Any] = {
        "lines": lines,
        "decisions": n,
        "authz": authz,
        "pycasbin": pycasbin,
        "retained_ratio": ratio(authz["after_n"] - authz["token_cache_bytes"], pycasbin["after_n"]),
        "growth_n_to_2n_mib": (authz["after_2n"] - authz["after_n"]) / _MIB,
        "growth_n_to_2n": ratio(authz["after_2n"], authz["after_n"]),
    }
    token_mib = authz["token_cache_bytes"] / _MIB
    rows = [
        ["authz", authz["loaded"] / _MIB, token_mib, authz["after_n"] / _MIB, authz["after_2n"] / _MIB],
        [
            f"pycasbin ({pycasbin['decisions']} decisions)",
            pycasbin["loaded"] / _MIB,
            None,
            pycasbin["after_n"] / _MIB,
            None,
        ],
    ]
    report.section(
        "memory",
        f"Resident memory retained, MiB (routes, {lines:,} lines; N = {n:,} distinct decisions)",
        ["engine", "loaded", "+ full token cache", "after N", "after 2N"],
        rows,
        data,
    )
    dc, tc = authz["decision_cache"], authz["token_cache"]
    report.note(
        f"authz after N, less its token cache, = {data['retained_ratio']:.2f}x pycasbin's retained; "
        f"growth N -> 2N {data['growth_n_to_2n_mib']:+.1f} MiB; decision cache {dc['entries']:,} entries "
        f"(bound {dc['bound']:,}), token cache {tc['entries']:,} (bound {tc['bound']:,}) "
        f"after {4 * tc['bound']:,} tokens put"
    )
    report.target(
        f"memory: authz / pycasbin retained at {lines:,} lines",
        data["retained_ratio"],
        MAX_MEMORY_RATIO,
        at_least=False,
    )
    report.target(
        "memory: authz after 2N / after N decisions", data["growth_n_to_2n"], MAX_GROWTH, at_least=False
    )


if __name__ == "__main__":
    import logging

    logging.disable(logging.CRITICAL)
    engine_, lines_, directory_, decisions_ = (
        sys.argv[1],
        int(sys.argv[2]),
        Path(sys.argv[3]),
        int(sys.argv[4]),
    )
    workload_ = build("routes", lines_, 600)
    measure = {"authz": measure_authz, "pycasbin": measure_pycasbin}[engine_]
    print(json.dumps(measure(directory_, workload_, decisions_)))
