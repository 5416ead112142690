"""Policy test suites: `tests/*_test.yaml` in a policy directory, read into cases.

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

Every mistake in a file is reported at once, as `tests/FILE:LINE: message`.

Suites run on every reload that requires them and on every admin edit, so their size is
bounded: MAX_SUITE_CHARS per file, MAX_CHECKS checks (principal x resource x action) in
all the suites of a policy, and a case's attributes and context by a request's bounds
(`attrlimits`): YAML aliases make a structure of a billion values out of a few hundred bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from authz.attrlimits import check_attributes
from authz.decision import Reason
from authz.devmode import DEV_ROLES_CLAIM
from authz.engine.policyfiles import read_text_file
from authz.errors import AuthzError, InvalidArgument, PolicyLoadError
from authz.findings import Finding, listed
from authz.principal import MACHINE_GRANT_TYPE, Principal, principal_from_claims

TESTS_DIR = "tests"
SUITE_GLOB = "*_test.yaml"
# Longest suite file (PyYAML reads about a megabyte a second) and most checks in all suites
# together (a decision each: about 2 s).
MAX_SUITE_CHARS = 1024 * 1024
MAX_CHECKS = 100_000

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


class SuiteError(AuthzError):
    """A test suite file cannot be used; `findings` locate each mistake (`tests/FILE:LINE`)."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__(listed("invalid policy test suite", findings))


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


def suite_files(directory: Path) -> list[Path]:
    """The suite files of a policy directory, sorted (none when it has no tests/).

    Every entry with a suite's name, whatever it is: a FIFO or a directory in a suite's place
    is refused when read, not skipped (its checks would silently stop guarding reloads).
    """
    tests = directory / TESTS_DIR
    return sorted(tests.glob(SUITE_GLOB)) if tests.is_dir() else []


def read_suite_file(path: Path) -> str:
    """A suite file's text, read no further than a suite may be (MAX_SUITE_CHARS, in UTF-8 bytes)."""
    return read_text_file(path, 4 * MAX_SUITE_CHARS)


def checks(case: Case) -> int:
    """How many decisions a case asks for: principals x resources x actions."""
    return len(case.principals) * len(case.resources) * len(case.actions)


def check_total(suites: list[Suite]) -> None:
    """Raise SuiteError when the suites together ask for more than MAX_CHECKS decisions."""
    total = 0
    for suite in suites:
        for case in suite.cases:
            total += checks(case)
            if total > MAX_CHECKS:
                message = (
                    f"the suites ask for more than {MAX_CHECKS} checks (principals x resources x actions)"
                )
                raise SuiteError([Finding.error(suite.file, case.line, message)])


def load_suites(directory: Path) -> list[Suite]:
    """Read every suite of a policy directory; raises SuiteError listing every mistake."""
    suites: list[Suite] = []
    findings: list[Finding] = []
    for path in suite_files(directory):
        name = f"{TESTS_DIR}/{path.name}"
        try:
            suites.append(parse_suite(name, read_suite_file(path)))
        except SuiteError as exc:
            findings.extend(exc.findings)
        except PolicyLoadError as exc:
            findings.append(Finding.error(name, 0, f"cannot read: {exc.message}"))
        except (OSError, UnicodeDecodeError) as exc:
            findings.append(Finding.error(name, 0, f"cannot read: {exc}"))
    if findings:
        raise SuiteError(findings)
    check_total(suites)
    return suites


def parse_suite(file: str, text: str) -> Suite:
    """Parse one suite file's text; raises SuiteError listing every mistake in it."""
    if len(text) > MAX_SUITE_CHARS:
        message = f"a suite file is at most {MAX_SUITE_CHARS} characters, this one has {len(text)}"
        raise SuiteError([Finding.error(file, 0, message)])
    try:
        document = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(exc, "problem", None) or exc
        raise SuiteError([Finding.error(file, line, f"not valid YAML: {problem}")]) from None
    reader = _Reader(file)
    suite = reader.suite(document)
    if reader.findings or suite is None:
        raise SuiteError(reader.findings or [Finding.error(file, 0, "empty suite")])
    check_total([suite])
    return suite


# -- YAML with line numbers -----------------------------------------------------------


class _Mapping(dict[Any, Any]):
    """A YAML mapping that remembers the line it started on."""

    line = 0


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings know their line and reject duplicate keys."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    # A set: a list's `in` made 40,000 principals 800 million comparisons (minutes).
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # unhashable: construct_mapping says so
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
    mapping = _Mapping(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# -- schema -----------------------------------------------------------------------------


def _line(value: Any, default: int) -> int:
    return value.line if isinstance(value, _Mapping) else default


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
        line = _line(value, line)
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
            key: NamedPrincipal(key, self.principal(key, spec, roles_claim, _line(top.get("principals"), 1)))
            for key, spec in self.mapping(top.get("principals"), "principals", 1).items()
        }
        resources = {
            key: self.resource(key, spec, _line(top.get("resources"), 1))
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
        line = _line(spec, parent_line)
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
        line = _line(spec, parent_line)
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
        line = _line(entry, 0)
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
