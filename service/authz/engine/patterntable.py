"""The regular expressions one policy hands to keyMatch2..5 / regexMatch, compiled at load.

Compiled programs used to live in one process-wide cache of 4,096: a policy with more
distinct patterns than that, all candidates of a request (patterns the index cannot narrow),
compiled each again on every such decision. A snapshot now compiles its own patterns (the
values of the policy columns and the matcher's constants those functions read as patterns)
once, while it is checked, and keeps them for its life. Plain keyMatch2 routes
(`/api/orders/:id`) need no program: their segments come from the process's cache of 4,096
(kept per snapshot, the segments of a 100,000-line routes policy's 44,000 distinct routes held
14 MiB, a quarter more than the rest of its load, for no measurable speed). Patterns made at decision time
(a request's value, `p.obj + '/*'`) still go through the process's cache.

globMatch patterns (pycasbin's, on wcmatch with brace expansion) are kept compiled too:
`/docs/{1..9}{1..9}{1..9}` is 729 patterns, which pycasbin expanded and compiled on every
call (55 ms; 100 such lines took 5.5 s a decision). A policy's brace patterns are expanded
and compiled once, their expansions bounded in all (MAX_GLOB_EXPANSIONS); matching still
reads each expansion, so a call is charged to the decision's budget (`arith`) by their number.

RE2 grows a program's matching caches up to its memory bound as texts (request data) reach
new states, so the table's memory is bounded as a whole: MAX_TABLE_MEMORY shared by its
patterns, each at most saferegex.MAX_PATTERN_MEMORY. Past MAX_PATTERNS patterns a share
would be too small to match at speed, and the policy is refused.

Only the patterns a call can read are compiled and counted: a line whose static conjunct
before the call is false (`keyMatch(p.obj, "/*") && keyMatch2(r.obj, p.obj)` on a `ui:` element
line) never reaches it (`staticlines.reaching`). 20,000 dotted element ids under the demo
model compiled 20,000 programs (53 MiB kept, 2.7 s to load here) and 32,769 were refused; they
now compile none (15 MiB, 0.3 s). Were such a pattern reached after all, the call would take the
process's cache, as a pattern made at decision time does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from casbin.util.builtin_operators import glob_match
from wcmatch import glob

from authz.engine import arith, saferegex
from authz.engine.keymatch import (
    Segments,
    plain_route,
    plain_segments,
    process_prepared,
    regex_functions,
    regex_of,
)
from authz.engine.saferegex import PatternError

# Memory of one snapshot's compiled patterns together (programs and matching caches): the
# process-wide cache's bound before (4,096 x 256 KiB). A route's program takes about 5 KiB.
MAX_TABLE_MEMORY = 1 << 30
# The least a pattern may be given: at half of it a route no longer fits RE2's fast matcher
# (matching is ten times slower) and a pattern with a Unicode class does not compile.
MIN_PATTERN_MEMORY = 32 << 10
MAX_PATTERNS = MAX_TABLE_MEMORY // MIN_PATTERN_MEMORY  # 32,768
# globMatch brace patterns after expansion, in all: about 0.9 s to compile at load, 4 MiB.
MAX_GLOB_EXPANSIONS = 10_000
# Budget units a globMatch call costs per expansion it matches (about 2 us each).
GLOB_UNITS = 2_000
_GLOB_FLAGS = glob.GLOBSTAR | glob.BRACE


def glob_pattern(pattern: str) -> str:
    """pycasbin's rewrite of a globMatch pattern before wcmatch reads it (`**` segments)."""
    if pattern.startswith("*/"):
        pattern = pattern[1:]
    parts = [part if part == "**" else re.sub(r"\*{2,}", "*", part) for part in pattern.split("/")]
    result = "/".join(parts)
    if result.endswith("/**"):
        result = "{" + result[:-3] + "," + result + "}"
    return result


