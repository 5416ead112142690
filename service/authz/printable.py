"""Text bound for a terminal or a single line, from a source that may hold control characters."""

from __future__ import annotations


def escaped(text: str) -> str:
    """`text` with every character that is not printable shown as its escape (`\\x1b`, `\\n`):
    names and messages from a tenant, a store or a policy, which must not drive the terminal they
    are printed on nor break the line they are printed in."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
