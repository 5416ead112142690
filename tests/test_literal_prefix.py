"""The index's literal prefix of a keyMatch pattern: every string the pattern matches starts with it.

The index skips lines whose prefix a request does not start with, so a prefix too long would
skip a deny line that matches: an allow. A `|` inside a group keeps the text before the group
(`/api/(orders|invoices)/:id` starts with `/api/`); one that is top-level, or becomes so once
keyMatch2..5 rewrite `:name` and `{name}`, leaves no prefix.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authz.app import demo_policy_dir
from authz.engine import build_snapshot
from authz.engine.index import literal_prefix
from authz.engine.keymatch import regex_of
from authz.engine.policyfiles import PolicySource
from authz.principal import Principal
from tests.fuzz_settings import FUZZ

# The drawn patterns put `[[`, `||` or `--` inside sets on purpose (Casbin's users write them);
# Python's `re` warns that such a set may mean something else in a future version, which is not
# what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore:Possible (nested )?set:FutureWarning")

PIECES = ("/", "a", "b", "api", "(", ")", "|", "[", "]", "^", ":id", "{id}", "{", "}", "\\", "(?#", ".", "+")


@FUZZ
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map("".join), st.data())
def test_every_match_starts_with_the_prefix(pattern: str, data: st.DataObject) -> None:
    prefix = literal_prefix(pattern)
    for function in ("keyMatch2", "keyMatch3", "keyMatch4", "keyMatch5"):
        regex = regex_of(function, pattern)[0]
        try:
            compiled = re.compile(regex)
        except re.error:
            continue  # refused when the policy loads
        text = data.draw(st.from_regex(compiled, fullmatch=False), label=function)
        if compiled.match(text):
            assert text.startswith(prefix), (function, pattern, regex, text, prefix)


def test_a_bar_inside_a_group_keeps_the_prefix() -> None:
    assert literal_prefix("/api/(orders|invoices)/:id") == "/api/"
    assert literal_prefix("/a1/(x|y)+/:id") == "/a1/"
    for pattern in ("/a|b", "/a/[|]|b", "/a)b|c", "/:a(/b|c/:d)", "/a/{(}x|y{)}", "/a/(?#(x)|y"):
        assert literal_prefix(pattern) == "", pattern


def test_routes_with_alternation_are_narrowed_by_their_prefix() -> None:
    # Any `|` used to leave a route unnarrowed: 20,000 of these made every decision run
    # (and, past the regex cache, compile) 20,000 patterns, about a second each.
    model = (demo_policy_dir() / "model.conf").read_text()
    lines = "".join(f"p, *, /api{i}/(orders|invoices)/:id, GET, True, allow\n" for i in range(20_000))
    snapshot = build_snapshot(PolicySource(model, (("policy.csv", lines),)))
    started = time.perf_counter()
    for i in range(10):
        assert snapshot.decide(Principal("bob"), f"/api{i}/orders/{i}", "GET").allowed
        assert not snapshot.decide(Principal("bob"), f"/api{i}/users/{i}", "GET").allowed
    assert time.perf_counter() - started < 5
