"""Near misses: allow rules that would have matched had the principal held their subject.

When a request that should be allowed finds no rule, the usual cause is a name: the
policy line says `read:order`, the token carries `read:orders`. Asking the engine again
with each allow-rule subject the principal lacks, one at a time, finds exactly the lines
that differ from the request only in that name, and names their file and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from authz.engine import Snapshot
from authz.engine.effects import ALLOW
from authz.principal import Principal


@dataclass(frozen=True, slots=True)
class NearMiss:
    """`rule` (`FILE:LINE: p, ...`) would allow if the principal held `needs`."""

    rule: str
    needs: str

    def render(self, who: str = "the principal") -> str:
        """`FILE:LINE: p, ... would allow if WHO held 'NAME'`."""
        return f"{self.rule}  would allow if {who} held {self.needs!r}"


def near_misses(
    snapshot: Snapshot,
    principal: Principal,
    resource: str,
    action: str,
    attributes: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
) -> list[NearMiss]:
    """Allow rules that match this request except for a subject the principal does not hold."""
    sub = snapshot.model.field_index("sub")
    if sub is None:
        return []
    held = {principal.id, *principal.grants, "*"}
    allows = {r.line.location: r.line.values[sub] for r in snapshot.rules if r.effect == ALLOW}
    found: list[NearMiss] = []
    for name in sorted(set(allows.values()) - held):
        granted = replace(principal, permissions=(*principal.permissions, name))
        decision = snapshot.decide(granted, resource, action, attributes, context, explain=True)
        if decision.allowed:
            found.extend(NearMiss(rule, name) for rule in decision.matched_rules if allows.get(rule) == name)
    return found
