"""The bench's output: tables printed as each section finishes, targets, and results.json."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def fmt(value: Any) -> str:
    """A table cell: numbers rounded to a readable precision."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Right-aligned columns (the first left-aligned), one header rule."""
    cells = [headers, *[[fmt(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *(line(r) for r in cells[1:])])


@dataclass
class Target:
    """A figure the issue sets a bar for: `value` compared with `bound` (`at_least` or at most)."""

    name: str
    value: float
    bound: float
    at_least: bool

    @property
    def verdict(self) -> str:
        if math.isnan(self.value):
            return "n/a"
        ok = self.value >= self.bound if self.at_least else self.value <= self.bound
        return "PASS" if ok else "FAIL"


@dataclass
class Report:
    """Collects sections and targets; prints as it goes."""

    machine: dict[str, Any]
    options: dict[str, Any]
    sections: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def section(self, name: str, title: str, headers: list[str], rows: list[list[Any]], data: Any) -> None:
        """Print one section's table now and keep its data for results.json."""
        self.sections[name] = data
        print(f"\n## {title}\n\n{table(headers, rows)}", flush=True)

    def note(self, text: str) -> None:
        """A line under the current section."""
        print(text, flush=True)

    def warn(self, text: str) -> None:
        """A WARNING line, kept in results.json too."""
        self.warnings.append(text)
        print(f"WARNING: {text}", file=sys.stdout, flush=True)

    def target(self, name: str, value: float, bound: float, *, at_least: bool) -> None:
        """Record a target figure (a ratio from this run)."""
        self.targets.append(Target(name, value, bound, at_least))

    def print_targets(self) -> None:
        """The closing PASS/FAIL table (none when the chosen sections set no target)."""
        if not self.targets:
            return
        rows = [
            [t.name, t.value, (">= " if t.at_least else "<= ") + fmt(t.bound), t.verdict]
            for t in self.targets
        ]
        print(f"\n## Targets\n\n{table(['target', 'measured', 'bar', 'verdict'], rows)}", flush=True)

    def write(self, path: Path) -> None:
        """results.json: machine, options, every section's data, targets, warnings."""
        data = {
            "machine": self.machine,
            "options": self.options,
            "sections": self.sections,
            "targets": [{**asdict(t), "verdict": t.verdict} for t in self.targets],
            "warnings": self.warnings,
        }
        path.write_text(json.dumps(_strict(data), indent=2) + "\n", encoding="utf-8")


def _strict(value: Any) -> Any:
    # JSON has no NaN: a figure that could not be measured is null.
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value
