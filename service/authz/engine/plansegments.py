"""Row conditions a template's answers are made of: `RowTest`, and what a keyMatch2 pattern's
pieces ask of the path parameters they meet.

`planpath.Template` and `plankind.KindTemplate` answer `r.obj == value`, `keyMatch2` and
`keyMatch` with these: a `:name` segment (one non-empty segment), a final `/*` (no line break
but a final one), a literal last segment (`$` also matching before a final line break), a
regular-expression segment against a literal one, and the rows whose parameter holds a `/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from authz.engine import planast, saferegex
from authz.engine.keymatch import colon_params
from authz.engine.planast import Node
from authz.engine.planerrors import Unplannable

PARAM = re.compile(r"^:(\w+)$")
# What keyMatch2 treats as special inside a pattern segment (pycasbin: `:name` and `*`, and
# the pattern is otherwise a regular expression).
REGEX = re.compile(r"[.*+?^$()\[\]{}|\\:]")
# What makes a keyMatch2 pattern segment mean something else inside the whole pattern:
# alternation, anchors (`\A`, `\Z`, `\b` ...), inline flags.
_NOT_LOCAL = re.compile(r"[|^$]|\(\?|\\[AZzbBG]")
# A part starting with a quantifier repeats the `/` before it in the whole pattern.
_QUANTIFIERS = ("{", "*", "+", "?")


@dataclass(frozen=True)
class RowTest:
    """A function of `r.obj` over the rows: where it holds, and where the planner cannot tell
    (`unknown`, never overlapping `true`), which is planned as a missing attribute."""

    true: Node
    unknown: Node = planast.FALSE


NO_ROW = RowTest(planast.FALSE)
# LIKE patterns (`\\` escaping) for a parameter holding more than one segment, one starting
# with an empty segment, and a line break after its first `/` (before its end).
HAS_SLASH = "%/%"
STARTS_WITH_SLASH = "/%"
LINE_BREAK_AFTER_SLASH = "%/%\n%"
LINE_BREAK_AFTER_SLASH_BEFORE_END = "%/%\n_%"


def one_segment(param: str) -> Node:
    """What keyMatch2's `:name` (`[^/]+`) asks of the parameter it meets: a non-empty value
    without `/`. Before, an allow line `/api/docs/:id` listed the rows `` and `a/b` (every
    row: ALWAYS_ALLOWED), which Check refuses."""
    return planast.all_of(
        planast.Compare("ne", param, ""), planast.Not(planast.Compare("like", param, HAS_SLASH))
    )


def slashed(params: list[str] | tuple[str, ...]) -> Node:
    """Some of `params` holds a `/`."""
    return planast.any_of(*(planast.Compare("like", p, HAS_SLASH) for p in params))


def before_final_line_break(param: str, part: str) -> Node:
    # keyMatch2's regex ends in `$`, which Python's `re` (so pycasbin, and Check with it) also
    # matches before a final `\n`: a deny line `/api/orders/7` denies the id `7\n` too, and a
    # plan that asked for `id == '7'` alone let that row through.
    return planast.Compare("in", param, (part, part + "\n"))


def single_line(params: tuple[str | None, ...]) -> list[Node]:
    """What keyMatch2's final `/.*` asks of the segments it covers: `.` takes no line break,
    and `$` matches before a final one, so only the last segment may end in one (an id `a\nb`
    under `/api/*` is refused by Check; before, the plan listed it)."""
    last = len(params) - 1
    return [
        planast.Not(
            planast.Compare(
                "like", param, planast.HAS_LINE_BREAK_BEFORE_END if i == last else planast.HAS_LINE_BREAK
            )
        )
        for i, param in enumerate(params)
        if param is not None
    ]


def segment_matches(part: str, segment: str) -> bool:
    """Whether keyMatch2's regex piece `part` matches the template's literal `segment` whole.

    Check runs the pattern as one regex, `^part0/part1/...$`; the plan splits it on `/`, which
    is sound only where a part means the same alone as inside the whole. A `|` (`/a|q/c/:id`
    is `^/a` or `q/c/...`), an anchor, an inline flag or a part that is no regex on its own
    (a group or a class spanning a `/`) would let a part match a segment the whole pattern
    does not, so the plan would allow rows Check denies: such parts are not planned. The
    rest runs on RE2 (the segment is the caller's, the part the policy's: Python's `re`
    backtracked for hours on `(a+)+b` against 40 `a`s).
    """
    colon = part.find(":")
    # colon_params turns a `:` and the rest of the part into `[^/]+` (a `:` that ends it stays).
    piece, param = (part[:colon], True) if 0 <= colon < len(part) - 1 else (part, False)
    if _NOT_LOCAL.search(piece) or piece.startswith(_QUANTIFIERS):
        raise Unplannable(
            f"keyMatch2 pattern segment {part!r} (its regular expression reaches past its segment)"
        )
    regex = (colon_params(part) if param else part) + r"\Z"
    try:
        return saferegex.matches(regex, segment)
    except ValueError as exc:  # a PatternError, or a segment RE2 cannot take (a lone surrogate)
        raise Unplannable(f"keyMatch2 pattern segment {part!r} ({exc})") from None
