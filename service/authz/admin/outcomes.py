"""What the admin service's calls take and answer, transport-free (`admin/service.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from authz.engine.policyfiles import PolicyLine
from authz.live import RejectedReload
from authz.policy.ruletext import Rule
from authz.sources import SourceState


@dataclass(frozen=True)
class PolicyView:
    """The serving policy, and why the directory's current state is not serving (if it is not)."""

    version: str
    model_text: str
    lines: list[PolicyLine]
    rejected: RejectedReload | None
    source: SourceState | None = None
    start: int = 0  # the line a page starts from (its token's)


@dataclass(frozen=True)
class RuleEdit:
    """What an AddRules / RemoveRules asks for; read only once its caller may write (`PolicyAdmin`)."""

    file: str
    rules: list[Rule]
    expected_version: str
    message: str = ""


@dataclass(frozen=True)
class Edited:
    """A committed edit's version; `reload_error` when the reload after it failed (not serving yet)."""

    version: str
    reload_error: RejectedReload | None = None


@dataclass(frozen=True)
class ReloadOutcome:
    """What a reload did: `ok` when the directory's policy serves, `changed` when a new one went live."""

    ok: bool
    changed: bool
    version: str
    rejected: RejectedReload | None
