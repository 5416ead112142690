"""Policy lines as text: parsing a rule someone typed, writing it back, formatting a file.

Everything here works on file text and keeps what it does not change byte for byte
(comments, blank lines, order). A rule is `(ptype, *values)`, e.g. `("p", "read:orders",
"/api/orders", "GET", "True", "allow")`. Nothing here ever adds quotes: pycasbin keeps
CSV quotes as part of the value, so a quoted condition stops being a condition.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from authz.engine.policyfiles import UnloadableLine, split_tokens, text_lines
from authz.errors import InvalidArgument

Rule = tuple[str, ...]
_PTYPE = re.compile(r"[pg]\d*")


class RuleSyntaxError(InvalidArgument):
    """A rule cannot be written as one policy line that reads back as the same values."""


def parse_rule(text: str | Sequence[str]) -> Rule:
    """A rule from one string (`"p, a, b, c"`) or from command-line words (`["p,", "a,", ...]`)."""
    joined = text if isinstance(text, str) else " ".join(text)
    try:
        tokens = split_tokens(joined)
    except UnloadableLine as exc:
        raise RuleSyntaxError(f"{joined.strip()!r}: {exc}") from exc
    if tokens is None:
        raise RuleSyntaxError("empty rule: write it as `p, sub, obj, act, ...`")
    rule = tuple(tokens)
    rule_line(rule)
    return rule


def rule_line(rule: Sequence[str]) -> str:
    """The canonical line for a rule (`p, a, b, c`); raises RuleSyntaxError when it cannot be one."""
    if not rule or not _PTYPE.fullmatch(rule[0]):
        raise RuleSyntaxError(
            f"a rule starts with its type (p, g, g2 ...), not {rule[0] if rule else 'nothing'!r}"
        )
    if len(rule) < 2:
        raise RuleSyntaxError(f"rule {rule[0]!r} has no values")
    for position, value in enumerate(rule[1:], start=1):
        if not value.strip():
            raise RuleSyntaxError(f"value {position} of the rule is empty")
        if "\x00" in value:
            # No policy reader expects one, and the policy store cannot keep one.
            raise RuleSyntaxError(f"value {position} of the rule holds a NUL character")
        if value.splitlines() != [value]:
            # Any character Python breaks lines at (U+2028, \x1e, \v ...), not only \n and \r:
            # whatever reads the file next must see one line.
            raise RuleSyntaxError(f"value {position} of the rule spans lines (it holds a line break)")
    line = ", ".join(value.strip() for value in rule)
    try:
        tokens = split_tokens(line)
    except UnloadableLine as exc:
        raise RuleSyntaxError(f"{line!r}: {exc}") from exc
    if tuple(tokens or ()) != tuple(value.strip() for value in rule):
        raise RuleSyntaxError(
            f"{line!r} would not read back as the same values (unbalanced brackets or a comma?)"
        )
    return line


def line_rule(raw: str) -> Rule | None:
    """The rule on one line of a policy file, or None for blank, comment and unknown lines and
    lines Casbin cannot load (the policy refuses those; edits keep them as they are)."""
    try:
        tokens = split_tokens(raw)
    except UnloadableLine:
        return None
    if tokens is None or not _PTYPE.fullmatch(tokens[0]):
        return None
    return tuple(tokens)


def append_lines(text: str, rules: Sequence[Rule]) -> str:
    """`text` with one line per rule added at the end."""
    if text and not text.endswith(("\n", "\r")):
        text += "\n"
    return text + "".join(rule_line(rule) + "\n" for rule in rules)


def drop_lines(text: str, rules: Sequence[Rule]) -> tuple[str, set[Rule]]:
    """`text` without the lines holding any of `rules`, and which of them were found."""
    wanted = set(rules)
    kept: list[str] = []
    found: set[Rule] = set()
    for raw in text_lines(text, keepends=True):
        rule = line_rule(raw)
        if rule in wanted:
            found.add(rule)
            continue
        kept.append(raw)
    return "".join(kept), found


def format_text(text: str) -> str:
    """Normalise spacing: policy lines become `p, a, b, c`; other lines lose trailing blanks.

    Values (conditions included) keep their inner spacing and are never quoted; comments,
    blank lines and order are kept; the file ends with exactly one newline.
    """
    out: list[str] = []
    for raw in text_lines(text):
        rule = line_rule(raw)
        out.append(", ".join(rule) if rule is not None else raw.rstrip())
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n" if out else ""
