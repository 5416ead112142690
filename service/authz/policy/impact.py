"""`authz policy diff`: the impact of a policy change, found by evaluating both snapshots.

The principals are every role and permission either snapshot names (a token granting only that
name), and "everyone": a signed-in user with no grants, whom the `*` lines serve. The requests
are the (resource, action) of every `p` line of either snapshot: a route pattern, UI element
id or other resource, with the action the line names (`*` as the action stands for "any").

Each principal's access to each request is evaluated in both snapshots with the engine's own
compiled matchers and no attributes: a line that matches without attributes counts always; one
whose condition needs attributes the request did not send counts under that condition. The
access is `allowed` (the engine allows it as it is), `conditional` (an allow line can match
and no deny line always does) or `denied`. A change of level is a gain or a loss; the same
level with other conditions is a changed condition. A principal's changes that everyone shares
are reported once, under everyone. Lines whose text changed (comments included) are listed,
and those no change of access points to are reported as having no effect.

With Casbin's enforce contexts (`r2`, `p2`, `e2`, `m2` ...), each section set is compared on
its own: its principals and requests come from its own rule lines (`p2` read with `p2`'s
fields), and a request is evaluated with its snapshot. A context one version's model lacks
refuses every request there (`INVALID_ARGUMENT`), so that side denies everything. Compared
with some sections only, a changed line of another section is never called without effect.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from authz.engine import Snapshot, Subject, arith
from authz.engine.bindings import Attributes, Resource
from authz.engine.effects import ALLOW
from authz.engine.matchercheck import SUBJECT
from authz.engine.policyfiles import PolicyLine, PolicySource
from authz.errors import InvalidArgument
from authz.policy.impacttext import TextChange, changed_blocks
from authz.principal import Principal

LEVELS = ("denied", "conditional", "allowed")
EVERYONE = "*"
MAX_PAIRS = 250_000  # principals x requests, each evaluated in both snapshots
_DIFF_ID = "authz-policy-diff"


@dataclass(frozen=True, slots=True)
class Access:
    """One principal's access to one request in one snapshot."""

    level: str
    conditions: frozenset[tuple[str, str]]  # (allow | deny, condition) of lines that match only under it
    lines: frozenset[str]  # FILE:LINE of every line that matched, always or under a condition


@dataclass(frozen=True, slots=True)
class Change:
    """A request whose access differs between the snapshots."""

    resource: str
    action: str
    kind: str  # "gains" | "loses" | "condition"
    before: Access
    after: Access
    because: tuple[str, ...] = ()  # the changed lines that matched: "old FILE:LINE" / "new FILE:LINE"

    @property
    def target(self) -> str:
        """`route`, `UI element` or `resource`."""
        if self.resource.startswith("/"):
            return "route"
        return "UI element" if self.resource.startswith("ui:") else "resource"


@dataclass(frozen=True, slots=True)
class PrincipalImpact:
    """The changes of one role, permission, or everyone."""

    name: str
    kind: str  # "role" | "permission" | "everyone"
    changes: tuple[Change, ...]


@dataclass(frozen=True, slots=True)
class ContextImpact:
    """The changes of one enforce context ("2": requests decided with r2, p2, e2 and m2)."""

    name: str
    principals: tuple[PrincipalImpact, ...]
    unchanged: tuple[str, ...]
    only_in: str = ""  # "old" | "new": the other version's model lacks the context


@dataclass(frozen=True, slots=True)
class Impact:
    """The whole report: the model's r, p, e, m in `principals`, its enforce contexts in `contexts`."""

    old: str
    new: str
    old_version: str
    new_version: str
    principals: tuple[PrincipalImpact, ...]
    unchanged: tuple[str, ...]  # the roles and permissions with no change
    text: tuple[TextChange, ...] = field(default=())
    contexts: tuple[ContextImpact, ...] = field(default=())

    @property
    def changes(self) -> list[Change]:
        """Every change, of every section set compared."""
        groups = [self.principals, *(c.principals for c in self.contexts)]
        return [c for group in groups for p in group for c in p.changes]

    @property
    def widens(self) -> bool:
        """Whether any principal gains access."""
        return any(c.kind == "gains" for c in self.changes)


