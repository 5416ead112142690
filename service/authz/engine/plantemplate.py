"""The resource template of a plan, and how a line's resource pattern meets it.

A list's rows share a template such as `/api/orders/:id`: each `:name` segment is a path
parameter that one row fills with a non-empty value without `/`. For a policy line the
planner asks what Check would compute with a row's resource id in `r.obj`:

- `r.obj == "/api/orders/42"` holds for the rows whose `id` is `42`, and for no row when
  the string cannot be an instance of the template;
- `keyMatch2(r.obj, "/api/orders/:id")` holds for every row, `keyMatch2(r.obj, "/api/*")`
  for every row whose parameters hold no line break (the last one may end in one: `.*`
  takes none, `$` matches before a final one), `keyMatch2(r.obj, "/api/orders/42")` for
  the rows whose `id` is `42` (or `42\n`);
- `keyMatch(r.obj, "/api/orders*")` (a string prefix, no regular expression) for every row.

A kind such as `order:*` stands for every id with that prefix; the rest of an id is the
field `id` (`r.obj == "order:42"` becomes `id == '42'`).

Anything else about a whole `r.obj` cannot be planned (`Unplannable`).
"""

from __future__ import annotations

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
class Template:
    """A parsed resource template: literal segments and parameter names."""

    text: str
    segments: tuple[str, ...]
    params: tuple[str | None, ...]  # the parameter name of each segment, None if literal

    @property
    def concrete(self) -> bool:
        """A template without parameters names one resource."""
        return not any(self.params)

    @property
    def literal(self) -> str:
        """What every row's id starts with: the segments before the first parameter, and `/`."""
        first = next(i for i, p in enumerate(self.params) if p)
        return "/".join(self.segments[:first]) + "/" if first else ""

    @property
    def names(self) -> tuple[str, ...]:
        """The parameter names in order."""
        return tuple(p for p in self.params if p)

    def equals(self, value: str) -> Node:
        """The rows whose resource id equals `value`."""
        parts = value.split("/")
        if len(parts) != len(self.segments):
            return planast.FALSE
        out: list[Node] = []
        for part, segment, param in zip(parts, self.segments, self.params, strict=True):
            if param is None:
                if part != segment:
                    return planast.FALSE
            elif not part:
                return planast.FALSE
            else:
                out.append(planast.Compare("eq", param, part))
        return planast.all_of(*out)

    def key_match2(self, pattern: str) -> Node:
        """The rows for which `keyMatch2(resource id, pattern)` holds."""
        parts = pattern.split("/")
        tail = parts[-1] == "*" and len(parts) > 1
        if tail:
            parts = parts[:-1]
        if "*" in "".join(parts):
            raise Unplannable(f"keyMatch2 pattern {pattern!r} with * before its end")
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
                if param is None and not segment:
                    return planast.FALSE
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

    def _unless_regex(self, pattern: str) -> Node:
        # Different segment counts: no row matches, unless the pattern's regular
        # expression characters (`.` matches `/`) could bridge them.
        if _REGEX.search(pattern.replace("/*", "").replace(":", "")):
            raise Unplannable(f"keyMatch2 pattern {pattern!r} with regular-expression characters")
        return planast.FALSE

    def key_match(self, pattern: str) -> Node:
        """The rows for which `keyMatch(resource id, pattern)` holds (`*`: any suffix)."""
        star = pattern.find("*")
        if star == -1:
            return self.equals(pattern)
        prefix = pattern[:star]
        literal = self.literal
        if literal.startswith(prefix):
            return planast.TRUE
        if not prefix.startswith(literal):
            return planast.FALSE
        raise Unplannable(f"keyMatch prefix {prefix!r} ending inside a parameter of {self.text!r}")


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

    def equals(self, value: str) -> Node:
        """The rows whose id is `value`: `id == <the rest>`."""
        if len(value) > len(self.prefix) and value.startswith(self.prefix):
            return planast.Compare("eq", KIND_PARAM, value[len(self.prefix) :])
        return planast.FALSE

    def key_match2(self, pattern: str) -> Node:
        """keyMatch2 against a kind: a plain id, a `prefix/*` covering the kind, or no row."""
        found = _REGEX.search(pattern)
        start = pattern[: found.start()] if found else pattern
        if not (start.startswith(self.prefix) or self.prefix.startswith(start)):
            return planast.FALSE
        if found is None:
            return planast.any_of(self.equals(pattern), self.equals(pattern + "\n"))
        if (
            pattern.endswith("/*")
            and not _REGEX.search(pattern[:-1])
            and self.prefix.startswith(pattern[:-1])
        ):
            return planast.all_of(*_single_line((KIND_PARAM,)))
        raise Unplannable(f"keyMatch2 pattern {pattern!r} against the kind {self.text!r}")

    def key_match(self, pattern: str) -> Node:
        """keyMatch (`*`: any suffix) against a kind."""
        star = pattern.find("*")
        if star == -1:
            return self.equals(pattern)
        prefix = pattern[:star]
        if self.prefix.startswith(prefix):
            return planast.TRUE
        if not prefix.startswith(self.prefix):
            return planast.FALSE
        raise Unplannable(f"keyMatch prefix {prefix!r} ending inside the id of the kind {self.text!r}")


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
