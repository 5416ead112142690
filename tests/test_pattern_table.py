"""A policy's regular expressions are compiled once, at load (`engine/patterntable.py`).

Compiled programs lived in one process-wide cache of 4,096, so a policy with more distinct
patterns the index cannot narrow, all candidates of a request, compiled each of them again
on every decision. Decisions stay pycasbin's.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from casbin.util.builtin_operators import glob_match
from hypothesis import given
from hypothesis import strategies as st
from wcmatch import _wcparse

from authz.engine import build_snapshot, load_snapshot, saferegex
from authz.engine.keymatch import plain_segments
from authz.engine.patterntable import MAX_GLOB_EXPANSIONS, MAX_PATTERNS, MAX_TABLE_MEMORY, PatternTable
from authz.engine.policyfiles import PolicySource
from authz.errors import PolicyLoadError
from authz.principal import Principal
from tests.fuzz_settings import FUZZ
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
    compiled = saferegex.cached_program.cache_info().misses
    requests = ["/docs/4999/a", "/docs/12/b", "x7", "/docs/x", "/elsewhere"]
    for resource in requests:
        snapshot.decide(ANN, resource, "read")
    # Each decision compiled all 5,000 patterns again (the cache kept the last 4,096).
    assert saferegex.cached_program.cache_info().misses == compiled
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


GLOB = model("r.sub == p.sub && globMatch(r.obj, p.obj) && r.act == p.act")


def test_brace_globs_are_expanded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pycasbin expands `{1..9}{1..9}{1..9}` (729 patterns) and compiles them on every call:
    # 55 ms a line on a cold cache, about a second a decision for these 13 lines.
    brace = "{1..9}" * 3
    directory = write_policy(tmp_path, GLOB, [f"p, ann, /docs/{i}/{brace}, read" for i in range(13)])
    snapshot = load_snapshot(directory)
    reference = enforcer(directory)
    compiled: list[object] = []
    expand = _wcparse.compile

    def counted(*args: Any, **kwargs: Any) -> Any:
        compiled.append(args[0])
        return expand(*args, **kwargs)

    monkeypatch.setattr(_wcparse, "compile", counted)
    requests = ["/docs/5/123", "/docs/9/999", "/docs/99/999", "/docs/1/12", "/x"]
    decisions = [snapshot.decide(ANN, resource, "read").allowed for resource in requests]
    assert not compiled  # before: every call expanded and compiled its line's 729 patterns
    assert decisions == [reference.enforce("ann", resource, "read") for resource in requests]
    assert compiled  # pycasbin's


def test_glob_expansions_are_bounded_at_load() -> None:
    text = "".join(f"p, ann, /docs/{i}/{{1..9}}{{1..9}}{{1..9}}, read\n" for i in range(20))
    with pytest.raises(PolicyLoadError, match=f"expand to more than {MAX_GLOB_EXPANSIONS:,} patterns"):
        build_snapshot(PolicySource(GLOB, (("policy.csv", text),)))


GLOB_TEXT = st.text(alphabet="ab/*{}.,1", max_size=12)


@FUZZ
@given(GLOB_TEXT, st.lists(st.text(alphabet="ab/1.", max_size=8), min_size=1, max_size=4))
def test_a_compiled_glob_answers_as_pycasbins(pattern: str, keys: list[str]) -> None:
    ours = PatternTable([("globMatch", pattern)]).functions()["globMatch"]
    for key in keys:
        assert _outcome(ours, key, pattern) == _outcome(glob_match, key, pattern), (key, pattern)


def _outcome(fn: Callable[[str, str], bool], key: str, pattern: str) -> object:
    try:
        return fn(key, pattern)
    except Exception as exc:
        return type(exc)


def test_plain_routes_cost_the_table_no_memory_per_route() -> None:
    # The table kept every plain route's segments: a 100,000-line routes policy's 44,000
    # distinct routes held 14 MiB, a quarter more than the rest of its load. Their segments come
    # from the process's bounded cache now, so more routes retain no more.
    def retained(count: int) -> int:
        routes = [("keyMatch2", f"/api/c{n}/:id/items/:item") for n in range(count)]
        # The same start for both counts: the process's cache empty, then filled to its bound.
        plain_segments.cache_clear()
        tracemalloc.start()
        try:
            table = PatternTable(routes)
            held = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert table.count == 0 and table.functions()["keyMatch2"](
            "/api/c7/1/items/2", "/api/c7/:id/items/:item"
        )
        return held

    small, large = retained(5_000), retained(20_000)
    assert large - small < 512 * 1024, (small, large)