def compare(
    old: Snapshot,
    new: Snapshot,
    old_source: PolicySource,
    new_source: PolicySource,
    old_name: str = "old",
    new_name: str = "new",
    contexts: Sequence[str] | None = None,
) -> Impact:
    """Evaluate both snapshots for every principal and request; see the module doc.

    `contexts` are the section sets compared ("" the model's r, p, e, m; "2" r2, p2, e2, m2);
    None compares every one either version's model has. One neither has is InvalidArgument.
    """
    known = ["", *sorted(old.sections.keys() | new.sections.keys(), key=int)]
    chosen = known if contexts is None else list(dict.fromkeys(contexts))
    for name in chosen:
        if name not in known:
            raise InvalidArgument(
                f"enforce_context {name!r} is a section set of neither version "
                f"(known: {', '.join(map(repr, known))})"
            )
    blocks = changed_blocks(old_source, new_source)
    changed = {where for block in blocks for where, _ in block.locations()}
    planned = []
    for name in chosen:
        sides = {
            side: found
            for side, found in (("old", _section(old, name)), ("new", _section(new, name)))
            if found is not None
        }
        planned.append((name, sides, *_principals_and_requests(list(sides.values()))))
    pairs = sum(len(principals) * len(requests) for *_, principals, requests in planned)
    if pairs > MAX_PAIRS:
        raise InvalidArgument(
            f"{pairs} principal x request pairs is more than policy diff compares ({MAX_PAIRS}); "
            "--enforce-context compares one section set"
        )
    compared: list[tuple[ContextImpact, dict[str, Snapshot]]] = []
    for name, sides, principals, requests in planned:
        impacts, unchanged = _compare_section(
            sides.get("old"), sides.get("new"), principals, requests, changed
        )
        only = next(iter(sides)) if len(sides) == 1 else ""
        compared.append((ContextImpact(name, tuple(impacts), tuple(unchanged), only), sides))
    # A line of a section set not compared may well change access: never call it without effect.
    skipped = {f"p{name}" for name in known if name not in chosen}
    text = tuple(_with_effect(block, compared, skipped) for block in blocks)
    default = next((c for c, _ in compared if not c.name), ContextImpact("", (), ()))
    return Impact(
        old_name,
        new_name,
        old.version,
        new.version,
        default.principals,
        default.unchanged,
        text,
        tuple(c for c, _ in compared if c.name),
    )


def _section(snapshot: Snapshot, name: str) -> Snapshot | None:
    return snapshot if not name else snapshot.sections.get(name)


