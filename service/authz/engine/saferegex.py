"""Regular expressions in linear time: Python `re` patterns run on RE2, with Python's meaning.

pycasbin's keyMatch2/3/4/5 and regexMatch hand policy text to Python's backtracking `re`,
where `(a+)+$` against 40 characters runs for hours while holding the interpreter: one
policy line could stall every decision. Here each pattern is parsed by Python's own
parser (so escapes, classes and precedence mean exactly what they mean to `re`) and
written out again in RE2 syntax, which matches in time linear in the text. Every
construct is translated to one with the same meaning; the few RE2 cannot express
(backreferences, lookaround, `\\b`, atomic groups, possessive repeats, the `i`/`m`/`a`/`L`
flags) raise `PatternError` naming the construct, so a policy using them is refused
with a clear message instead of deciding differently from pycasbin.

Differences handled on the way: RE2's `\\d \\w \\s` are ASCII while Python's are Unicode
(written out as explicit code point ranges computed from Python's own predicates), and
Python's `$` also matches before a final newline (allowed only where nothing follows
it, written as `\\n?\\z`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import re2
from re2 import _re2

# Longest pattern text a policy may use (a route is a few dozen characters).
MAX_PATTERN_CHARS = 4096
# RE2's bound on one compiled pattern's memory (program and matching caches), bytes; a
# pattern that needs more is refused (six Unicode `\w` classes fit in half of it).
MAX_PATTERN_MEMORY = 256 << 10
MAX_REPEAT = 1000  # RE2's limit on a counted repetition
# Character class ranges in one pattern: a Unicode `\w` is 734 of them, each costing RE2
# compile time, so this bounds the work per pattern to six such classes (~0.05 s).
MAX_CLASS_RANGES = 5_000
# Compiled patterns kept per process (LRU): at most _CACHED x MAX_PATTERN_MEMORY in all.
_CACHED = 4096
_ALLOWED_FLAGS = sre.SRE_FLAG_UNICODE | sre.SRE_FLAG_DOTALL | sre.SRE_FLAG_VERBOSE
_FLAG_NAMES = {
    sre.SRE_FLAG_IGNORECASE: "(?i) / IGNORECASE",
    sre.SRE_FLAG_MULTILINE: "(?m) / MULTILINE",
    sre.SRE_FLAG_ASCII: "(?a) / ASCII",
    sre.SRE_FLAG_LOCALE: "(?L) / LOCALE",
}
_REFUSED = {
    sre.GROUPREF: "backreferences",
    sre.GROUPREF_EXISTS: "conditional groups (?(1)...)",
    sre.ASSERT: "lookahead / lookbehind",
    sre.ASSERT_NOT: "negative lookahead / lookbehind",
    sre.ATOMIC_GROUP: "atomic groups (?>...)",
    sre.POSSESSIVE_REPEAT: "possessive repeats (*+, ++, ?+)",
}
_SURROGATES = (0xD800, 0xDFFF)
_ANCHOR_START = _re2.RE2.Anchor.ANCHOR_START
_MAX_CODE = 0x10FFFF


class PatternError(ValueError):
    """A pattern is invalid, too long, or uses what a linear-time engine cannot run."""


def _ranges(predicate: Callable[[str], bool]) -> tuple[tuple[int, int], ...]:
    """The code point ranges whose characters satisfy `predicate` (surrogates left out)."""
    out: list[tuple[int, int]] = []
    start = -1
    for code in range(_MAX_CODE + 1):
        inside = not (_SURROGATES[0] <= code <= _SURROGATES[1]) and predicate(chr(code))
        if inside and start < 0:
            start = code
        elif not inside and start >= 0:
            out.append((start, code - 1))
            start = -1
    if start >= 0:
        out.append((start, _MAX_CODE))
    return tuple(out)


@functools.cache
def _category(code: Any) -> tuple[tuple[int, int], ...]:
    # Python's str predicates are the ones `re` itself uses for \d, \s and \w on str patterns.
    positive: dict[Any, Callable[[str], bool]] = {
        sre.CATEGORY_DIGIT: str.isdecimal,
        sre.CATEGORY_SPACE: str.isspace,
        sre.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    }
    negative = {
        sre.CATEGORY_NOT_DIGIT: sre.CATEGORY_DIGIT,
        sre.CATEGORY_NOT_SPACE: sre.CATEGORY_SPACE,
        sre.CATEGORY_NOT_WORD: sre.CATEGORY_WORD,
    }
    if code in positive:
        return _ranges(positive[code])
    if code in negative:
        inner = positive[negative[code]]
        return _ranges(lambda c: not inner(c))
    raise PatternError(f"unsupported character category {code}")


def _char(code: int) -> str:
    if _SURROGATES[0] <= code <= _SURROGATES[1]:
        raise PatternError(f"the pattern names a surrogate code point U+{code:04X}")
    return f"\\x{{{code:X}}}"


def _class(items: list[tuple[Any, Any]]) -> tuple[str, int]:
    """The RE2 class for a parsed Python class, and how many ranges it lists."""
    negate = False
    parts: list[str] = []
    for op, value in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            parts.append(_char(value))
        elif op is sre.RANGE:
            low, high = value
            parts.extend(_span(low, high))
        elif op is sre.CATEGORY:
            parts.extend(f"{_char(a)}-{_char(b)}" for a, b in _category(value))
        else:
            raise PatternError(f"unsupported item {op} in a character class")
    if not parts:
        # Python's `[^...]` of nothing cannot be written; an empty set matches no character.
        return ("[^\\x{0}-\\x{10FFFF}]" if not negate else "(?s:.)"), 1
    return f"[{'^' if negate else ''}{''.join(parts)}]", len(parts)


def _span(low: int, high: int) -> Iterator[str]:
    # A range across the surrogates keeps its two real halves.
    for a, b in ((low, min(high, _SURROGATES[0] - 1)), (max(low, _SURROGATES[1] + 1), high)):
        if a <= b:
            yield f"{_char(a)}-{_char(b)}"


class _Writer:
    def __init__(self, flags: int) -> None:
        self._check_flags(flags)
        self.dotall = bool(flags & sre.SRE_FLAG_DOTALL)
        self.ranges = 0

    @staticmethod
    def _check_flags(flags: int) -> None:
        for flag, name in _FLAG_NAMES.items():
            if flags & flag:
                raise PatternError(f"the {name} flag is not supported")
        if flags & ~_ALLOWED_FLAGS:
            raise PatternError(f"unsupported flags {flags:#x}")

    def sequence(self, items: Any, tail: bool) -> str:
        items = list(items)
        out = []
        for number, (op, value) in enumerate(items):
            # `$` may match before a final newline, so only where nothing follows it (but `$`).
            rest_is_end = all(o is sre.AT and v is sre.AT_END for o, v in items[number + 1 :])
            out.append(self.item(op, value, tail and rest_is_end))
        return "".join(out)

    def item(self, op: Any, value: Any, tail: bool) -> str:
        if op in _REFUSED:
            raise PatternError(f"{_REFUSED[op]} cannot run in linear time and are not supported")
        if op is sre.LITERAL:
            return _char(value)
        if op is sre.NOT_LITERAL:
            return f"[^{_char(value)}]"
        if op is sre.ANY:
            return "(?s:.)" if self.dotall else "."
        if op is sre.IN:
            text, ranges = _class(value)
            self.ranges += ranges
            if self.ranges > MAX_CLASS_RANGES:
                raise PatternError(
                    f"the character classes list over {MAX_CLASS_RANGES} ranges (a Unicode \\w is 734)"
                )
            return text
        if op is sre.AT:
            return self.anchor(value, tail)
        if op is sre.BRANCH:
            return "(?:" + "|".join(self.sequence(alt, tail) for alt in value[1]) + ")"
        if op is sre.SUBPATTERN:
            return self.group(value, tail)
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, high, inner = value
            if low > MAX_REPEAT or (high != sre.MAXREPEAT and high > MAX_REPEAT):
                raise PatternError(f"a repetition count above {MAX_REPEAT} is not supported")
            count = f"{{{low},}}" if high == sre.MAXREPEAT else f"{{{low},{high}}}"
            lazy = "?" if op is sre.MIN_REPEAT else ""
            return f"(?:{self.sequence(inner, False)}){count}{lazy}"
        raise PatternError(f"unsupported construct {op}")

    def anchor(self, code: Any, tail: bool) -> str:
        if code in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING):
            return "\\A"
        if code is sre.AT_END_STRING:
            return "\\z"
        if code is sre.AT_END:
            if not tail:
                raise PatternError("`$` is only supported at the end of the pattern")
            return "(?:\\n?\\z)"
        if code in (sre.AT_BOUNDARY, sre.AT_NON_BOUNDARY):
            raise PatternError("\\b and \\B are not supported (use explicit character classes)")
        raise PatternError(f"unsupported anchor {code}")

    def group(self, value: Any, tail: bool) -> str:
        number, add, remove, inner = value
        self._check_flags(add)
        saved = self.dotall
        if add & sre.SRE_FLAG_DOTALL:
            self.dotall = True
        if remove & sre.SRE_FLAG_DOTALL:
            self.dotall = False
        try:
            body = self.sequence(inner, tail)
        finally:
            self.dotall = saved
        return f"({body})" if number is not None else f"(?:{body})"


def translate(pattern: str) -> str:
    """`pattern` (Python `re` syntax) in RE2 syntax with the same matches; raises PatternError."""
    if not isinstance(pattern, str):
        raise PatternError(f"a pattern must be text, not {type(pattern).__name__}")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"a pattern is at most {MAX_PATTERN_CHARS} characters, not {len(pattern)}")
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise PatternError(f"invalid regular expression {pattern[:80]!r}: {exc}") from None
    return _Writer(parsed.state.flags).sequence(parsed, True)


def compile_program(pattern: str, captures: bool, max_mem: int = MAX_PATTERN_MEMORY) -> Any:
    """`pattern` compiled for `run` / `run_groups`, within `max_mem` bytes; raises PatternError."""
    text = translate(pattern)
    options = re2.Options()
    options.max_mem = max_mem
    options.log_errors = False
    options.never_capture = not captures
    program = _re2.RE2(text.encode(), options)
    if not program.ok():
        reason = program.error().decode(errors="replace")
        raise PatternError(f"regular expression {pattern[:80]!r} is refused: {reason}")
    return program


# Patterns made at decision time (a request's value, `p.obj + '/*'`) and the planner's; a
# policy's own patterns are compiled once per snapshot (`patterntable`).
cached_program = functools.lru_cache(maxsize=_CACHED)(compile_program)


def _spans(program: Any, text: Any) -> tuple[bytes, list[tuple[int, int]]]:
    # The bound C++ object, not re2's Python wrapper: the wrapper's bookkeeping costs ten
    # times the match itself. Offsets are in the UTF-8 bytes.
    data = text.encode()
    return data, program.Match(_ANCHOR_START, data, 0, len(data))


def run(program: Any, text: Any) -> bool:
    """Whether a compiled pattern matches at the start of `text`, in time linear in `text`."""
    return _spans(program, text)[1][0][0] >= 0


def run_groups(program: Any, text: Any) -> tuple[str | None, ...] | None:
    """A compiled pattern's groups (compiled with captures), or None when it does not match."""
    data, spans = _spans(program, text)
    if spans[0][0] < 0:
        return None
    return tuple(None if start < 0 else data[start:end].decode() for start, end in spans[1:])


def matches(pattern: str, text: Any) -> bool:
    """Whether `re.match(pattern, text)` would match, in time linear in `text`."""
    return run(cached_program(pattern, False), text)


def groups(pattern: str, text: Any) -> tuple[str | None, ...] | None:
    """`re.match(pattern, text).groups()`, or None when it does not match."""
    return run_groups(cached_program(pattern, True), text)
