"""Validation findings as data: severity, file, line and message."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from authz.engine.policyfiles import MODEL_FILE

# Engine findings read `FILE:LINE: message` or `model.conf: message`.
_LOCATED = re.compile(r"(?P<file>[^:\s][^:]*):(?P<line>\d+): (?P<message>.*)", re.DOTALL)
_MODEL = re.compile(rf"{re.escape(MODEL_FILE)}: (?P<message>.*)", re.DOTALL)
# Which model.conf definition a model finding is about, by the words the engine uses.
_MODEL_KEYS = (("matcher", "m"), ("eval(", "m"), ("request field", "r"), ("policy effect", "e"))


class Severity(enum.Enum):
    """An error stops the policy from loading; a warning is a rule that cannot work as written."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem, located: `file` is relative to the policy directory, `line` is 0 when unknown."""

    severity: Severity
    file: str
    line: int
    message: str

    @property
    def location(self) -> str:
        """`FILE:LINE` (or just `FILE` when the line is unknown)."""
        return f"{self.file}:{self.line}" if self.line else self.file

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


def model_line(model_text: str, key: str) -> int:
    """The line of `key = ...` in model.conf (0 when absent)."""
    pattern = re.compile(rf"\s*{re.escape(key)}\s*=")
    for number, raw in enumerate(model_text.splitlines(), start=1):
        if pattern.match(raw):
            return number
    return 0


def parse_finding(text: str, model_text: str = "", severity: Severity = Severity.ERROR) -> Finding:
    """Turn an engine finding string into a Finding, locating model.conf findings when it can."""
    model = _MODEL.fullmatch(text)
    if model:
        message = model.group("message")
        key = next((k for words, k in _MODEL_KEYS if words in message), None)
        line = model_line(model_text, key) if key and model_text else 0
        return Finding(severity, MODEL_FILE, line, message)
    located = _LOCATED.fullmatch(text)
    if located:
        return Finding(severity, located.group("file"), int(located.group("line")), located.group("message"))
    return Finding(severity, "", 0, text)
