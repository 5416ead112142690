"""An immutable, compiled policy snapshot and the decisions it answers.

A snapshot is built once from a policy directory (model + policy files), validated as
a whole, and never changed afterwards, so any number of threads may evaluate it at
once and a reload simply swaps in a new one.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from authz.decision import Decision, Reason
from authz.engine import arith
from authz.engine.bindings import NO_VALUES, AttributeMissing, Attributes, Resource, Subject, plain
from authz.engine.cache import DecisionCache, decision_key
from authz.engine.candidates import CandidateEvaluator, build_evaluator
from authz.engine.contexts import build_with_contexts
from authz.engine.index import PolicyIndex
from authz.engine.lean import LeanCompiler
from authz.engine.matcher import SUBJECT, MatcherCompiler, MatcherSyntaxError
from authz.engine.model import Effect, ModelSpec, builtin_functions, model_error, parse_model
from authz.engine.patterns import enable_matching
from authz.engine.patterntable import PatternTable
from authz.engine.policyfiles import (
    MODEL_FILE,
    PolicyLine,
    PolicySource,
    check_policy_size,
    parse_lines,
    read_policy_dir,
)
from authz.engine.priority import priority_findings, subject_rank
from authz.engine.regexcheck import line_problems, pattern_arguments, pattern_uses
from authz.engine.roles import RoleGraph, holds, parse_window, reach_for
from authz.errors import PolicyLoadError
from authz.findings import Finding
from authz.principal import Principal

ALLOW, DENY, INDETERMINATE = 1, 2, 0
# r.ctx of a request that sent no context: one shared, none built per decision.
_NO_CONTEXT = Attributes(NO_VALUES)
# The request values an index can compare with policy values (r.ctx is a mapping).
_INDEXED = ("r_sub", "r_obj", "r_act", "r_dom")
_PATTERN = re.compile(r"\*|\{|/:|\(")


class Rule(NamedTuple):
    """A compiled `p` line: its values, its effect and its matcher function."""

    line: PolicyLine
    effect: int
    fn: Callable[..., Any]


class _Hit(NamedTuple):
    # A NamedTuple: a request with conditions makes dozens, and a frozen dataclass costs
    # several times as much to build.
    rule: Rule
    missing: str | None = None  # set when the condition is unknown


@dataclass
class Snapshot:
    """A loaded policy: compiled rules, role graphs and the version they came from."""

    version: str
    model: ModelSpec
    rules: list[Rule]
    graphs: dict[str, RoleGraph]
    lines: list[PolicyLine]
    empty_fn: Callable[..., Any] | None = None
    resources: frozenset[str] = field(default_factory=frozenset)
    index: PolicyIndex | None = None
    model_text: str = ""
    cache: DecisionCache | None = None
    # The matcher's functions by name (pycasbin's, wrapped, and one per role graph): the planner's.
    functions: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    # Casbin's enforce contexts by suffix ("2": r2, p2, e2, m2), each a snapshot of its own
    # (`engine/contexts.py`); the default context is this snapshot.
    sections: dict[str, Snapshot] = field(default_factory=dict)
    # Candidate lines evaluated by head groups and lean conditions (matchers with eval()).
    evaluator: CandidateEvaluator | None = None

    # -- decisions -------------------------------------------------------------------

    def decide(
        self,
        principal: Principal,
        resource: str,
        action: str,
        attributes: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        explain: bool = False,
        subject: Subject | None = None,
    ) -> Decision:
        """Evaluate one request; every failure inside evaluation denies.

        Pass the same `subject` for many decisions of one principal so role closures
        are computed once.
        """
        cache = self.cache
        key = decision_key(principal, resource, action, attributes, context, explain) if cache else None
        if key is not None and cache is not None:
            found = cache.get(key)
            if found is None:
                found = self._decide(principal, resource, action, attributes, context, explain, subject)
                cache.put(key, found)
            return found
        return self._decide(principal, resource, action, attributes, context, explain, subject)

    def _decide(
        self,
        principal: Principal,
        resource: str,
        action: str,
        attributes: Mapping[str, Any] | None,
        context: Mapping[str, Any] | None,
        explain: bool,
        subject: Subject | None,
    ) -> Decision:
        subject = subject or Subject(principal)
        bound = {
            SUBJECT: subject,
            "r_obj": Resource(resource, attributes or NO_VALUES),
            "r_act": action,
            "r_dom": principal.org_id or "",
            "r_ctx": Attributes(context) if context else _NO_CONTEXT,
        }
        rvals = self.model.request_values(bound)
        # The operators' work is bounded per decision, whatever the number of lines (`arith`).
        outer = arith.start()
        try:
            if not self.rules:
                return self._decide_empty(rvals)
            rules = self.rules
            picked = self.index.candidates(self.model.aliased(bound)) if self.index is not None else None
            if self.evaluator is not None:
                lines = range(len(rules)) if picked is None else picked
                hits = self.evaluator.hits(rules, lines, rvals, _Hit, _EvalFailure, _truth)
            else:
                hits = self._hits(rules if picked is None else [rules[i] for i in picked], rvals)
            return _EFFECTS[self.model.effect](hits, explain)
        except _EvalFailure as failure:
            return Decision(False, Reason.POLICY_ERROR, str(failure), (failure.location,))
        finally:
            arith.restore(outer)

    @staticmethod
    def _hits(rules: list[Rule], rvals: tuple[Any, ...]) -> Iterator[_Hit]:
        for rule in rules:
            try:
                result = rule.fn(*rvals, *rule.line.values)
            except AttributeMissing as missing:
                yield _Hit(rule, missing.path)
                continue
            except Exception as exc:
                raise _EvalFailure(rule.line.location, f"{type(exc).__name__}: {exc}") from exc
            # The location is built only when a result is not a bool: most calls never need it.
            if result is True or (result is not False and _truth(result, rule.line.location)):
                yield _Hit(rule)

    def _decide_empty(self, rvals: tuple[Any, ...]) -> Decision:
        # pycasbin evaluates the matcher once with empty policy values when there are none.
        assert self.empty_fn is not None
        try:
            ok = _truth(self.empty_fn(*rvals, *("" for _ in self.model.policy)), "model.conf")
        except AttributeMissing as missing:
            return Decision(False, Reason.NO_MATCHING_RULE, f"{missing.path} was not sent")
        except _EvalFailure:
            raise
        except Exception as exc:
            raise _EvalFailure("model.conf", f"{type(exc).__name__}: {exc}") from exc
        if ok:
            return Decision(True, Reason.ALLOWED, "allowed by the matcher (no policy lines)")
        if self.model.effect is Effect.DENY_OVERRIDE:
            # As in Casbin: deny-override allows what no line denies, and without lines none does.
            return Decision(True, Reason.ALLOWED, "allowed: no policy line denies it (deny-override effect)")
        return Decision(False, Reason.NO_MATCHING_RULE, "no policy rule allows this request")

    def visible_resources(self, prefix: str) -> list[str]:
        """Literal resource ids named by policy lines that start with `prefix`, sorted."""
        return sorted(r for r in self.resources if r.startswith(prefix))


class _EvalFailure(Exception):
    def __init__(self, location: str, message: str) -> None:
        self.location = location
        super().__init__(f"policy error at {location}: {message}")


def _truth(result: Any, location: str) -> bool:
    # Mirrors pycasbin: a bool, or a float compared with zero; anything else is an error.
    if isinstance(result, bool):
        return result
    if isinstance(result, float):
        return result != 0
    raise _EvalFailure(location, f"matcher result should be bool, got {type(result).__name__}")


def _missing_note(unknown: list[_Hit]) -> str:
    if not unknown:
        return ""
    names = sorted({hit.missing or "" for hit in unknown})
    return f"; not evaluated because the request did not send {', '.join(names)}"


def _allowed(hits: list[_Hit]) -> Decision:
    rules = tuple(hit.rule.line.location for hit in hits)
    return Decision(True, Reason.ALLOWED, f"allowed by {rules[0]}" if rules else "allowed", rules)


def _denied(hits: list[_Hit]) -> Decision:
    rules = tuple(hit.rule.line.location for hit in hits)
    return Decision(False, Reason.EXPLICIT_DENY, f"denied by {rules[0]}", rules)


def _missing(hits: list[_Hit]) -> Decision:
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


def _no_match(unknown: list[_Hit]) -> Decision:
    if not unknown:
        return _NOTHING_MATCHED
    return Decision(False, Reason.NO_MATCHING_RULE, _NO_MATCH + _missing_note(unknown))


def _allow_override(hits: Iterator[_Hit], explain: bool) -> Decision:
    allows: list[_Hit] = []
    unknown: list[_Hit] = []
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


def _scan_denies(
    hits: Iterator[_Hit], explain: bool
) -> tuple[list[_Hit], list[_Hit], list[_Hit], list[_Hit]]:
    allows: list[_Hit] = []
    denies: list[_Hit] = []
    unknown_denies: list[_Hit] = []
    unknown_allows: list[_Hit] = []
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


def _deny_override(hits: Iterator[_Hit], explain: bool) -> Decision:
    allows, denies, unknown_denies, _ = _scan_denies(hits, explain)
    if denies:
        return _denied(denies)
    if unknown_denies:
        return _missing(unknown_denies)
    return _allowed(allows)


def _allow_and_deny(hits: Iterator[_Hit], explain: bool) -> Decision:
    allows, denies, unknown_denies, unknown_allows = _scan_denies(hits, explain)
    if denies:
        return _denied(denies)
    if unknown_denies:
        return _missing(unknown_denies)
    return _allowed(allows) if allows else _no_match(unknown_allows)


def _priority(hits: Iterator[_Hit], explain: bool) -> Decision:
    unknown: list[_Hit] = []
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


_EFFECTS: dict[Effect, Callable[[Iterator[_Hit], bool], Decision]] = {
    Effect.ALLOW_OVERRIDE: _allow_override,
    Effect.DENY_OVERRIDE: _deny_override,
    Effect.ALLOW_AND_DENY: _allow_and_deny,
    Effect.PRIORITY: _priority,
    Effect.SUBJECT_PRIORITY: _priority,
}


# -- building ----------------------------------------------------------------------


def _g_function(graph: RoleGraph) -> Callable[..., bool]:
    if graph.matching is not None:

        def g_matching(name1: Any, name2: Any, *domain: Any) -> bool:
            dom = str(plain(domain[0])) if domain else None
            return holds(graph, name1, str(plain(name2)), dom)

        return g_matching
    # The subject's closure without a domain, as reach_for keys it on the Subject.
    plain_key = (graph.name, None)

    def g(name1: Any, name2: Any, *domain: Any) -> bool:
        # The common call, g(r.sub, p.sub): a policy value (a str) looked up in the closure the
        # request's Subject already holds, without the general path's conversions.
        if not domain and type(name1) is Subject and type(name2) is str:
            reach = name1.reach.get(plain_key)
            return name2 in (reach if reach is not None else reach_for(graph, name1, None))
        dom = str(plain(domain[0])) if domain else None
        return str(plain(name2)) in reach_for(graph, name1, dom)

    return g


# pycasbin keeps CSV quotes in the value; Casbin's Go and Node adapters strip them.
_QUOTED = (
    "{} is quoted: pycasbin keeps the quotes as part of the value while Casbin's Go and Node "
    "adapters strip them, so authz refuses it; write the value without quotes"
)


def _add_link(graph: RoleGraph, names: int, line: PolicyLine) -> Finding | None:
    """Add one `g` line's link (with its time window when the definition has one)."""
    window = None
    if graph.timed:
        try:
            window = parse_window(*line.values[names : names + 2])
        except ValueError as exc:
            return _line_error(line, f"link condition: {exc}")
    graph.add_link(line.values[0], line.values[1], line.values[2] if names == 3 else None, window)
    return None


