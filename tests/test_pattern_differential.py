"""Differential: patterns full of regular-expression metacharacters, three ways.

For generated keyMatch / keyMatch2..5 / regexMatch / globMatch patterns (both as a policy
column matched against the request, and as a matcher constant matched against a policy
column, which the index decides at build time) and generated paths, the indexed decision
(`PolicyIndex` narrowing the lines), a full scan (no index) and pycasbin's Enforcer must
agree. pycasbin gets the same parsed values through its API, so only matching is compared.
A pattern authz refuses (see `authz.engine.saferegex`) must be one it names in a finding.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path

import casbin
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from authz.engine import build_snapshot
from authz.engine.keymatch import regex_of
from authz.engine.policyfiles import MODEL_FILE, PolicySource
from authz.engine.saferegex import PatternError
from authz.errors import PolicyLoadError
from authz.principal import Principal
from tests import policy_dirs
from tests.fuzz_settings import FUZZ

# The drawn patterns put `[[`, `||` or `--` inside sets on purpose (Casbin's users write them);
# Python's `re` warns that such a set may mean something else in a future version, which is not
# what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore:Possible (nested )?set:FutureWarning")

FUNCTIONS = ("keyMatch", "keyMatch2", "keyMatch3", "keyMatch4", "keyMatch5", "regexMatch", "globMatch")
# Pieces of patterns: literals, every metacharacter, and the functions' own parameters.
PIECES = (
    "/",
    "a",
    "b",
    "ab",
    "api",
    ".",
    "*",
    "+",
    "?",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "|",
    "^",
    "$",
    "\\",
    ":id",
    "{id}",
    "/*",
    "**",
    "\\.",
    "\\d",
    "\\w",
    "[a-b]",
    "[^/]",
    "(a|b)",
    "(a{1,2})",
    "(a+)+",
    "({x,y})",
)
PATH_PIECES = (
    "/",
    "a",
    "b",
    "ab",
    "api",
    ".",
    "1",
    "x",
    "*",
    "(",
    ")",
    "{",
    "}",
    "$",
    "\\",
    "?q=1",
    "\n",
    "é",
)
SUBJECTS = ("reader", "writer")
NESTED_REPEAT = re.compile(r"\)[*+?{]")
ACTIONS = ("GET", "PUT")


def patterns() -> st.SearchStrategy[str]:
    # At most one nested repeat: pycasbin's backtracking `re` is the reference, and
    # `(a+)+(a+)+(a+)+` on 16 characters would stall it (not authz).
    return (
        st.lists(st.sampled_from(PIECES), min_size=1, max_size=6)
        .map("".join)
        .filter(lambda p: p.count("(a+)+") <= 1)
    )


def paths(pieces: tuple[str, ...] = PATH_PIECES) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(pieces), max_size=6).map("".join)


def matching(draw: st.DrawFn, function: str, pattern: str) -> str:
    """A text `pattern` probably matches: drawn from its regular expression where it has one."""
    if function in ("keyMatch", "globMatch"):
        return pattern.replace("*", draw(st.sampled_from(("", "x", "a/b"))))
    try:
        regex = regex_of(function, pattern)[0]
        re.compile(regex)
    except (PatternError, re.error):
        return pattern
    if NESTED_REPEAT.search(regex):
        # from_regex checks its draws with Python's backtracking `re`, which a repeated group
        # like `(a+)+` stalls on a long miss: use the pattern's literal characters instead.
        return re.sub(r"[\\^$.*+?()\[\]{}|]", "", pattern)
    # Short: pycasbin's backtracking `re` is the reference.
    text = st.from_regex(regex, fullmatch=function != "regexMatch", alphabet=st.characters(codec="utf-8"))
    return draw(text)[:16]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[str, list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(matcher, p lines as (sub, act, obj), requests as (obj, act))."""
    function = draw(st.sampled_from(FUNCTIONS))
    if draw(st.integers(0, 3)) == 0:
        # The constant is the pattern and the line's obj the text: the index decides it at build time.
        constant = draw(patterns()).replace("\\", "\\\\").replace('"', "")
        matcher = f'g(r.sub, p.sub) && {function}(p.obj, "{constant}") && r.obj == p.obj && r.act == p.act'
        objects = paths(tuple(p for p in PATH_PIECES if p != "\n"))
    else:
        matcher = f"g(r.sub, p.sub) && {function}(r.obj, p.obj) && r.act == p.act"
        objects = patterns()
    lines = draw(
        st.lists(
            st.tuples(st.sampled_from(SUBJECTS), st.sampled_from(ACTIONS), objects), min_size=1, max_size=8
        )
    )
    # Requests built from the lines' own values match more often than random paths.
    own = [obj for _, _, obj in lines]
    if "(r.obj, p.obj)" in matcher:
        own += [matching(draw, function, obj) for obj in own]
    requests = draw(st.lists(st.tuples(st.sampled_from(own) | paths(), st.sampled_from(ACTIONS)), max_size=8))
    return matcher, lines, requests


def _csv(lines: list[tuple[str, str, str]]) -> str:
    return "".join(f"p, {sub}, {act}, {obj}\n" for sub, act, obj in lines)


@FUZZ
@given(worlds())
def test_index_full_scan_and_pycasbin_agree_on_metacharacter_patterns(
    world: tuple[str, list[tuple[str, str, str]], list[tuple[str, str]]],
) -> None:
    matcher, lines, requests = world
    text = policy_dirs.model(matcher, policy_dirs.ALLOW, policy="sub, act, obj")
    try:
        indexed = build_snapshot(PolicySource(text, (("policy.csv", _csv(lines)),)))
    except PolicyLoadError as refused:
        # Only a pattern is refused here, or a line pycasbin's file adapter cannot load (a `)`
        # closing nothing): the finding says which and why.
        assert all("pattern" in f.message or "closes no '(' or '['" in f.message for f in refused.findings), (
            refused.findings
        )
        event("refused")
        return
    full_scan = dataclasses.replace(indexed, index=None, cache=None)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / MODEL_FILE).write_text(text, encoding="utf-8")
        reference = casbin.Enforcer(str(Path(tmp) / MODEL_FILE))
    for line in indexed.lines:
        reference.add_policy(*line.values)
    reference.add_grouping_policy("alice", "reader")
    principal = Principal(id="alice", permissions=("reader",))
    for obj, act in requests:
        ours = indexed.decide(principal, obj, act)
        scanned = full_scan.decide(principal, obj, act)
        try:
            expected = reference.enforce("alice", obj, act)
        except Exception:  # pycasbin raises (keyMatch4 groups): authz must deny
            assert not ours.allowed and not scanned.allowed, (obj, act, ours, scanned)
            continue
        assert ours.allowed == scanned.allowed == expected, (obj, act, ours, scanned, expected)
        event("allowed" if expected else "denied")