def _principals_and_requests(
    present: list[Snapshot],
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """One section set's (name, kind) principals and (resource, action) requests, both versions'."""
    roles, permissions = _classify(present)
    requests = sorted(set().union(*(_requests(s) for s in present)))
    principals = [
        (EVERYONE, "everyone"),
        *((r, "role") for r in roles),
        *((p, "permission") for p in permissions),
    ]
    return principals, requests


def _compare_section(
    old: Snapshot | None,
    new: Snapshot | None,
    principals: list[tuple[str, str]],
    requests: list[tuple[str, str]],
    changed: set[str],
) -> tuple[list[PrincipalImpact], list[str]]:
    """(the principals' changes, the unchanged roles and permissions) of one section set."""
    shared: set[tuple[str, str, str]] = set()
    impacts: list[PrincipalImpact] = []
    unchanged: list[str] = []
    for name, kind in principals:
        changes = _changes(old, new, name, requests, changed)
        if kind == "everyone":
            shared = {(c.resource, c.action, c.kind) for c in changes}
        else:
            changes = [c for c in changes if (c.resource, c.action, c.kind) not in shared]
        if changes:
            impacts.append(PrincipalImpact(name, kind, tuple(changes)))
        elif kind != "everyone":
            unchanged.append(name)
    return impacts, unchanged


def _rule_lines(snapshot: Snapshot) -> list[PolicyLine]:
    """The section set's own rule lines (`p`, or `p2` ... in an enforce context's snapshot)."""
    return [rule.line for rule in snapshot.rules]


def _classify(snapshots: Iterable[Snapshot]) -> tuple[list[str], list[str]]:
    """(roles, permissions): g left sides are roles; other p subjects and g right sides permissions."""
    roles: set[str] = set()
    names: set[str] = set()
    for snapshot in snapshots:
        sub = snapshot.model.field_index("sub")
        names.update(ln.values[sub] for ln in _rule_lines(snapshot) if sub is not None)
        for line in snapshot.lines:
            if line.ptype == "g" and len(line.values) >= 2:
                roles.add(line.values[0])
                names.add(line.values[1])
    usable = {n for n in roles | names if n and n != EVERYONE and "|" not in n}  # user ids are not roles
    return sorted(roles & usable), sorted(usable - roles)


def _requests(snapshot: Snapshot) -> set[tuple[str, str]]:
    model = snapshot.model
    obj, act = model.field_index("obj"), model.field_index("act")
    if obj is not None and act is None and "r_act" not in (model.bind or model.request):
        # A section set whose requests have no action (r2 = sub, obj): its lines allow any.
        return {(ln.values[obj], EVERYONE) for ln in _rule_lines(snapshot)}
    if obj is None or act is None:
        raise InvalidArgument("policy diff needs a model whose p lines have obj and act fields")
    return {(ln.values[obj], ln.values[act]) for ln in _rule_lines(snapshot)}


_REFUSED = Access("denied", frozenset(), frozenset())  # a section set the version lacks: refused


def _changes(
    old: Snapshot | None,
    new: Snapshot | None,
    name: str,
    requests: list[tuple[str, str]],
    changed: set[str],
) -> list[Change]:
    principal = Principal(id=_DIFF_ID, permissions=() if name == EVERYONE else (name,))
    found: list[Change] = []
    old_subject, new_subject = Subject(principal), Subject(principal)
    for resource, action in requests:
        before = access(old, principal, old_subject, resource, action) if old else _REFUSED
        after = access(new, principal, new_subject, resource, action) if new else _REFUSED
        rank = LEVELS.index(after.level) - LEVELS.index(before.level)
        because = tuple(
            sorted(f"old {loc}" for loc in before.lines if f"old {loc}" in changed)
            + sorted(f"new {loc}" for loc in after.lines if f"new {loc}" in changed)
        )
        if rank:
            found.append(Change(resource, action, "gains" if rank > 0 else "loses", before, after, because))
        elif before.conditions != after.conditions and before.level != "denied":
            found.append(Change(resource, action, "condition", before, after, because))
    return found


def access(snapshot: Snapshot, principal: Principal, subject: Subject, resource: str, action: str) -> Access:
    """Evaluate every candidate line as `Snapshot.decide` binds a request, without attributes."""
    decision = snapshot.decide(principal, resource, action, subject=subject)
    bound = {
        SUBJECT: subject,
        "r_obj": Resource(resource, {}),
        "r_act": action,
        "r_dom": "",
        "r_ctx": Attributes({}),
    }
    rvals = snapshot.model.request_values(bound)
    picked = snapshot.index.candidates(snapshot.model.aliased(bound)) if snapshot.index is not None else None
    rules = snapshot.rules if picked is None else [snapshot.rules[i] for i in picked]
    lines: set[str] = set()
    conditions: set[tuple[str, str]] = set()
    allow = deny_always = False
    for rule in rules:
        try:
            # Each line within a decision's budget of work, as `Snapshot.decide` runs it: a
            # proposed policy is text from a change under review.
            with arith.Budget():
                always = rule.fn(*rvals, *rule.line.values) is True
        except Exception:  # AttributeMissing, or another failure: either way it depends on the request
            always = False
            conditions.add(
                ("allow" if rule.effect == ALLOW else "deny", _condition(snapshot, rule.line.values))
            )
        else:
            if not always:
                continue
        lines.add(rule.line.location.split(": ", 1)[0])
        allow |= rule.effect == ALLOW
        deny_always |= always and rule.effect != ALLOW
    level = "allowed" if decision.allowed else "conditional" if allow and not deny_always else "denied"
    return Access(level, frozenset(conditions), frozenset(lines))


def _condition(snapshot: Snapshot, values: tuple[str, ...]) -> str:
    """The values of a line other than sub, obj, act and eft: its condition(s)."""
    skip = {snapshot.model.field_index(f) for f in ("sub", "obj", "act", "eft")}
    return ", ".join(v for i, v in enumerate(values) if i not in skip)


def _with_effect(
    block: TextChange,
    compared: list[tuple[ContextImpact, dict[str, Snapshot]]],
    skipped: set[str],
) -> TextChange:
    """The block with `effect` set: a change of access cites one of its lines, or one of its g lines
    links a role to a name through which a changed access of that role matched, or one of its
    lines is a rule of a section set not compared (`skipped` p-types)."""
    cited = {
        cause for context, _ in compared for p in context.principals for c in p.changes for cause in c.because
    }
    effect = any(
        where in cited
        or text.split(",", 1)[0].strip() in skipped
        or any(
            _g_effect(where.split(" ", 1)[0], text, list(context.principals), sides)
            for context, sides in compared
        )
        for where, text in block.locations()
    )
    return TextChange(block.file, block.old, block.new, effect, block.comments_only)


def _g_effect(side: str, text: str, impacts: list[PrincipalImpact], snapshots: dict[str, Snapshot]) -> bool:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) < 3 or parts[0] != "g":
        return False
    if "|" in parts[1]:
        return True  # a user's assignment: users are not compared, so it is never called without effect
    snapshot = snapshots.get(side)
    if snapshot is None:
        return False
    graph = snapshot.graphs.get("g")
    reach = graph.closure(parts[2]) if graph else frozenset((parts[2],))
    sub = snapshot.model.field_index("sub")
    subjects = {
        ln.location.split(": ", 1)[0]: ln.values[sub] for ln in _rule_lines(snapshot) if sub is not None
    }
    return any(
        subjects.get(location) in reach
        for p in impacts
        if p.name == parts[1]
        for c in p.changes
        for location in (c.before if side == "old" else c.after).lines
    )
