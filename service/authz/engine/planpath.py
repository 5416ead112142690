"""A path template (`/api/orders/:id`) of a plan, and how a line's resource pattern meets it.

A row's resource id is the template with its path parameters filled in from the row's
columns; `Template` answers `r.obj == value`, `keyMatch2(r.obj, pattern)` and
`keyMatch(r.obj, pattern)` for those ids as `RowTest`s (`plantemplate` says how).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from authz.engine import planast
from authz.engine.planast import Node
from authz.engine.planerrors import Unplannable
from authz.engine.plansegments import (
    HAS_SLASH,
    LINE_BREAK_AFTER_SLASH,
    LINE_BREAK_AFTER_SLASH_BEFORE_END,
    NO_ROW,
    PARAM,
    REGEX,
    STARTS_WITH_SLASH,
    RowTest,
    before_final_line_break,
    one_segment,
    segment_matches,
    single_line,
    slashed,
)

# Ways (and steps) to split an id among several parameters before the planner gives up on it
# and treats the rows as unknown: a value of thousands of `/` on three parameters has millions.
_MAX_SPLITS = 16
_MAX_SPLIT_STEPS = 4096
_MAX_SPLIT_SEGMENTS = 64  # the search recurses a level a segment


@dataclass(frozen=True)
class Template:
    """A parsed resource template: literal segments and parameter names."""

    text: str
    segments: tuple[str, ...]
    params: tuple[str | None, ...]  # the parameter name of each segment, None if literal

    @property
    def concrete(self) -> bool:
        """A template without parameters names one resource."""
        return not any(self.params)

    @functools.cached_property
    def literal(self) -> str:
        """What every row's id starts with: the segments before the first parameter, and `/`."""
        first = next(i for i, p in enumerate(self.params) if p)
        return "/".join(self.segments[:first]) + "/" if first else ""

    @functools.cached_property
    def suffix(self) -> str:
        """What every row's id ends with: `/` and the segments after the last parameter."""
        last = max(i for i, p in enumerate(self.params) if p)
        rest = self.segments[last + 1 :]
        return "/" + "/".join(rest) if rest else ""

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        """The parameter names in order."""
        return tuple(p for p in self.params if p)

    def _frames(self, value: str) -> bool:
        # Whether `value` starts with the literal prefix and ends with the suffix, apart.
        literal, suffix = self.literal, self.suffix
        return (
            len(value) >= len(literal) + len(suffix) and value.startswith(literal) and value.endswith(suffix)
        )

    def equals(self, value: str) -> RowTest:
        """The rows whose resource id equals `value`."""
        if len(self.names) == 1:
            # One parameter: the middle of the value is the row's, empty or holding a `/` too
            # (a deny line `r.obj == "/api/docs/a/b"` denies the row `a/b`; the plan missed it).
            if not self._frames(value):
                return NO_ROW
            middle = value[len(self.literal) : len(value) - len(self.suffix)]
            return RowTest(planast.Compare("eq", self.names[0], middle))
        parts = value.split("/")
        if len(parts) < len(self.segments):
            return NO_ROW
        if len(parts) == len(self.segments):
            # No parameter holds a `/`: segment by segment.
            out: list[Node] = []
            for part, segment, param in zip(parts, self.segments, self.params, strict=True):
                if param is None:
                    if part != segment:
                        return NO_ROW
                else:
                    out.append(planast.Compare("eq", param, part))
            return RowTest(planast.all_of(*out))
        # Some parameter holds a `/`: each way the value's segments fill the template (a
        # parameter takes one or more, `/a/b/c` on `/:x/:y` is `a/b` and `c`, or `a` and `b/c`).
        splits = self._splits(parts) if len(self.segments) <= _MAX_SPLIT_SEGMENTS else None
        if splits is None:
            return RowTest(planast.FALSE, slashed(self.names) if self._frames(value) else planast.FALSE)
        return RowTest(planast.any_of(*splits))

    def _splits(self, parts: list[str]) -> list[Node] | None:
        """The conditions for each way `parts` fill the segments (a literal takes its own part, a
        parameter a run of one or more joined by `/`); None past _MAX_SPLITS ways or steps."""
        found: list[Node] = []
        steps = 0

        def fill(segment: int, at: int, conds: tuple[Node, ...]) -> bool:
            nonlocal steps
            steps += 1
            if steps > _MAX_SPLIT_STEPS or len(found) > _MAX_SPLITS:
                return False
            if segment == len(self.segments):
                if at == len(parts):
                    found.append(planast.all_of(*conds))
                return True
            param = self.params[segment]
            if param is None:
                return (
                    at >= len(parts)
                    or parts[at] != self.segments[segment]
                    or fill(segment + 1, at + 1, conds)
                )
            # Leave one part for each segment after this one.
            last = len(parts) - (len(self.segments) - segment - 1)
            return all(
                fill(segment + 1, end, (*conds, planast.Compare("eq", param, "/".join(parts[at:end]))))
                for end in range(at + 1, last + 1)
            )

        return found if fill(0, 0, ()) else None

    def key_match2(self, pattern: str) -> RowTest:
        """The rows for which `keyMatch2(resource id, pattern)` holds."""
        parts = pattern.split("/")
        tail = parts[-1] == "*" and len(parts) > 1
        if tail:
            parts = parts[:-1]
        if "*" in "".join(parts):
            raise Unplannable(f"keyMatch2 pattern {pattern!r} with * before its end")
        if not tail and not REGEX.search(pattern):
            # A literal route is an equality, `$` also matching before a final line break.
            plain, broken = self.equals(pattern), self.equals(pattern + "\n")
            true = planast.any_of(plain.true, broken.true)
            unknown = planast.any_of(plain.unknown, broken.unknown)
            return RowTest(true, planast.all_of(unknown, planast.negate(true)))
        if not self._ends_agree(parts, tail):
            return NO_ROW
        aligned = self._aligned(parts, tail, pattern)
        spanning = self._spanning_before_tail(parts) if tail else None
        if spanning is not None:
            return RowTest(planast.any_of(aligned, spanning))
        return RowTest(aligned, self._misaligned(parts, tail))

    def _spanning_before_tail(self, parts: list[str]) -> Node | None:
        """`/api/orders/:id/*` on `/api/orders/:id`: the rows whose parameter holds a `/`, when
        the pattern's `:x` right before `/*` is the first segment that reads a parameter. Its
        `[^/]+` takes the parameter up to its first `/` (at least one character), and `/.*`
        the rest, which may hold no line break but a final one. None for other patterns."""
        index = len(parts) - 1
        param = self.params[index] if index < len(self.params) else None
        if param is None or not PARAM.match(parts[index]) or any(self.params[:index]):
            return None
        if any(REGEX.search(part) and not PARAM.match(part) for part in parts[:index]):
            return None
        last = index == len(self.params) - 1
        return planast.all_of(
            planast.Compare("like", param, HAS_SLASH),
            planast.Not(planast.Compare("like", param, STARTS_WITH_SLASH)),
            planast.Not(
                planast.Compare(
                    "like", param, LINE_BREAK_AFTER_SLASH_BEFORE_END if last else LINE_BREAK_AFTER_SLASH
                )
            ),
            *single_line(self.params[index + 1 :]),
        )

    def _ends_agree(self, parts: list[str], tail: bool) -> bool:
        # The pattern's segments before the first parameter meet every row's literal prefix, and
        # (without `/*`) its last ones the literal suffix, however many `/` the parameters hold.
        params = [i for i, p in enumerate(self.params) if p]
        before = zip(parts, self.segments[: params[0]], strict=False)
        after = () if tail else zip(reversed(parts), reversed(self.segments[params[-1] + 1 :]), strict=False)
        for part, segment in (*before, *after):
            if PARAM.match(part):
                if not segment:
                    return False
            elif not REGEX.search(part) and part != segment:
                return False
        return True

    def _aligned(self, parts: list[str], tail: bool, pattern: str) -> Node:
        # The rows whose parameters read by a pattern segment hold no `/`: segment by segment.
        out: list[Node] = []
        if tail:
            # `/.*` needs a `/` after the prefix: at least one more segment.
            if len(self.segments) <= len(parts):
                return planast.FALSE
            out.extend(single_line(self.params[len(parts) :]))
        elif len(parts) != len(self.segments):
            return self._unless_regex(pattern)
        last = len(parts) - 1 if not tail else -1
        for index, (part, segment, param) in enumerate(zip(parts, self.segments, self.params, strict=False)):
            if PARAM.match(part):
                if param is None:
                    if not segment:
                        return planast.FALSE
                else:
                    out.append(one_segment(param))
                continue
            if REGEX.search(part):
                if param is not None:
                    raise Unplannable(f"keyMatch2 pattern segment {part!r} against the parameter :{param}")
                if tail:
                    # Before `/.*` a part may take a `/` (`/a.+/*` holds for `/a/b/1`): the
                    # segments no longer line up, and a deny line planned per segment would miss.
                    raise Unplannable(
                        f"keyMatch2 pattern {pattern!r} with regular-expression characters before /*"
                    )
                if not segment_matches(part, segment):
                    return planast.FALSE
                continue
            if param is None:
                if part != segment:
                    return planast.FALSE
            elif index == last:
                out.append(before_final_line_break(param, part))
            else:
                out.append(planast.Compare("eq", param, part))
        return planast.all_of(*out)

    def _misaligned(self, parts: list[str], tail: bool) -> Node:
        # The rows `_aligned` cannot answer: a parameter read by a pattern segment holds a `/`,
        # so the row's segments shift against the pattern's. None can match a pattern of no more
        # segments than the template that has no regular expression (each `/` is one segment).
        read = [p for p in self.params[: len(parts)] if p]
        regex = any(REGEX.search(part) and not PARAM.match(part) for part in parts)
        if not read or (not tail and not regex and len(parts) <= len(self.segments)):
            return planast.FALSE
        return slashed(read)

    def _unless_regex(self, pattern: str) -> Node:
        # Different segment counts: no row matches, unless the pattern's regular
        # expression characters (`.` matches `/`) could bridge them.
        if REGEX.search(pattern.replace("/*", "").replace(":", "")):
            raise Unplannable(f"keyMatch2 pattern {pattern!r} with regular-expression characters")
        return planast.FALSE

    def key_match(self, pattern: str) -> RowTest:
        """The rows for which `keyMatch(resource id, pattern)` holds (`*`: any suffix)."""
        star = pattern.find("*")
        if star == -1:
            return self.equals(pattern)
        prefix = pattern[:star]
        literal = self.literal
        if literal.startswith(prefix):
            return RowTest(planast.TRUE)
        if not prefix.startswith(literal):
            return NO_ROW
        raise Unplannable(f"keyMatch prefix {prefix!r} ending inside a parameter of {self.text!r}")
