"""A policy's regular expressions are compiled once, at load (`engine/patterntable.py`).

Compiled programs lived in one process-wide cache of 4,096, so a policy with more distinct
patterns the index cannot narrow, all candidates of a request, compiled each of them again
on every decision. Decisions stay pycasbin's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from authz.engine import build_snapshot, load_snapshot, saferegex
from authz.engine.patterntable import MAX_PATTERNS, MAX_TABLE_MEMORY
from authz.engine.policyfiles import PolicySource
from authz.errors import PolicyLoadError
from authz.principal import Principal
from tests.pycasbin_ref import enforcer, write_policy
from tests.test_regex_budget import model

# A top-level `|` leaves the index no literal prefix: every line is a candidate of every request.
REGEX = model("r.sub == p.sub && regexMatch(r.obj, p.obj) && r.act == p.act")
ANN = Principal("ann")


def lines(count: int) -> list[str]:
    return [f"p, ann, x{i}|/docs/{i}/.*, read" for i in range(count)]


def test_more_patterns_than_the_process_cache_compile_once(tmp_path: Path) -> None:
    directory = write_policy(tmp_path, REGEX, lines(5_000))
    snapshot = load_snapshot(directory)
    compiled = saferegex._program.cache_info().misses
    requests = ["/docs/4999/a", "/docs/12/b", "x7", "/docs/x", "/elsewhere"]
    for resource in requests:
        snapshot.decide(ANN, resource, "read")
    # Each decision compiled all 5,000 patterns again (the cache kept the last 4,096).
    assert saferegex._program.cache_info().misses == compiled
    reference = enforcer(directory)
    for resource in requests:
        assert snapshot.decide(ANN, resource, "read").allowed == reference.enforce("ann", resource, "read")


def test_a_pattern_made_at_decision_time_still_runs() -> None:
    # `p.obj + '.*'` is no policy value: compiled (and cached) by the process, as before.
    made = model("r.sub == p.sub && regexMatch(r.obj, p.obj + '.*') && r.act == p.act")
    snapshot = build_snapshot(PolicySource(made, (("policy.csv", "p, ann, /docs/, read\n"),)))
    assert snapshot.decide(ANN, "/docs/1", "read").allowed
    assert not snapshot.decide(ANN, "/other", "read").allowed


def test_too_many_patterns_are_refused_at_load() -> None:
    text = "".join(f"{line}\n" for line in lines(MAX_PATTERNS + 1))
    with pytest.raises(PolicyLoadError, match=f"{MAX_PATTERNS + 1:,} distinct regular-expression patterns"):
        build_snapshot(PolicySource(REGEX, (("policy.csv", text),)))


def test_a_pattern_over_its_share_of_the_table_is_refused_naming_its_line() -> None:
    # 20,000 patterns share the table's memory (52 KiB each): one with Unicode classes needs more.
    big = r"^\w\w\w\w/.*"
    text = "".join(f"{line}\n" for line in [*lines(20_000), f"p, ann, {big}, read"])
    with pytest.raises(PolicyLoadError) as caught:
        build_snapshot(PolicySource(REGEX, (("policy.csv", text),)))
    assert "policy.csv:20001:" in str(caught.value)
    assert f"{MAX_TABLE_MEMORY >> 20} MiB in all" in str(caught.value)
    # Alone, it loads.
    alone = build_snapshot(PolicySource(REGEX, (("policy.csv", f"p, ann, {big}, read\n"),)))
    assert alone.decide(ANN, "ab_é/x", "read").allowed
