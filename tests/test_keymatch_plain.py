"""keyMatch2 on plain routes (`/api/orders/:id`) compares segments instead of running a regex;
it must answer exactly as pycasbin's regex does, trailing newlines and odd colons included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from casbin.util.builtin_operators import key_match2 as pycasbin_key_match2
from hypothesis import given, settings
from hypothesis import strategies as st

from authz.engine.keymatch import key_match2, plain_segments
from authz.engine.patterntable import PatternTable
from authz.engine.saferegex import PatternError

PIECES = ("/", "api", "a", "b", ":", ":id", "x:y", "-", "_", "~", "%", "@", ".", "*", "é")
KEY_PIECES = ("/", "api", "a", "b", "1", ":", ":id", "x:y", "-", "\n", "é", ".", "")


@st.composite
def routes_and_keys(draw: st.DrawFn) -> tuple[str, str]:
    pattern = "".join(draw(st.lists(st.sampled_from(PIECES), max_size=8)))
    # Half the keys fill the pattern's parameters in, so that many of them match.
    if draw(st.booleans()):
        segments = []
        for segment in pattern.split("/"):
            colon = segment.find(":")
            if 0 <= colon < len(segment) - 1:
                segment = segment[:colon] + draw(st.sampled_from(("1", "ab", "é", "", "a:b", "\n")))
            segments.append(segment)
        key = "/".join(segments) + draw(st.sampled_from(("", "", "\n", "/", "x")))
    else:
        key = "".join(draw(st.lists(st.sampled_from(KEY_PIECES), max_size=8)))
    return pattern, key


def _outcome(fn: Callable[[str, str], Any], key: str, pattern: str) -> bool | str:
    try:
        return bool(fn(key, pattern))
    except Exception:  # an invalid regex (`*/`): both refuse it
        return "error"


@settings(max_examples=2000, deadline=None)
@given(routes_and_keys())
def test_key_match2_answers_as_pycasbin(case: tuple[str, str]) -> None:
    pattern, key = case
    assert _outcome(key_match2, key, pattern) == _outcome(pycasbin_key_match2, key, pattern), case


def test_only_patterns_without_regex_syntax_are_compared_by_segment() -> None:
    assert plain_segments("/api/orders/:id") == (("", False), ("api", False), ("orders", False), ("", True))
    assert plain_segments("/a/x:y/b:") == (("", False), ("a", False), ("x", True), ("b:", False))
    for pattern in ("/api/*", "/v1.0/:id", "/a/(b)", "/é/:id", "*"):
        assert plain_segments(pattern) is None
    assert key_match2("/api/orders/7\n", "/api/orders/:id")  # Python's `$` before a final newline
    assert not key_match2("/api/orders/", "/api/orders/:id")


def test_a_plain_route_the_regex_would_refuse_is_refused_alike() -> None:
    # Each `:a` grows into `[^\/]+`: under the length bound as written, over it as a regex.
    pattern = "/:a" * 1000
    assert plain_segments(pattern) is None
    assert PatternTable([("keyMatch2", pattern)]).problem("keyMatch2", pattern) is not None
    with pytest.raises(PatternError):
        key_match2("/x" * 1000, pattern)
    # Within the bound it is never compiled, and answers as the regex does.
    assert PatternTable([("keyMatch2", "/:a" * 100)]).problem("keyMatch2", "/:a" * 100) is None
    assert key_match2("/x" * 100, "/:a" * 100)