def _finding_order(finding: Finding) -> tuple[str, int, str]:
    # By file, then line number; model.conf findings come first.
    return ("" if finding.file == MODEL_FILE else finding.file, finding.line, finding.message)


def _line_error(line: PolicyLine, message: str) -> Finding:
    # The message quotes the line, so a finding reads on its own: `p, a, b: has 2 values ...`.
    return Finding.error(line.file, line.line, f"{line.text}: {message}")


def _plain_args(fn: Callable[..., Any]) -> Callable[..., Any]:
    # Conditions call these per candidate line: a list, not a generator, and no per-call setup.
    def call(*args: Any) -> Any:
        return fn(*[plain(a) for a in args])

    return call


_EFFECT_NAMES = {"allow": ALLOW, "deny": DENY}


def _effect_of(values: tuple[str, ...], eft_index: int | None) -> int:
    if eft_index is None:
        return ALLOW
    return _EFFECT_NAMES.get(values[eft_index], INDETERMINATE)


def _priority_key(priority_index: int) -> Callable[[PolicyLine], Any]:
    # pycasbin sorts numerically when the value is digits, else as text (stable).
    def key(line: PolicyLine) -> Any:
        value = line.values[priority_index]
        return int(value) if value.isdigit() else value

    return key


def build_snapshot(source: PolicySource) -> Snapshot:
    """Parse, validate and compile a policy source; raises PolicyLoadError with findings.

    The cyclic garbage collector is paused while the snapshot is built: a large policy
    allocates hundreds of thousands of long-lived objects and nothing cyclic, so
    generational passes over them would only slow the load down.
    """
    check_policy_size(source)
    enabled = gc.isenabled()
    gc.disable()
    try:
        return build_with_contexts(source, _build)
    finally:
        if enabled:
            gc.enable()


