"""A suite file's document read against the schema, every mistake a located finding.

The schema follows Cerbos test suites::

    name: Orders API                      # required
    description: ...                      # optional
    roles_claim: https://...              # optional: where `roles` go (default: the demo's claim)
    principals:                           # named principals, given as token claims (no signing)
      alice:
        sub: auth0|alice                  # default: the principal's name
        permissions: [read:orders]
        roles: [admin]
        org_id: org_1
        scope: openid profile             # a string or a list
        machine: false                    # true: a client-credentials token
        claims: {email: a@example.com}    # any other claims, as in a token
    resources:
      order42:
        id: /api/orders/42                # required: the resource string
        attributes: {owner: alice, status: draft}
    tests:
      - name: owners edit their drafts    # required, unique in the file
        principal: alice                  # or principals: [alice, bob]
        resource: order42                 # or resources: [...]
        actions: {PUT: allow, DELETE: deny}   # or {DELETE: {effect: deny, reason: REASON_...}}
        reason: REASON_EXPLICIT_DENY      # optional: the reason every action with that outcome gets
        context: {ip: 10.0.0.1}           # optional request context
        enforce_context: "2"              # optional: decided with r2, p2, e2, m2 (a number is fine)

A principal's claims make it as a token's would (`principal_from_claims`); a case's
attributes and context keep a request's bounds (`attrlimits`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from authz.attrlimits import check_attributes
from authz.decision import Reason
from authz.devmode import DEV_ROLES_CLAIM
from authz.errors import InvalidArgument
from authz.findings import Finding
from authz.policy.suitecases import Case, Expectation, NamedPrincipal, NamedResource, Suite
from authz.policy.suiteyaml import line_of
from authz.principal import MACHINE_GRANT_TYPE, Principal, principal_from_claims

_SUITE_KEYS = {"name", "description", "roles_claim", "principals", "resources", "tests"}
_PRINCIPAL_KEYS = {"sub", "permissions", "roles", "org_id", "scope", "machine", "claims"}
_RESOURCE_KEYS = {"id", "attributes"}
_CASE_KEYS = {
    "name",
    "description",
    "principal",
    "principals",
    "resource",
    "resources",
    "actions",
    "reason",
    "context",
    "enforce_context",
}
_EXPECT_KEYS = {"effect", "reason"}

_T = TypeVar("_T")


def read_document(file: str, document: Any) -> tuple[Suite | None, list[Finding]]:
    """The suite a parsed document of `file` makes, and every mistake found in it."""
    reader = _Reader(file)
    suite = reader.suite(document)
    return suite, reader.findings


def _parse_reason(text: Any) -> Reason | None:
    if not isinstance(text, str):
        return None
    try:
        return Reason[text.removeprefix("REASON_")]
    except KeyError:
        return None


class _Reader:
    """Checks one parsed document against the schema, collecting every finding."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.findings: list[Finding] = []

    def error(self, line: int, message: str) -> None:
        self.findings.append(Finding.error(self.file, line, message))

    def mapping(self, value: Any, what: str, line: int, keys: set[str] | None = None) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.error(line, f"{what} must be a mapping, not {type(value).__name__}")
            return {}
        line = line_of(value, line)
        for key in value:
            if not isinstance(key, str):
                self.error(line, f"{what}: key {key!r} must be a string (quote it)")
            elif keys is not None and key not in keys:
                self.error(line, f"{what}: unknown key {key!r} (expected one of {', '.join(sorted(keys))})")
        return value

    def strings(self, value: Any, what: str, line: int) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error(line, f"{what} must be a list of strings")
            return ()
        return tuple(value)

    def text(self, value: Any, what: str, line: int, *, required: bool = False) -> str:
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value):
            self.error(line, f"{what} must be a {'non-empty ' if required else ''}string")
            return ""
        return value

    def suite(self, document: Any) -> Suite | None:
        if document is None:
            self.error(0, "empty file")
            return None
        top = self.mapping(document, "the suite", 1, _SUITE_KEYS)
        if not top:
            return None
        name = self.text(top.get("name"), "name", 1, required=True)
        roles_claim = self.text(top.get("roles_claim"), "roles_claim", 1) or DEV_ROLES_CLAIM
        principals = {
            key: NamedPrincipal(
                key, self.principal(key, spec, roles_claim, line_of(top.get("principals"), 1))
            )
            for key, spec in self.mapping(top.get("principals"), "principals", 1).items()
        }
        resources = {
            key: self.resource(key, spec, line_of(top.get("resources"), 1))
            for key, spec in self.mapping(top.get("resources"), "resources", 1).items()
        }
        tests = top.get("tests")
        if not isinstance(tests, list) or not tests:
            self.error(1, "tests must be a non-empty list")
            return None
        cases = [self.case(i, entry, principals, resources) for i, entry in enumerate(tests)]
        names: dict[str, int] = {}
        for case in cases:
            if case is not None and names.setdefault(case.name, case.line) != case.line:
                self.error(case.line, f"test name {case.name!r} is already used at line {names[case.name]}")
        return Suite(self.file, name, tuple(c for c in cases if c is not None))

    def principal(self, key: str, spec: Any, roles_claim: str, parent_line: int) -> Principal:
        what = f"principal {key!r}"
        line = line_of(spec, parent_line)
        spec = self.mapping(spec, what, line, _PRINCIPAL_KEYS)
        claims: dict[str, Any] = dict(self.mapping(spec.get("claims"), f"{what} claims", line))
        claims["sub"] = self.text(spec.get("sub"), f"{what} sub", line) or claims.get("sub") or key
        if "permissions" in spec:
            claims["permissions"] = list(self.strings(spec["permissions"], f"{what} permissions", line))
        if "roles" in spec:
            claims[roles_claim] = list(self.strings(spec["roles"], f"{what} roles", line))
        if "org_id" in spec:
            claims["org_id"] = self.text(spec["org_id"], f"{what} org_id", line)
        if "scope" in spec:
            scope = spec["scope"]
            if not isinstance(scope, str):
                scope = " ".join(self.strings(scope, f"{what} scope", line))
            claims["scope"] = scope
        if "machine" in spec:
            if not isinstance(spec["machine"], bool):
                self.error(line, f"{what} machine must be true or false")
            elif spec["machine"]:
                claims["gty"] = MACHINE_GRANT_TYPE
            elif claims.get("gty") == MACHINE_GRANT_TYPE:
                del claims["gty"]
        return principal_from_claims(claims, roles_claim)

    def resource(self, key: str, spec: Any, parent_line: int) -> NamedResource:
        what = f"resource {key!r}"
        line = line_of(spec, parent_line)
        spec = self.mapping(spec, what, line, _RESOURCE_KEYS)
        resource_id = self.text(spec.get("id"), f"{what} id", line, required=True)
        attributes = self.mapping(spec.get("attributes"), f"{what} attributes", line)
        self.bounded(attributes, {}, what, line)
        return NamedResource(key, resource_id, dict(attributes))

    def bounded(
        self, attributes: Mapping[str, Any], context: Mapping[str, Any], what: str, line: int
    ) -> bool:
        """Whether attributes and context keep a request's bounds (an error where they do not)."""
        try:
            check_attributes(attributes, context, f"{what}: ")
        except InvalidArgument as exc:
            self.error(line, str(exc))
            return False
        return True

    def case(
        self,
        index: int,
        entry: Any,
        principals: Mapping[str, NamedPrincipal],
        resources: Mapping[str, NamedResource],
    ) -> Case | None:
        line = line_of(entry, 0)
        entry = self.mapping(entry, f"tests[{index}]", line, _CASE_KEYS)
        if not entry:
            return None
        name = self.text(entry.get("name"), f"tests[{index}] name", line, required=True)
        what = f"test {name or index!r}"
        who = self.refs(entry, "principal", what, line, principals)
        which = self.refs(entry, "resource", what, line, resources)
        actions = self.actions(entry.get("actions"), entry.get("reason"), what, line)
        context = self.mapping(entry.get("context"), f"{what} context", line)
        enforce_context = self.enforce_context(entry.get("enforce_context"), what, line)
        if not (name and who and which and actions):
            return None
        # Each check sends a resource's attributes with the context, as one request item.
        if not all(self.bounded(r.attributes, context, f"{what} resource {r.name!r}", line) for r in which):
            return None
        return Case(name, line, tuple(who), tuple(which), tuple(actions), dict(context), enforce_context)

    def enforce_context(self, value: Any, what: str, line: int) -> str:
        # A YAML number (`enforce_context: 2`) is the suffix Casbin names "2"; whether the model
        # has that context is known only with the policy, so an unknown one fails its checks.
        if value is None:
            return ""
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return str(value)
        if isinstance(value, str):
            return value
        self.error(
            line, f'{what} enforce_context must be a context suffix such as "2", not {type(value).__name__}'
        )
        return ""

    def refs(
        self, entry: Mapping[str, Any], kind: str, what: str, line: int, known: Mapping[str, _T]
    ) -> list[_T]:
        one, many = entry.get(kind), entry.get(f"{kind}s")
        if (one is None) == (many is None):
            self.error(line, f"{what} needs exactly one of {kind} or {kind}s")
            return []
        names = [one] if one is not None else many
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            self.error(line, f"{what}: {kind}s must be a non-empty list of names")
            return []
        missing = [n for n in names if n not in known]
        if missing:
            self.error(line, f"{what}: unknown {kind} {', '.join(map(repr, missing))}")
        return [known[n] for n in names if n in known]

    def actions(self, value: Any, case_reason: Any, what: str, line: int) -> list[tuple[str, Expectation]]:
        actions = self.mapping(value, f"{what} actions", line)
        if not actions:
            self.error(line, f"{what} needs actions, e.g. {{GET: allow}}")
            return []
        default = _parse_reason(case_reason) if case_reason is not None else None
        if case_reason is not None and default is None:
            self.error(line, f"{what}: unknown reason {case_reason!r}")
        out: list[tuple[str, Expectation]] = []
        for action, expected in actions.items():
            effect, reason = expected, None
            if isinstance(expected, Mapping):
                spec = self.mapping(expected, f"{what} action {action!r}", line, _EXPECT_KEYS)
                effect = spec.get("effect")
                if "reason" in spec:
                    reason = _parse_reason(spec["reason"])
                    if reason is None:
                        self.error(line, f"{what} action {action!r}: unknown reason {spec['reason']!r}")
            if effect not in ("allow", "deny"):
                self.error(line, f"{what} action {action!r}: expected allow or deny, not {effect!r}")
                continue
            allowed = effect == "allow"
            if reason is None and default is not None and (default is Reason.ALLOWED) == allowed:
                reason = default
            if reason is not None and (reason is Reason.ALLOWED) != allowed:
                self.error(line, f"{what} action {action!r}: REASON_{reason.name} contradicts {effect}")
            out.append((str(action), Expectation(allowed, reason)))
        if default is not None and not any(e.reason is default for _, e in out):
            self.error(line, f"{what}: reason REASON_{default.name} applies to none of its actions")
        return out
