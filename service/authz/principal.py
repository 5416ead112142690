"""Verified Auth0 access-token claims turned into the principal that policies see."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

MACHINE_GRANT_TYPE = "client-credentials"
# The numbers standing for principals' decision facts (`Principal.facts_id`), by facts; started
# over when full. A number is never reused, so a start-over costs cache misses, never a wrong hit.
MAX_FACTS_IDS = 4096
_facts_ids: dict[tuple[Any, ...], int] = {}
_next_facts_id = itertools.count()


@dataclass(frozen=True)
class Principal:
    """Who is asking: the token's subject and what the token grants.

    `grants` are the names that act as Casbin role links for this principal: a user
    token's permissions and roles; a machine token's scopes as well (Auth0 puts an M2M
    application's granted permissions in `scope`).
    """

    id: str
    permissions: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    org_id: str | None = None
    client_id: str = ""
    machine: bool = False
    expires_at: float | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def grants(self) -> frozenset[str]:
        """Every name this principal holds directly (before the policy's `g` lines)."""
        names = set(self.permissions) | set(self.roles)
        if self.machine:
            names |= set(self.scopes)
        return frozenset(names)

    @cached_property
    def facts_id(self) -> int:
        """A number standing for everything a cacheable decision reads of this principal.

        Principals with equal facts (id, grants, organisation, client, machine) share it while
        the table of numbers holds them, so the decision cache keys on a small int instead of
        hashing the facts' tuples on every lookup. Computed once per principal, which the
        token cache keeps as long as its token.
        """
        facts = (
            self.id,
            self.permissions,
            self.roles,
            self.scopes,
            self.org_id,
            self.client_id,
            self.machine,
        )
        found = _facts_ids.get(facts)
        if found is None:
            if len(_facts_ids) >= MAX_FACTS_IDS:
                _facts_ids.clear()
            found = _facts_ids.setdefault(facts, next(_next_facts_id))
        return found


def _string_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list | tuple):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def numeric_date(value: Any) -> float | None:
    """A JWT NumericDate as seconds: a finite number a float can hold, else None.

    A 400-digit integer overflows float() and NaN or 1e999 never compare as expired, so
    neither may pass as a time.
    """
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


def principal_from_claims(claims: Mapping[str, Any], roles_claim: str | None = None) -> Principal:
    """Build a principal from verified claims (or from a what-if claims file)."""
    scope = claims.get("scope", "")
    scopes = tuple(scope.split()) if isinstance(scope, str) else _string_list(scope)
    client_id = claims.get("azp") or claims.get("client_id") or ""
    org = claims.get("org_id")
    return Principal(
        id=str(claims.get("sub", "")),
        permissions=_string_list(claims.get("permissions")),
        roles=_string_list(claims.get(roles_claim)) if roles_claim else (),
        scopes=scopes,
        org_id=org if isinstance(org, str) and org else None,
        client_id=client_id if isinstance(client_id, str) else "",
        machine=claims.get("gty") == MACHINE_GRANT_TYPE,
        expires_at=numeric_date(claims.get("exp")),
        claims=dict(claims),
    )
