"""`authz policy diff`'s text side: the changed blocks of the policy files, comments apart.

Whether a block changed access is decided by `impact.py`, which evaluates both versions; a
block starts with `effect` False.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from authz.engine.policyfiles import PolicySource


@dataclass(frozen=True, slots=True)
class TextChange:
    """Lines whose text changed at one place of a file: `old` replaced by `new` (number, text)."""

    file: str
    old: tuple[tuple[int, str], ...]
    new: tuple[tuple[int, str], ...]
    effect: bool  # some change of access points to one of its policy lines
    comments_only: bool

    @property
    def line(self) -> int:
        """Where to look: its first new line, else its first old line."""
        return (self.new or self.old)[0][0]

    def locations(self) -> list[tuple[str, str]]:
        """("old" | "new" FILE:LINE, text) of every line."""
        return [
            (f"{side} {self.file}:{n}", text)
            for side, lines in (("old", self.old), ("new", self.new))
            for n, text in lines
        ]


def changed_blocks(old_source: PolicySource, new_source: PolicySource) -> list[TextChange]:
    """The changed blocks of every policy file (effect not known yet)."""
    old_files, new_files = dict(old_source.files), dict(new_source.files)
    found: list[TextChange] = []
    for name in sorted(old_files.keys() | new_files.keys()):
        before = old_files.get(name, "").splitlines()
        after = new_files.get(name, "").splitlines()
        matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
        for tag, a1, a2, b1, b2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            # Comments apart from policy lines: a comment edited beside a rule is still without effect.
            for comments in (True, False):
                olds = tuple(
                    (a1 + i + 1, ln) for i, ln in enumerate(before[a1:a2]) if _is_comment(ln) is comments
                )
                news = tuple(
                    (b1 + i + 1, ln) for i, ln in enumerate(after[b1:b2]) if _is_comment(ln) is comments
                )
                if olds or news:
                    found.append(TextChange(name, olds, news, False, comments))
    return found


def _is_comment(line: str) -> bool:
    return not line.strip() or line.strip().startswith("#")
