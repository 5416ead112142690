"""Problems found in a policy directory, as data: severity, file, line and message.

Created where the problem is found (the engine, the suite reader, validate, lint), so the
location is never re-read from text. Depends on nothing else in authz: the engine uses it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# Findings one refusal carries (its message, the log line, GetPolicy's last reload error): a
# file of 4 million unknown lines made 4 million findings and a 280 MB message.
MAX_FINDINGS = 1_000
# One finding's message, whose text quotes the policy (a line, a condition): a 1 MB condition
# made each of its findings 2 MB, and 1,000 of them a 2 GB refusal. The quoted parts keep their
# ends and the reasons between them stay whole; past that, the message keeps its start and end.
MAX_MESSAGE_CHARS = 4_000
MAX_PART_CHARS = 600
# Where a message's reason meets the text it quotes: "LINE: reason (in 'CONDITION')".
_PARTS = re.compile(r"(: | \(in )")


class Severity(enum.Enum):
    """An error stops the policy from loading; a warning is a rule that cannot work as written."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem, located: `file` is relative to the policy directory ("" when no file is
    involved), `line` is 0 when unknown."""

    severity: Severity
    file: str
    line: int
    message: str

    def __post_init__(self) -> None:
        if len(self.message) > MAX_MESSAGE_CHARS:
            # Frozen: set once, here, before anything reads it.
            object.__setattr__(self, "message", shortened(self.message))

    @classmethod
    def error(cls, file: str, line: int, message: str) -> Finding:
        """An error at `file:line`."""
        return cls(Severity.ERROR, file, line, message)

    @property
    def location(self) -> str:
        """`FILE:LINE` (or just `FILE` when the line is unknown)."""
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        """`FILE:LINE: message` (`FILE: message`, or the message alone when unlocated): the log form."""
        return f"{self.location}: {self.message}" if self.file else self.message

    def render(self, prefix: str = "") -> str:
        """`PREFIX/FILE:LINE: severity: message`, the form editors jump to."""
        where = f"{prefix.rstrip('/')}/{self.location}" if prefix and self.file else self.location or prefix
        return (
            f"{where}: {self.severity.value}: {self.message}"
            if where
            else f"{self.severity.value}: {self.message}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "severity": self.severity.value,
            "file": self.file,
            "line": self.line,
            "message": self.message,
        }


def shortened(text: str) -> str:
    """`text` within MAX_MESSAGE_CHARS: each part between `: ` and ` (in ` of over MAX_PART_CHARS
    cut to its ends, then, if still too long, the text to its start and its end; every cut
    says how many characters it left out."""
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    parts = _PARTS.split(text)
    text = "".join(_cut(part, 300, 200) if len(part) > MAX_PART_CHARS else part for part in parts)
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return _cut(text, MAX_MESSAGE_CHARS // 2, MAX_MESSAGE_CHARS // 4)


def _cut(text: str, head: int, tail: int) -> str:
    return f"{text[:head]}…[{len(text) - head - tail:,} characters]…{text[-tail:]}"


def capped(findings: Sequence[Finding]) -> list[Finding]:
    """The first MAX_FINDINGS of `findings`, and one more saying that others were left out."""
    if len(findings) <= MAX_FINDINGS:
        return list(findings)
    # Not a count: the finders themselves may stop early (policyfiles.parse_lines).
    more = Finding.error("", 0, f"more findings not listed: at most {MAX_FINDINGS} are")
    return [*findings[:MAX_FINDINGS], more]


def listed(message: str, findings: Iterable[Finding]) -> str:
    """`message:` and then one indented `FILE:LINE: message` line per finding: an error's text."""
    return message + ":" + "".join(f"\n  {finding}" for finding in findings)


def model_line(model_text: str, key: str) -> int:
    """The line of `key = ...` in model.conf (0 when absent)."""
    pattern = re.compile(rf"\s*{re.escape(key)}\s*=")
    for number, raw in enumerate(model_text.splitlines(), start=1):
        if pattern.match(raw):
            return number
    return 0
