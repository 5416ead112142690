"""What a policy test suite holds: its cases, their principals, resources and expected outcomes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authz.decision import Reason
from authz.principal import Principal


@dataclass(frozen=True)
class Expectation:
    """The expected outcome of one action; `reason` None means any reason."""

    allowed: bool
    reason: Reason | None = None

    @property
    def effect(self) -> str:
        """`allow` or `deny`."""
        return "allow" if self.allowed else "deny"


@dataclass(frozen=True)
class NamedPrincipal:
    """A suite principal: its name in the file and the principal its claims make."""

    name: str
    principal: Principal


@dataclass(frozen=True)
class NamedResource:
    """A suite resource: its name in the file, the resource string and its attributes."""

    name: str
    id: str
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One entry of `tests`: every principal x resource x action is one check."""

    name: str
    line: int
    principals: tuple[NamedPrincipal, ...]
    resources: tuple[NamedResource, ...]
    actions: tuple[tuple[str, Expectation], ...]
    context: Mapping[str, Any] = field(default_factory=dict)
    # Casbin's enforce context the checks are decided with ("2": r2, p2, e2, m2).
    enforce_context: str = ""


@dataclass(frozen=True)
class Suite:
    """One suite file; `file` is relative to the policy directory (`tests/x_test.yaml`)."""

    file: str
    name: str
    cases: tuple[Case, ...]