class PatternTable:
    """One snapshot's patterns: programs and keyMatch4 tokens by function; which keyMatch2
    patterns are not plain routes."""

    def __init__(self, uses: Iterable[tuple[str, str]]) -> None:
        self._routes: set[str] = set()  # keyMatch2 patterns that are not plain routes
        self.programs: dict[str, dict[str, tuple[Any, tuple[str, ...]]]] = {}
        self.problems: dict[tuple[str, str], str] = {}
        self.globs: dict[str, tuple[Any, int]] = {}
        self.expansions = 0
        regexes: list[tuple[str, str]] = []
        globs: list[str] = []
        # Sorted after the plain routes are set aside (most of a large policy's patterns):
        # sorting every pair cost 0.1 s at 100,000 lines. The order is still fixed, since the
        # glob expansion budget and the refusals depend on it.
        for name, pattern in set(uses):
            if name == "globMatch":
                globs.append(pattern)
            elif name != "keyMatch2" or not plain_route(pattern):
                regexes.append((name, pattern))
                if name == "keyMatch2":
                    self._routes.add(pattern)
        for pattern in sorted(globs):
            self._add_glob(pattern)
        regexes.sort()
        self.count = len(regexes)
        if self.count > MAX_PATTERNS:
            return  # refused as a whole (`too_many`): nothing compiled
        share = min(saferegex.MAX_PATTERN_MEMORY, MAX_TABLE_MEMORY // max(self.count, 1))
        for name, pattern in regexes:
            try:
                # Uncached: the process's caches are for patterns no policy holds.
                regex, tokens = regex_of.__wrapped__(name, pattern)
                program = saferegex.compile_program(regex, name == "keyMatch4", share)
            except PatternError as exc:
                message = str(exc)
                if share < saferegex.MAX_PATTERN_MEMORY and "too large" in message:
                    message += (
                        f" (each of this policy's {self.count:,} patterns may use {share >> 10} KiB,"
                        f" {MAX_TABLE_MEMORY >> 20} MiB in all)"
                    )
                self.problems[(name, pattern)] = message
                continue
            self.programs.setdefault(name, {})[pattern] = (program, tokens)

    def _add_glob(self, pattern: str) -> None:
        # Only brace patterns: expanding them is the cost (a plain glob compiles in 0.1 ms and
        # wcmatch caches it), and compiling one here costs about 90 us an expansion.
        if "{" not in pattern or self.expansions > MAX_GLOB_EXPANSIONS:
            return
        try:
            rewritten = glob_pattern(pattern)
            count = len(glob.translate(rewritten, flags=_GLOB_FLAGS)[0])
            self.expansions += count
            if self.expansions > MAX_GLOB_EXPANSIONS:
                return
            matcher = glob.compile(rewritten, flags=_GLOB_FLAGS)
        except Exception:  # pycasbin raises it on each call: so do the calls
            return
        self.globs[pattern] = (matcher, count)

    def glob_match(self, key1: Any, key2: Any) -> bool:
        """pycasbin's globMatch, on the table's compiled patterns where it has them."""
        found = self.globs.get(key2) if isinstance(key2, str) else None
        if found is None:
            return glob_match(key1, key2)  # type: ignore[no-any-return]
        matcher, count = found
        arith.charge(count * GLOB_UNITS)
        return matcher.match(key1)  # type: ignore[no-any-return]

    def too_many(self) -> str | None:
        """Why the policy is refused as a whole, or None."""
        if self.expansions > MAX_GLOB_EXPANSIONS:
            return (
                f"the policy's globMatch patterns expand to more than {MAX_GLOB_EXPANSIONS:,} patterns"
                " in all (each `{a,b}` or `{1..9}` multiplies its pattern's count)"
            )
        if self.count <= MAX_PATTERNS:
            return None
        return (
            f"the policy hands {self.count:,} distinct regular-expression patterns to keyMatch2..5 /"
            f" regexMatch (limit {MAX_PATTERNS:,}: {MAX_TABLE_MEMORY >> 20} MiB of compiled patterns"
            f" at no less than {MIN_PATTERN_MEMORY >> 10} KiB each); plain keyMatch2 routes"
            " (`/api/orders/:id`) do not count"
        )

    def problem(self, name: str, pattern: str) -> str | None:
        """Why `pattern` cannot be used by function `name`, or None (it is in the table)."""
        return self.problems.get((name, pattern))

    def prepared(self, name: str, key2: Any) -> tuple[Any, tuple[str, ...]]:
        """The program (and keyMatch4's tokens) for `key2`: the table's, else the process's."""
        found = self.programs.get(name)
        if found is not None and isinstance(key2, str):
            entry = found.get(key2)
            if entry is not None:
                return entry
        return process_prepared(name, key2)

    def segments(self, key2: str) -> Segments | None:
        """A plain route's segments: the table's, else computed (and cached by the process)."""
        return None if key2 in self._routes else plain_segments(key2)

    def functions(self) -> dict[str, Callable[..., bool]]:
        """keyMatch2..5, regexMatch and globMatch reading this table first."""
        match = self.glob_match

        def glob_two(*args: Any) -> bool:
            # pycasbin's wrappers read the first two arguments and ignore any others.
            return match(args[0], args[1])

        return {**regex_functions(self.prepared, self.segments), "globMatch": glob_two}
