"""Building a snapshot: parse, validate and compile a policy source as a whole.

Every finding of every file is collected before the load is refused, so a validation run
reports them all at once; a snapshot is only returned when there are none.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from authz.engine.bindings import Subject, plain
from authz.engine.cache import DecisionCache
from authz.engine.candidates import build_evaluator
from authz.engine.contexts import build_with_contexts
from authz.engine.effects import Rule, effect_of
from authz.engine.index import PolicyIndex
from authz.engine.lean import LeanCompiler
from authz.engine.matcher import MatcherCompiler
from authz.engine.matchercheck import SUBJECT, MatcherSyntaxError
from authz.engine.model import Effect, builtin_functions, model_error, parse_model
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
from authz.engine.snapshot import Snapshot
from authz.errors import PolicyLoadError
from authz.findings import Finding

# The request values an index can compare with policy values (r.ctx is a mapping).
_INDEXED = ("r_sub", "r_obj", "r_act", "r_dom")
_PATTERN = re.compile(r"\*|\{|/:|\(")


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
                    rules.append(Rule(line, effect_of(line.values, eft_index), fn))
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
        patterns=table,
    )


def load_snapshot(directory: Path) -> Snapshot:
    """Read and build the policy in `directory`."""
    return build_snapshot(read_policy_dir(directory))
