"""The regular expressions one policy hands to keyMatch2..5 / regexMatch, compiled at load.

Compiled programs used to live in one process-wide cache of 4,096: a policy with more
distinct patterns than that, all candidates of a request (patterns the index cannot narrow),
compiled each again on every such decision. A snapshot now compiles its own patterns (the
values of the policy columns and the matcher's constants those functions read as patterns)
once, while it is checked, and keeps them for its life; plain keyMatch2 routes keep their
segments. Patterns made at decision time (a request's value, `p.obj + '/*'`) still go
through the process's cache.

RE2 grows a program's matching caches up to its memory bound as texts (request data) reach
new states, so the table's memory is bounded as a whole: MAX_TABLE_MEMORY shared by its
patterns, each at most saferegex.MAX_PATTERN_MEMORY. Past MAX_PATTERNS patterns a share
would be too small to match at speed, and the policy is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from authz.engine import saferegex
from authz.engine.keymatch import (
    Segments,
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


class PatternTable:
    """One snapshot's patterns: programs and keyMatch4 tokens by function, route segments."""

    def __init__(self, uses: Iterable[tuple[str, str]]) -> None:
        self.plain: dict[str, Segments] = {}
        self._routes: set[str] = set()  # keyMatch2 patterns that are not plain routes
        self.programs: dict[str, dict[str, tuple[Any, tuple[str, ...]]]] = {}
        self.problems: dict[tuple[str, str], str] = {}
        regexes: list[tuple[str, str]] = []
        for name, pattern in sorted(set(uses)):
            segments = plain_segments(pattern) if name == "keyMatch2" else None
            if segments is not None:
                self.plain[pattern] = segments
            else:
                regexes.append((name, pattern))
                if name == "keyMatch2":
                    self._routes.add(pattern)
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

    def too_many(self) -> str | None:
        """Why the policy is refused as a whole, or None."""
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
        found = self.plain.get(key2)
        if found is not None or key2 in self._routes:
            return found
        return plain_segments(key2)

    def functions(self) -> dict[str, Callable[..., bool]]:
        """keyMatch2..5 and regexMatch reading this table first."""
        return regex_functions(self.prepared, self.segments)
