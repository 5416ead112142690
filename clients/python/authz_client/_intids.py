"""Integer id columns: a plan's text comparisons on a path parameter, decided as Check would.

Check reads a row's path parameter as the text of its resource id: an integer id column
holding ``n`` is the text ``str(n)`` (``/api/orders/42``). A plan compares that text
(``id != ''``, ``id in ('7', '7\\n')``, ``NOT (id like '%/%')``); the database must compare
the integers instead (an index on the column, no cast, no ``42 <> ''`` error). These helpers
say which integer a text is and which LIKE patterns no integer's text matches.
"""

from __future__ import annotations

import re

# The rows of a 64-bit integer column (SQLite's INTEGER, PostgreSQL's bigint, MySQL's BIGINT).
_MIN, _MAX = -(2**63), 2**63 - 1
_CANONICAL = re.compile(r"-?(?:0|[1-9][0-9]*)", re.ASCII)
# Every character an integer's text can hold: a pattern requiring another matches none.
INTEGER_CHARS = frozenset("-0123456789")
_PARAM = re.compile(r":(\w+)")
_PARAM_ANYWHERE = re.compile(r"(^|/):\w+(/|$)|\*")


def integer_of(text: str) -> int | None:
    """The integer whose text ``str(n)`` is ``text``, if a 64-bit column can hold it, else None.

    ``'007'``, ``'+7'``, ``' 7'``, ``'7\\n'`` and ``'-0'`` are the text of no integer: no row's.
    """
    if len(text) > 20 or not _CANONICAL.fullmatch(text) or text == "-0":
        return None
    number = int(text)
    return number if _MIN <= number <= _MAX else None


def like_matches_no_integer(pattern: str) -> bool:
    """True when no integer's text matches the LIKE ``pattern`` (``\\`` escaping), False when unsure.

    Certain when a literal character the pattern requires is one no integer's text holds
    (``'%/%'``, ``'%\\n_%'``: every pattern the planner writes); False for a malformed pattern
    (a final lone ``\\``) and for any other, which the caller refuses.
    """
    escaped = other = False
    for ch in pattern:
        if escaped:
            escaped, other = False, other or ch not in INTEGER_CHARS
        elif ch == "\\":
            escaped = True
        else:
            other = other or (ch not in "%_" and ch not in INTEGER_CHARS)
    return other and not escaped


def template_params(template: str) -> frozenset[str]:
    """The path parameters a resource template names, as the server parses it.

    ``/api/orders/:id`` names ``id``; a kind (``order:*``) names ``id``, the rest of each id.
    """
    if "\n" in template:
        return frozenset()
    if template.endswith("*") and len(template) > 1 and not _PARAM_ANYWHERE.search(template[:-1]):
        return frozenset({"id"})
    return frozenset(m.group(1) for s in template.split("/") if (m := _PARAM.fullmatch(s)))
