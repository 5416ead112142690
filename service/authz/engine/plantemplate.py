"""The resource template of a plan, and how a line's resource pattern meets it.

A list's rows share a template such as `/api/orders/:id`; a row's resource id is the
template with its path parameters filled in from the row's columns, whatever they hold. For
a policy line the planner asks what Check would compute with that id in `r.obj`:

- `r.obj == "/api/orders/42"` holds for the rows whose `id` is `42` (`r.obj ==
  "/api/orders/a/b"` for the row `a/b`; on several parameters, each way the value's segments
  split among them), for no row when the string cannot be such an id;
- `keyMatch2(r.obj, "/api/orders/:id")` holds for the rows whose `id` is one non-empty
  segment (`[^/]+`: `id != '' AND NOT (id like '%/%')`), `keyMatch2(r.obj, "/api/*")` for
  every row whose parameters hold no line break (the last one may end in one: `.*` takes
  none, `$` matches before a final one), `keyMatch2(r.obj, "/api/orders/42")` for the rows
  whose `id` is `42` (or `42\n`);
- `keyMatch(r.obj, "/api/orders*")` (a string prefix, no regular expression) for every row.

Each answer is a `RowTest`: where the function holds, and where the planner cannot tell.
The latter are rows whose parameter holds a `/` where the pattern reads that parameter's
segment (`keyMatch2(r.obj, "/api/:a/:b")` on the template `/api/:id`): the segments no
longer line up, and the plan treats such a row as it treats a missing attribute (an allow
line does not list it, a deny line denies it), narrower than Check, never wider.

A kind such as `order:*` stands for every id with that prefix; the rest of an id is the
field `id` (`r.obj == "order:42"` becomes `id == '42'`).

Anything else about a whole `r.obj` cannot be planned (`Unplannable`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from authz.engine import planast, saferegex
from authz.engine.keymatch import colon_params
from authz.engine.planast import Node

_PARAM = re.compile(r"^:(\w+)$")
_PARAM_ANYWHERE = re.compile(r"(^|/):\w+(/|$)|\*")
# What keyMatch2 treats as special inside a pattern segment (pycasbin: `:name` and `*`, and
# the pattern is otherwise a regular expression).
_REGEX = re.compile(r"[.*+?^$()\[\]{}|\\:]")
# What makes a keyMatch2 pattern segment mean something else inside the whole pattern:
# alternation, anchors (`\A`, `\Z`, `\b` ...), inline flags.
_NOT_LOCAL = re.compile(r"[|^$]|\(\?|\\[AZzbBG]")
# A part starting with a quantifier repeats the `/` before it in the whole pattern.
_QUANTIFIERS = ("{", "*", "+", "?")


class Unplannable(Exception):
    """A condition form the plan cannot express; `form` says which."""

    def __init__(self, form: str) -> None:
        self.form = form
        super().__init__(form)


@dataclass(frozen=True)
class RowTest:
    """A function of `r.obj` over the rows: where it holds, and where the planner cannot tell
    (`unknown`, never overlapping `true`), which is planned as a missing attribute."""

    true: Node
    unknown: Node = planast.FALSE


NO_ROW = RowTest(planast.FALSE)
# Ways (and steps) to split an id among several parameters before the planner gives up on it
# and treats the rows as unknown: a value of thousands of `/` on three parameters has millions.
_MAX_SPLITS = 16
_MAX_SPLIT_STEPS = 4096
_MAX_SPLIT_SEGMENTS = 64  # the search recurses a level a segment
# LIKE patterns (`\\` escaping) for a parameter holding more than one segment, one starting
# with an empty segment, and a line break after its first `/` (before its end).
HAS_SLASH = "%/%"
STARTS_WITH_SLASH = "/%"
LINE_BREAK_AFTER_SLASH = "%/%\n%"
LINE_BREAK_AFTER_SLASH_BEFORE_END = "%/%\n_%"


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
            return RowTest(planast.FALSE, _slashed(self.names) if self._frames(value) else planast.FALSE)
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
        if not tail and not _REGEX.search(pattern):
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
        if param is None or not _PARAM.match(parts[index]) or any(self.params[:index]):
            return None
        if any(_REGEX.search(part) and not _PARAM.match(part) for part in parts[:index]):
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
            *_single_line(self.params[index + 1 :]),
        )

    def _ends_agree(self, parts: list[str], tail: bool) -> bool:
        # The pattern's segments before the first parameter meet every row's literal prefix, and
        # (without `/*`) its last ones the literal suffix, however many `/` the parameters hold.
        params = [i for i, p in enumerate(self.params) if p]
        before = zip(parts, self.segments[: params[0]], strict=False)
        after = () if tail else zip(reversed(parts), reversed(self.segments[params[-1] + 1 :]), strict=False)
        for part, segment in (*before, *after):
            if _PARAM.match(part):
                if not segment:
                    return False
            elif not _REGEX.search(part) and part != segment:
                return False
        return True

    def _aligned(self, parts: list[str], tail: bool, pattern: str) -> Node:
        # The rows whose parameters read by a pattern segment hold no `/`: segment by segment.
        out: list[Node] = []
        if tail:
            # `/.*` needs a `/` after the prefix: at least one more segment.
            if len(self.segments) <= len(parts):
                return planast.FALSE
            out.extend(_single_line(self.params[len(parts) :]))
        elif len(parts) != len(self.segments):
            return self._unless_regex(pattern)
        last = len(parts) - 1 if not tail else -1
        for index, (part, segment, param) in enumerate(zip(parts, self.segments, self.params, strict=False)):
            if _PARAM.match(part):
                if param is None:
                    if not segment:
                        return planast.FALSE
                else:
                    out.append(_one_segment(param))
                continue
            if _REGEX.search(part):
                if param is not None:
                    raise Unplannable(f"keyMatch2 pattern segment {part!r} against the parameter :{param}")
                if tail:
                    # Before `/.*` a part may take a `/` (`/a.+/*` holds for `/a/b/1`): the
                    # segments no longer line up, and a deny line planned per segment would miss.
                    raise Unplannable(
                        f"keyMatch2 pattern {pattern!r} with regular-expression characters before /*"
                    )
                if not _segment_matches(part, segment):
                    return planast.FALSE
                continue
            if param is None:
                if part != segment:
                    return planast.FALSE
            elif index == last:
                out.append(_before_final_line_break(param, part))
            else:
                out.append(planast.Compare("eq", param, part))
        return planast.all_of(*out)

    def _misaligned(self, parts: list[str], tail: bool) -> Node:
        # The rows `_aligned` cannot answer: a parameter read by a pattern segment holds a `/`,
        # so the row's segments shift against the pattern's. None can match a pattern of no more
        # segments than the template that has no regular expression (each `/` is one segment).
        read = [p for p in self.params[: len(parts)] if p]
        regex = any(_REGEX.search(part) and not _PARAM.match(part) for part in parts)
        if not read or (not tail and not regex and len(parts) <= len(self.segments)):
            return planast.FALSE
        return _slashed(read)

    def _unless_regex(self, pattern: str) -> Node:
        # Different segment counts: no row matches, unless the pattern's regular
        # expression characters (`.` matches `/`) could bridge them.
        if _REGEX.search(pattern.replace("/*", "").replace(":", "")):
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


def _one_segment(param: str) -> Node:
    """What keyMatch2's `:name` (`[^/]+`) asks of the parameter it meets: a non-empty value
    without `/`. Before, an allow line `/api/docs/:id` listed the rows `` and `a/b` (every
    row: ALWAYS_ALLOWED), which Check refuses."""
    return planast.all_of(
        planast.Compare("ne", param, ""), planast.Not(planast.Compare("like", param, HAS_SLASH))
    )


# Templates of more parameters plan each line with its segment conditions in place.
_MAX_FACTORED_PARAMS = 4


def segment_condition(template: Template) -> Node | None:
    """What keyMatch2's `:name` asks of every parameter of `template` (`_one_segment` of each,
    in order): the whole condition a line `/api/orders/:id` puts on the rows of that template,
    which the planner conjoins once after combining the lines (`plan.py`). None for a kind or
    a template without parameters, or of more than a few."""
    if isinstance(template, KindTemplate) or not 0 < len(template.names) <= _MAX_FACTORED_PARAMS:
        return None
    return _segments(template.names)


# Kept per parameter names: at most 4 of them, within the 4,096 characters of a resource.
@functools.lru_cache(maxsize=256)
def _segments(names: tuple[str, ...]) -> Node:
    return planast.all_of(*(_one_segment(name) for name in names))


def _slashed(params: list[str] | tuple[str, ...]) -> Node:
    """Some of `params` holds a `/`."""
    return planast.any_of(*(planast.Compare("like", p, HAS_SLASH) for p in params))


def _before_final_line_break(param: str, part: str) -> Node:
    # keyMatch2's regex ends in `$`, which Python's `re` (so pycasbin, and Check with it) also
    # matches before a final `\n`: a deny line `/api/orders/7` denies the id `7\n` too, and a
    # plan that asked for `id == '7'` alone let that row through.
    return planast.Compare("in", param, (part, part + "\n"))


def _single_line(params: tuple[str | None, ...]) -> list[Node]:
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


def _segment_matches(part: str, segment: str) -> bool:
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


KIND_PARAM = "id"


@dataclass(frozen=True)
class KindTemplate(Template):
    """A kind such as `order:*`: every id that starts with the prefix; the rest is the field `id`."""

    prefix: str = ""

    @property
    def concrete(self) -> bool:
        """A kind stands for many resources."""
        return False

    @property
    def literal(self) -> str:
        """What every row's id starts with."""
        return self.prefix

    @property
    def names(self) -> tuple[str, ...]:
        """The one parameter: the rest of the id."""
        return (KIND_PARAM,)

    def equals(self, value: str) -> RowTest:
        """The rows whose id is `value`: `id == <the rest>` (empty too: the row `order:` with the
        id `` is `r.obj == "order:"`)."""
        if value.startswith(self.prefix):
            return RowTest(planast.Compare("eq", KIND_PARAM, value[len(self.prefix) :]))
        return NO_ROW

    def key_match2(self, pattern: str) -> RowTest:
        """keyMatch2 against a kind: a plain id, a `prefix/*` covering the kind, or no row."""
        found = _REGEX.search(pattern)
        start = pattern[: found.start()] if found else pattern
        if not (start.startswith(self.prefix) or self.prefix.startswith(start)):
            return NO_ROW
        if found is None:
            return RowTest(planast.any_of(self.equals(pattern).true, self.equals(pattern + "\n").true))
        if (
            pattern.endswith("/*")
            and not _REGEX.search(pattern[:-1])
            and self.prefix.startswith(pattern[:-1])
        ):
            return RowTest(planast.all_of(*_single_line((KIND_PARAM,))))
        raise Unplannable(f"keyMatch2 pattern {pattern!r} against the kind {self.text!r}")

    def key_match(self, pattern: str) -> RowTest:
        """keyMatch (`*`: any suffix) against a kind."""
        star = pattern.find("*")
        if star == -1:
            return self.equals(pattern)
        prefix = pattern[:star]
        if self.prefix.startswith(prefix):
            return RowTest(planast.TRUE)
        if not prefix.startswith(self.prefix):
            return NO_ROW
        raise Unplannable(f"keyMatch prefix {prefix!r} ending inside the id of the kind {self.text!r}")


# Kept per text (a resource is at most 4,096 characters, `handlers.MAX_FIELD_CHARS`): a list's
# few templates are parsed once, and their parts (`names`, `literal`) worked out once.
@functools.lru_cache(maxsize=1024)
def parse_template(text: str) -> Template:
    """Split a template into segments; `:name` segments are parameters (names unique).

    A template ending in `*` without parameters (`order:*`) is a kind: the rest of each id
    is the parameter `id`.
    """
    if "\n" in text:
        # keyMatch2 reads a line break in the id apart (`.`, `$`): the plan covers them in the
        # rows' path parameters only.
        raise ValueError("a resource template holds a line break")
    if text.endswith("*") and len(text) > 1 and not _PARAM_ANYWHERE.search(text[:-1]):
        prefix = text[:-1]
        return KindTemplate(text, (text,), (None,), prefix)
    segments = tuple(text.split("/"))
    params = tuple(m.group(1) if (m := _PARAM.match(s)) else None for s in segments)
    names = [p for p in params if p]
    if len(set(names)) != len(names):
        raise ValueError(f"resource template {text!r} names a parameter twice")
    return Template(text, segments, params)
