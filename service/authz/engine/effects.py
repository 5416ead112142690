"""Policy effects: how the lines a request matched become one decision.

`Snapshot.decide` streams the matching lines (`Hit`s, in policy order) into the model's
effect; each effect stops as soon as its answer cannot change, as Casbin's effectors do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from authz.decision import Decision, Reason
from authz.engine.model import Effect
from authz.engine.policyfiles import PolicyLine

ALLOW, DENY, INDETERMINATE = 1, 2, 0


class Rule(NamedTuple):
    """A compiled `p` line: its values, its effect and its matcher function."""

    line: PolicyLine
    effect: int
    fn: Callable[..., Any]


class Hit(NamedTuple):
    # A NamedTuple: a request with conditions makes dozens, and a frozen dataclass costs
    # several times as much to build.
    rule: Rule
    missing: str | None = None  # set when the condition is unknown


class EvalFailure(Exception):
    """A policy line's matcher raised: the decision denies with a POLICY_ERROR naming the line."""

    def __init__(self, location: str, message: str) -> None:
        self.location = location
        super().__init__(f"policy error at {location}: {message}")


def truth(result: Any, location: str) -> bool:
    """A matcher result as pycasbin reads it: a bool, or a float compared with zero; anything
    else is an EvalFailure at `location`."""
    if isinstance(result, bool):
        return result
    if isinstance(result, float):
        return result != 0
    raise EvalFailure(location, f"matcher result should be bool, got {type(result).__name__}")


def _missing_note(unknown: list[Hit]) -> str:
    if not unknown:
        return ""
    names = sorted({hit.missing or "" for hit in unknown})
    return f"; not evaluated because the request did not send {', '.join(names)}"


def _allowed(hits: list[Hit]) -> Decision:
    rules = tuple(hit.rule.line.location for hit in hits)
    return Decision(True, Reason.ALLOWED, f"allowed by {rules[0]}" if rules else "allowed", rules)


def _denied(hits: list[Hit]) -> Decision:
    rules = tuple(hit.rule.line.location for hit in hits)
    return Decision(False, Reason.EXPLICIT_DENY, f"denied by {rules[0]}", rules)


def _missing(hits: list[Hit]) -> Decision:
    first = hits[0]
    rules = tuple(hit.rule.line.location for hit in hits)
    return Decision(
        False,
        Reason.ATTRIBUTE_MISSING,
        f"attribute {first.missing} was not sent and deny rule {rules[0]} depends on it",
        rules,
    )


_NO_MATCH = "no policy rule allows this request"
# Most denials: one answer shared by all of them rather than one built per decision.
_NOTHING_MATCHED = Decision(False, Reason.NO_MATCHING_RULE, _NO_MATCH)


def _no_match(unknown: list[Hit]) -> Decision:
    if not unknown:
        return _NOTHING_MATCHED
    return Decision(False, Reason.NO_MATCHING_RULE, _NO_MATCH + _missing_note(unknown))


def _allow_override(hits: Iterator[Hit], explain: bool) -> Decision:
    allows: list[Hit] = []
    unknown: list[Hit] = []
    for hit in hits:
        if hit.rule.effect != ALLOW:
            continue
        if hit.missing:
            unknown.append(hit)
            continue
        allows.append(hit)
        if not explain:
            break
    return _allowed(allows) if allows else _no_match(unknown)


def _scan_denies(hits: Iterator[Hit], explain: bool) -> tuple[list[Hit], list[Hit], list[Hit], list[Hit]]:
    allows: list[Hit] = []
    denies: list[Hit] = []
    unknown_denies: list[Hit] = []
    unknown_allows: list[Hit] = []
    for hit in hits:
        if hit.rule.effect == DENY:
            if hit.missing:
                unknown_denies.append(hit)
            else:
                denies.append(hit)
                if not explain:
                    break
        elif hit.rule.effect == ALLOW:
            if hit.missing:
                unknown_allows.append(hit)
            elif explain or not allows:
                # Without explain only the first allow is named (the message's); the scan goes
                # on for denies, and naming every allow cost a location string each.
                allows.append(hit)
    return allows, denies, unknown_denies, unknown_allows


def _deny_override(hits: Iterator[Hit], explain: bool) -> Decision:
    allows, denies, unknown_denies, _ = _scan_denies(hits, explain)
    if denies:
        return _denied(denies)
    if unknown_denies:
        return _missing(unknown_denies)
    return _allowed(allows)


def _allow_and_deny(hits: Iterator[Hit], explain: bool) -> Decision:
    allows, denies, unknown_denies, unknown_allows = _scan_denies(hits, explain)
    if denies:
        return _denied(denies)
    if unknown_denies:
        return _missing(unknown_denies)
    return _allowed(allows) if allows else _no_match(unknown_allows)


def _priority(hits: Iterator[Hit], explain: bool) -> Decision:
    unknown: list[Hit] = []
    for hit in hits:
        if hit.rule.effect == INDETERMINATE:
            continue
        if hit.missing:
            if hit.rule.effect == DENY:
                # The deny might have matched: fail closed rather than fall through.
                return _missing([hit])
            unknown.append(hit)
            continue
        return _allowed([hit]) if hit.rule.effect == ALLOW else _denied([hit])
    return _no_match(unknown)


EFFECTS: dict[Effect, Callable[[Iterator[Hit], bool], Decision]] = {
    Effect.ALLOW_OVERRIDE: _allow_override,
    Effect.DENY_OVERRIDE: _deny_override,
    Effect.ALLOW_AND_DENY: _allow_and_deny,
    Effect.PRIORITY: _priority,
    Effect.SUBJECT_PRIORITY: _priority,
}


_EFFECT_NAMES = {"allow": ALLOW, "deny": DENY}


def effect_of(values: tuple[str, ...], eft_index: int | None) -> int:
    """A line's effect: its `eft` value (allow, deny, or anything else: indeterminate)."""
    if eft_index is None:
        return ALLOW
    return _EFFECT_NAMES.get(values[eft_index], INDETERMINATE)
