"""pycasbin's regular-expression matcher functions, in linear time.

keyMatch2/3/4/5 and regexMatch are pycasbin's code step for step, with two changes that
keep every decision pycasbin makes but bound the time: the final pattern runs on RE2
(`authz.engine.saferegex`), and the rewrites of `:name` / `{name}` into regex pieces are
plain scans instead of pycasbin's lazy regular expressions, one of which
(`(.*?){[^\\/]+?}(.*?)`) takes minutes on a pattern of a few thousand `{`.
The other matcher functions (keyMatch, globMatch, ipMatch, timeMatch) stay pycasbin's:
none of them backtracks on its input (globMatch's translation uses atomic groups).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from casbin.model.function import FunctionMap

from authz.engine import arith, saferegex
from authz.engine.saferegex import PatternError

# Where the second argument is a regular expression (after the function's own rewrites).
REGEX_FUNCTIONS = ("keyMatch2", "keyMatch3", "keyMatch4", "keyMatch5", "regexMatch")
_SEGMENT = "[^\\/]+"


def _bounded(pattern: Any) -> str:
    if not isinstance(pattern, str):
        raise PatternError(f"a pattern must be text, not {type(pattern).__name__}")
    if len(pattern) > saferegex.MAX_PATTERN_CHARS:
        raise PatternError(
            f"a pattern is at most {saferegex.MAX_PATTERN_CHARS} characters, this one has {len(pattern)}"
        )
    return pattern


def colon_params(pattern: str) -> str:
    """keyMatch2's rewrite: each `:` and the run of non-`/` after it (at least one) -> `[^\\/]+`."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        colon = pattern.find(":", i)
        if colon < 0 or colon + 1 >= n:
            break
        end = pattern.find("/", colon + 1)
        end = n if end < 0 else end
        if end == colon + 1:
            out.append(pattern[i : colon + 1])
            i = colon + 1
            continue
        out.append(pattern[i:colon] + _SEGMENT)
        i = end
    out.append(pattern[i:])
    return "".join(out)