def _build(source: PolicySource, ptype: str = "p") -> Snapshot:
    model = parse_model(source.model_text)
    lines, findings = parse_lines(source)
    graphs = {
        name: RoleGraph(name, arity >= 3, timed=name in model.conditions)
        for name, arity in model.roles.items()
    }
    p_lines: list[PolicyLine] = []
    for line in lines:
        # Most lines have no '"' at all: one scan of the joined text spares a look at each value.
        if '"' in "".join(line.values):
            quoted = next((value for value in line.values if value.startswith('"')), None)
            if quoted is not None:
                findings.append(_line_error(line, _QUOTED.format(quoted)))
                continue
        if line.ptype == ptype:
            if len(line.values) != len(model.policy):
                findings.append(
                    _line_error(
                        line,
                        f"has {len(line.values)} values, "
                        f"the policy definition {ptype} needs {len(model.policy)}",
                    )
                )
            else:
                p_lines.append(line)
        elif line.ptype in graphs:
            arity = model.role_values(line.ptype)
            if len(line.values) != arity:
                findings.append(
                    _line_error(
                        line, f"has {len(line.values)} values, role definition {line.ptype} needs {arity}"
                    )
                )
            else:
                finding = _add_link(graphs[line.ptype], model.roles[line.ptype], line)
                if finding is not None:
                    findings.append(finding)
        elif not line.ptype.startswith("p"):
            findings.append(_line_error(line, f"role definition {line.ptype} is not in model.conf"))
        # Other p-types (p2 ...) are the rules of their enforce context's snapshot.

    for name, (roles_fn, domains_fn) in model.matching.items():
        with_domain = model.roles[name] == 3
        links = [
            (line.values[0], line.values[1], line.values[2] if with_domain else None)
            for line in lines
            if line.ptype == name and len(line.values) == model.role_values(name)
        ]
        finding = enable_matching(graphs[name], links, roles_fn, domains_fn, source.model_text)
        if finding is not None:
            findings.append(finding)
    functions: dict[str, Callable[..., Any]] = {k: _plain_args(f) for k, f in builtin_functions().items()}
    functions.update({name: _g_function(graph) for name, graph in graphs.items()})
    params = (*model.request, *model.policy)

    subject = next(
        (own for own, role in zip(model.request, model.bind, strict=True) if role == SUBJECT), SUBJECT
    )
    columns, constants = pattern_arguments(model.matcher, model.policy, [line.values for line in p_lines])
    table = PatternTable(pattern_uses(columns, constants, p_lines))
    if (message := table.too_many()) is not None:
        findings.append(model_error(source.model_text, "m", message))
    findings.extend(
        _line_error(line, message) for line, message in line_problems(columns, p_lines, table.problem)
    )
    for function, pattern in sorted(constants):
        if (message := table.problem(function, pattern)) is not None:
            findings.append(model_error(source.model_text, "m", f"{function} pattern {pattern!r}: {message}"))
    functions.update({k: _plain_args(f) for k, f in table.functions().items()})
    try:
        compiler = MatcherCompiler(model.matcher, params, functions, subject)
    except MatcherSyntaxError as exc:
        findings.append(model_error(source.model_text, "m", f"matcher: {exc}"))
        raise PolicyLoadError("the policy does not load", sorted(findings, key=_finding_order)) from None
    rule_names = compiler.slots
    compiled: dict[tuple[str, ...], Callable[..., Any]] = {}

    def compile_texts(texts: tuple[str, ...]) -> Callable[..., Any]:
        # `texts` are the line's eval() conditions, in matcher order: identical sets share one.
        fn = compiled.get(texts)
        if fn is None:
            fn = compiler.compile(texts)
            compiled[texts] = fn
        return fn

    slot_columns = [model.policy.index(n) for n in rule_names if n in model.policy]

    def line_texts(line: PolicyLine) -> tuple[str, ...]:
        if len(slot_columns) == 1:  # the usual model: one eval() slot
            return (line.values[slot_columns[0]],)
        values = line.values
        return tuple([values[i] for i in slot_columns])

    missing_eval = [n for n in rule_names if n not in model.policy]
    if missing_eval:
        findings.append(
            model_error(source.model_text, "m", f"eval({', '.join(missing_eval)}) names no policy field")
        )

    rules: list[Rule] = []
    eft_index = model.field_index("eft")
    if p_lines and not missing_eval:
        # Compile the matcher once with neutral conditions first, so a broken matcher is one
        # finding rather than one per line; then every line's conditions, even when other lines
        # have findings, so a validation run reports all of them at once.
        try:
            compile_texts(tuple("True" for _ in rule_names))
        except MatcherSyntaxError as exc:
            findings.append(model_error(source.model_text, "m", f"matcher: {exc}"))
        else:
            shared = None if rule_names else compile_texts(())
            for line in p_lines:
                try:
                    fn = shared or compile_texts(line_texts(line))
                    rules.append(Rule(line, _effect_of(line.values, eft_index), fn))
                except MatcherSyntaxError as exc:
                    findings.append(_line_error(line, str(exc)))
    empty_fn = None
    if not p_lines and not findings:
        if rule_names:
            findings.append(
                model_error(source.model_text, "m", "the matcher uses eval() but there are no policy lines")
            )
        else:
            try:
                empty_fn = compile_texts(())
            except MatcherSyntaxError as exc:
                findings.append(model_error(source.model_text, "m", f"matcher: {exc}"))
    findings.extend(priority_findings(model, p_lines, lines))
    if findings:
        raise PolicyLoadError("the policy does not load", sorted(findings, key=_finding_order))

    if model.effect is Effect.SUBJECT_PRIORITY:
        rank = subject_rank(model, lines)
        rules.sort(key=lambda r: rank(r.line))
    priority_index = model.field_index("priority")
    if model.effect in (Effect.PRIORITY, Effect.SUBJECT_PRIORITY) and priority_index is not None:
        rules.sort(key=lambda r: _priority_key(priority_index)(r.line))

    obj_index = model.field_index("obj")
    resources = frozenset(
        line.values[obj_index]
        for line in p_lines
        if obj_index is not None and not _PATTERN.search(line.values[obj_index])
    )
    lean = LeanCompiler(model.request, model.policy, functions, subject)
    evaluator = build_evaluator(model.matcher, compiler.sources, params, rules, lean)
    indexed = [own for own, role in zip(model.request, model.bind, strict=True) if role in _INDEXED]
    index = PolicyIndex(model.matcher, model.policy, indexed, [r.line.values for r in rules], graphs)
    return Snapshot(
        # Decisions through time windows read the clock, which the cache key leaves out.
        cache=DecisionCache() if compiler.cacheable and not model.conditions else None,
        index=index,
        version=source.version,
        model=model,
        rules=rules,
        graphs=graphs,
        lines=lines,
        empty_fn=empty_fn,
        resources=resources,
        model_text=source.model_text,
        functions=functions,
        evaluator=evaluator,
    )


def load_snapshot(directory: Path) -> Snapshot:
    """Read and build the policy in `directory`."""
    return build_snapshot(read_policy_dir(directory))
