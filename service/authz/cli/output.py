"""How the CLI prints one decision, the same for `check` and `policy explain`."""

from __future__ import annotations

from collections.abc import Sequence


def print_decision(
    action: str,
    resource: str,
    allowed: bool,
    reason: str,
    details: Sequence[tuple[str, str]],
    rules: Sequence[str],
) -> None:
    """`ALLOW  GET /x  (REASON_ALLOWED)`, then `label: value` lines, then the deciding rules."""
    print(f"{'ALLOW' if allowed else 'DENY'}  {action} {resource}  ({reason})")
    for label, value in details:
        print(f"  {label + ':':<9} {value}")
    if rules:
        print("  rules:")
        for rule in rules:
            print(f"    {rule}")
