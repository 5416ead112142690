"""`authz policy diff` reports: text for people (grouped by role, then by enforce context), JSON,
Markdown for a pull request."""

from __future__ import annotations

from typing import Any

from authz.policy.impact import Change, ContextImpact, Impact, PrincipalImpact
from authz.policy.impacttext import TextChange

_MARK = {"gains": "+", "loses": "-", "condition": "~"}
_TITLE = {"role": "role", "permission": "permission", "everyone": "everyone (any signed-in user)"}


def _request(change: Change) -> str:
    action = "any action" if change.action == "*" else change.action
    return f"{action} {change.resource} ({change.target})"


def _summary(change: Change) -> str:
    if change.kind == "condition":
        return f"condition changed: {_request(change)}"
    return f"{change.kind} {_request(change)}: {change.before.level} -> {change.after.level}"


def _condition_lines(change: Change) -> list[str]:
    removed = sorted(change.before.conditions - change.after.conditions)
    added = sorted(change.after.conditions - change.before.conditions)
    return [f"- {effect} if {text}" for effect, text in removed] + [
        f"+ {effect} if {text}" for effect, text in added
    ]


def _heading(impact: PrincipalImpact) -> str:
    return _TITLE[impact.kind] if impact.kind == "everyone" else f"{impact.kind} {impact.name}"


def _no_effect(impact: Impact) -> list[TextChange]:
    return [block for block in impact.text if not block.effect]


def _where(block: TextChange) -> str:
    what = "comment" if block.comments_only else "text"
    return f"{block.file}:{block.line}: {what} changed, access did not"


def _context_title(context: ContextImpact) -> str:
    n = context.name
    title = f"enforce context {n} (r{n}, p{n}, e{n}, m{n})"
    if context.only_in == "new":
        return f"{title}: only in the new version (a request naming it was refused before)"
    if context.only_in == "old":
        return f"{title}: only in the old version (a request naming it is refused now)"
    return title


def _principals_text(
    principals: tuple[PrincipalImpact, ...], unchanged: tuple[str, ...], indent: str
) -> list[str]:
    out: list[str] = []
    for principal in sorted(principals, key=_order):
        out.append(indent + _heading(principal))
        for change in principal.changes:
            because = f"  [{', '.join(change.because)}]" if change.because else ""
            out.append(f"{indent}  {_MARK[change.kind]} {_summary(change)}{because}")
            if change.kind == "condition":
                out += [f"{indent}      {line}" for line in _condition_lines(change)]
    if unchanged:
        out.append(f"{indent}unchanged: {', '.join(unchanged)}")
    return out


def render_text(impact: Impact) -> str:
    """The report for people: each role, permission and everyone with its changes (the model's
    r, p, e, m, then each enforce context's section set), then the lines without effect."""
    versions = f"{impact.old} (version {impact.old_version}) -> {impact.new} (version {impact.new_version})"
    out = [f"policy diff {versions}", *_principals_text(impact.principals, impact.unchanged, "")]
    for context in impact.contexts:
        out.append(_context_title(context))
        out += _principals_text(context.principals, context.unchanged, "  ")
    for block in _no_effect(impact):
        out.append(_where(block))
        out += [f"  - {text}" for _, text in block.old] + [f"  + {text}" for _, text in block.new]
    out.append(_verdict(impact))
    return "\n".join(out)


def _order(principal: PrincipalImpact) -> tuple[int, str]:
    return ({"role": 0, "permission": 1, "everyone": 2}[principal.kind], principal.name)


def _verdict(impact: Impact) -> str:
    changes = impact.changes
    gains = sum(c.kind == "gains" for c in changes)
    losses = sum(c.kind == "loses" for c in changes)
    conditions = sum(c.kind == "condition" for c in changes)
    if not changes:
        return "no change of access"
    return f"{gains} gain(s), {losses} loss(es), {conditions} changed condition(s)"


def as_json(impact: Impact) -> dict[str, Any]:
    """The JSON form; `principals` and `unchanged` are the model's r, p, e, m, `contexts` the rest."""
    return {
        "old": {"path": impact.old, "version": impact.old_version},
        "new": {"path": impact.new, "version": impact.new_version},
        "widens": impact.widens,
        "principals": _principals_json(impact.principals),
        "unchanged": list(impact.unchanged),
        "contexts": [
            {
                "enforce_context": c.name,
                "only_in": c.only_in or None,
                "principals": _principals_json(c.principals),
                "unchanged": list(c.unchanged),
            }
            for c in impact.contexts
        ],
        "no_effect": [
            {
                "file": b.file,
                "line": b.line,
                "comments_only": b.comments_only,
                "old": [text for _, text in b.old],
                "new": [text for _, text in b.new],
            }
            for b in _no_effect(impact)
        ],
    }


def _principals_json(principals: tuple[PrincipalImpact, ...]) -> list[dict[str, Any]]:
    return [
        {
            "name": p.name,
            "kind": p.kind,
            "changes": [
                {
                    "change": c.kind,
                    "resource": c.resource,
                    "action": c.action,
                    "target": c.target,
                    "before": c.before.level,
                    "after": c.after.level,
                    "conditions_removed": [list(x) for x in sorted(c.before.conditions - c.after.conditions)],
                    "conditions_added": [list(x) for x in sorted(c.after.conditions - c.before.conditions)],
                    "because": list(c.because),
                }
                for c in p.changes
            ],
        }
        for p in sorted(principals, key=_order)
    ]


def _conditions(found: frozenset[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"effect": effect, "condition": text} for effect, text in sorted(found)]


def render_markdown(impact: Impact) -> str:
    """A pull-request comment: a table per role or permission, then the lines without effect."""
    out = [
        "### Policy impact",
        "",
        f"`{impact.old}` ({impact.old_version}) → `{impact.new}` ({impact.new_version}): {_verdict(impact)}"
        + (" — **access widens**" if impact.widens else ""),
    ]
    out += _principals_markdown(impact.principals, impact.unchanged, "")
    for context in impact.contexts:
        if context.only_in:
            out += ["", f"{_context_title(context)}."]
        out += _principals_markdown(context.principals, context.unchanged, f"enforce context {context.name}")
    blocks = _no_effect(impact)
    if blocks:
        out += ["", "Changed without effect on access:", ""]
        out += [f"- {_code(_where(block))}" for block in blocks]
    return "\n".join(out) + "\n"


def _principals_markdown(
    principals: tuple[PrincipalImpact, ...], unchanged: tuple[str, ...], context: str
) -> list[str]:
    """A table per role or permission; `context` names the enforce context ("" the model's r, p, e, m)."""
    out: list[str] = []
    prefix = f"{context}: " if context else ""
    for principal in sorted(principals, key=_order):
        out += [
            "",
            f"#### {prefix}{_heading(principal)}",
            "",
            "| change | action | resource | before → after |",
        ]
        out.append("|---|---|---|---|")
        for c in principal.changes:
            levels = f"{c.before.level} → {c.after.level}"
            if c.kind == "condition":
                levels = "<br>".join(_code(line) for line in _condition_lines(c))
            action = "any" if c.action == "*" else c.action
            out.append(f"| {_MARK[c.kind]} {c.kind} | {_code(action)} | {_code(c.resource)} | {levels} |")
    if unchanged:
        where = f" in {context}" if context else ""
        out += ["", f"Unchanged{where}: " + ", ".join(_code(name) for name in unchanged)]
    return out


def _code(text: str) -> str:
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"