def brace_params(pattern: str, replace: Callable[[str], str], *, shortest: bool) -> str:
    """Rewrite each `{name}` (a non-empty run without `/`) with `replace(name)`.

    `shortest` is keyMatch3's `{[^/]+?}` (the first `}` after at least one character),
    otherwise keyMatch4/5's `{[^/]+}` (the last `}` before the next `/`).
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    start = 0
    while True:
        brace = pattern.find("{", i)
        if brace < 0:
            break
        stop = pattern.find("/", brace + 1)
        stop = n if stop < 0 else stop
        close = pattern.find("}", brace + 2, stop) if shortest else pattern.rfind("}", brace + 2, stop)
        if close < 0:
            # No `}` before `stop`: a later `{` before it has even less room, so go on from there.
            i = stop
            continue
        out.append(pattern[start:brace] + replace(pattern[brace + 1 : close]))
        i = start = close + 1
    out.append(pattern[start:])
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def regex_of(name: str, key2: Any) -> tuple[str, tuple[str, ...]]:
    """The regular expression function `name` matches its key against, and keyMatch4's tokens.

    Cached: a policy has few distinct patterns, and each is rewritten on every decision.
    """
    key2 = _bounded(key2)
    tokens: list[str] = []
    if name == "regexMatch":
        return key2, ()
    key2 = key2.replace("/*", "/.*")
    if name == "keyMatch2":
        key2 = colon_params(key2)
        if key2 == "*":
            key2 = "(.*)"
    elif name == "keyMatch3":
        key2 = brace_params(key2, lambda _: _SEGMENT, shortest=True)
    elif name == "keyMatch4":

        def group(token: str) -> str:
            tokens.append(token)
            return "([^/]+)"

        key2 = brace_params(key2, group, shortest=False)
    else:
        key2 = brace_params(key2, lambda _: "[^/]+", shortest=False)
    return "^" + key2 + "$", tuple(tokens)


# Characters that mean themselves in a regular expression (with `:` and `/`, keyMatch2's own).
_PLAIN_ROUTE = re.compile(r"[A-Za-z0-9_\-~%@:/]*")


def plain_route(pattern: str) -> bool:
    """Whether `plain_segments` has segments for `pattern` (without building them: a load asks
    it of every keyMatch2 pattern of the policy)."""
    if len(pattern) > saferegex.MAX_PATTERN_CHARS or not _PLAIN_ROUTE.fullmatch(pattern):
        return False
    # Its regex is `^...$` with each `:param` as colon_params writes it: at most this long. Built
    # only when that bound is over the limit (a 100,000-line policy's load built one per pattern).
    longest = len(pattern) + 2 + len(_SEGMENT) * pattern.count(":")
    # Past it, the regex path refuses the pattern: so must this one.
    return longest <= saferegex.MAX_PATTERN_CHARS or (
        len(regex_of("keyMatch2", pattern)[0]) <= saferegex.MAX_PATTERN_CHARS
    )


@functools.lru_cache(maxsize=4096)
def plain_segments(pattern: str) -> tuple[tuple[str, bool], ...] | None:
    """A keyMatch2 pattern without regular-expression syntax, split on `/`: (literal, is it a
    `:param` after the literal); None for any other pattern (the regex decides those).

    colon_params turns a segment's first `:` and the rest of the segment into `[^/]+`,
    unless the `:` ends the segment; a compiled route of 100,000 lines (tens of thousands
    of distinct patterns) would otherwise compile a regex for most decisions.
    """
    if not plain_route(pattern):
        return None
    segments = []
    for segment in pattern.split("/"):
        colon = segment.find(":")
        if 0 <= colon < len(segment) - 1:
            segments.append((segment[:colon], True))
        else:
            segments.append((segment, False))
    return tuple(segments)


def _two(fn: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    # pycasbin's wrappers read the first two arguments and ignore any others.
    def call(*args: Any) -> bool:
        return fn(args[0], args[1])

    call.__name__ = fn.__name__
    return call


# (program, keyMatch4's tokens) for a function name and its pattern.
Prepared = Callable[[str, Any], tuple[Any, tuple[str, ...]]]
Segments = tuple[tuple[str, bool], ...]


def process_prepared(name: str, key2: Any) -> tuple[Any, tuple[str, ...]]:
    """A pattern's program from the process's cache (patterns no policy line holds)."""
    regex, tokens = regex_of(name, key2)
    return saferegex.cached_program(regex, name == "keyMatch4"), tokens


def regex_functions(
    prepared: Prepared, plain: Callable[[str], Segments | None]
) -> dict[str, Callable[..., bool]]:
    """keyMatch2..5 and regexMatch, reading patterns' programs and routes' segments through
    `prepared` and `plain` (a snapshot's table, or the process's caches)."""

    def run(program: Any, key1: Any) -> bool:
        # About a nanosecond a character: charged to the decision's budget (`arith`), as a
        # matcher can hand the same 100,000 characters it built to a pattern again and again.
        if type(key1) is str:
            arith.charge(len(key1))
        return saferegex.run(program, key1)

    def key_match2(key1: Any, key2: Any) -> bool:
        """pycasbin's keyMatch2 (`/:id`, `/*`) on RE2; segment by segment for plain routes."""
        segments = plain(key2) if isinstance(key2, str) else None
        # Python's `$` also matches before a final newline: such keys take the regex.
        if segments is not None and isinstance(key1, str) and "\n" not in key1:
            parts = key1.split("/")
            if len(parts) != len(segments):
                return False  # neither a literal nor `[^/]+` matches a `/`
            for part, (literal, param) in zip(parts, segments, strict=True):
                if param:
                    if len(part) <= len(literal) or not part.startswith(literal):
                        return False
                elif part != literal:
                    return False
            return True
        return run(prepared("keyMatch2", key2)[0], key1)

    def key_match3(key1: Any, key2: Any) -> bool:
        """pycasbin's keyMatch3 (`/{id}`, `/*`) on RE2."""
        return run(prepared("keyMatch3", key2)[0], key1)

    def key_match4(key1: Any, key2: Any) -> bool:
        """pycasbin's keyMatch4: keyMatch3 where a repeated `{name}` must match the same text."""
        program, tokens = prepared("keyMatch4", key2)
        if type(key1) is str:
            arith.charge(len(key1))
        values = saferegex.run_groups(program, key1)
        if values is None:
            return False
        if len(tokens) != len(values):
            raise PatternError("KeyMatch4: number of tokens is not equal to number of values")
        seen: dict[str, Any] = {}
        return all(
            seen.setdefault(token, value) == value for token, value in zip(tokens, values, strict=True)
        )

    def key_match5(key1: Any, key2: Any) -> bool:
        """pycasbin's keyMatch5: keyMatch3 that ignores a query string (`?a=b`) in the key."""
        if isinstance(key1, str) and "?" in key1:
            key1 = key1[: key1.find("?")]
        return run(prepared("keyMatch5", key2)[0], key1)

    def regex_match(key1: Any, key2: Any) -> bool:
        """pycasbin's regexMatch: `re.match(key2, key1)` (anchored at the start only), on RE2."""
        return run(prepared("regexMatch", key2)[0], key1)

    functions = {
        "keyMatch2": key_match2,
        "keyMatch3": key_match3,
        "keyMatch4": key_match4,
        "keyMatch5": key_match5,
        "regexMatch": regex_match,
    }
    return {name: _two(fn) for name, fn in functions.items()}


_PROCESS = regex_functions(process_prepared, lambda key2: plain_segments(key2))
key_match2 = _PROCESS["keyMatch2"]


def matcher_functions() -> dict[str, Callable[..., Any]]:
    """pycasbin's matcher functions by name, the regular-expression ones replaced by these."""
    functions: dict[str, Callable[..., Any]] = dict(FunctionMap.load_function_map().get_functions())
    functions.update(_PROCESS)
    return functions
