"""Listing a policy directory's rules, filtered by glob patterns on subject, resource and action.

The reading side of `authz policy list`; changes go through `authz.policy.edit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path

from authz.engine.contexts import rule_models
from authz.engine.model import ModelSpec
from authz.engine.policyfiles import PolicyLine, parse_lines, read_policy_dir


def list_rules(
    directory: Path,
    *,
    subject: str | None = None,
    resource: str | None = None,
    action: str | None = None,
) -> list[PolicyLine]:
    """The policy lines, in file order, filtered by glob patterns (`fnmatch`) on their fields.

    `p` lines are matched on the model's `sub`, `obj` and `act` fields, an enforce context's
    `p2` lines on `p2`'s (a line whose definition has no `act` applies to every action, so an
    action filter keeps it); role lines match a subject on either name and never match a
    resource or action filter.
    """
    source = read_policy_dir(directory)
    models = rule_models(source.model_text)
    positions = {ptype: _field_positions(spec) for ptype, spec in models.items()}
    roles = models["p"].roles
    lines, _ = parse_lines(source)

    def keep(line: PolicyLine) -> bool:
        if line.ptype in roles:
            names = line.values[:2]
            return resource is None and action is None and (subject is None or _any_match(names, subject))
        # A p-type of no section set (read by nothing) is shown as a `p` line would be.
        at = positions.get(line.ptype, positions["p"])
        for name, pattern in (("sub", subject), ("obj", resource), ("act", action)):
            where = at[name]
            if pattern is None or (where is None and name == "act"):
                continue
            value = line.values[where] if where is not None and where < len(line.values) else None
            if not _any_match([value], pattern):
                return False
        return True

    return [line for line in lines if keep(line)]


# Policy fields that are never the subject, resource or action.
_NAMED = frozenset({"p_sub", "p_obj", "p_act", "p_eft", "p_priority"})


def _field_positions(model: ModelSpec) -> dict[str, int | None]:
    """Where `sub`, `obj` and `act` are in a policy definition's lines (None: it has no such field).

    A name the definition lacks is read by position, as in a model with names of its own
    (`p = user, thing, action`), unless that position holds another known field (`p2 = obj,
    sub, eft` has no action).
    """
    found: dict[str, int | None] = {}
    for position, name in enumerate(("sub", "obj", "act")):
        at = model.field_index(name)
        if at is None and position < len(model.policy) and model.policy[position] not in _NAMED:
            at = position
        found[name] = at
    return found


def _any_match(values: Sequence[str | None], pattern: str) -> bool:
    return any(value is not None and fnmatchcase(value, pattern) for value in values)
