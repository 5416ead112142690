"""PlanResources: which rows of one resource kind Check would allow, as one condition.

Every policy line that can match the principal and action is partially evaluated
(`partial.py`) with the resource's unknown attributes symbolic, and the lines' conditions
are combined as the model's effect combines decisions (`snapshot.py`), including the
fail-closed rule for attributes that were not sent:

    allow override        any(T_a)
    deny override         all(not (T_d or M_d))
    allow and deny        all(not (T_d or M_d)) and any(T_a)
    priority              first line, in priority order, with T (or, for a deny, M)

T is "the line matches this row", M "evaluation reaches a NULL column". A deny line
whose condition reaches a NULL denies the row, as Check denies with
REASON_ATTRIBUTE_MISSING; an allow line that reaches one does not match.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from authz.decision import Reason
from authz.engine import arith, planast
from authz.engine.bindings import Attributes, Subject
from authz.engine.effects import ALLOW, DENY, Rule
from authz.engine.indexfilters import intersect
from authz.engine.matcher import EVAL
from authz.engine.matchercheck import SUBJECT
from authz.engine.model import Effect
from authz.engine.partial import LineEvaluator
from authz.engine.planast import FALSE, TRUE, Node
from authz.engine.plancond import Cond
from authz.engine.planerrors import PlanEvalError, Unplannable
from authz.engine.plannarrow import PlanMemo, TemplateNarrowing, memo_for
from authz.engine.plannodes import JUNCTIONS, LEAVES
from authz.engine.planpath import Template
from authz.engine.planpriority import first_holding, until_decisive
from authz.engine.planshape import NESTED, OBJ_NAME, Shape, line_tree
from authz.engine.plansymbols import Obj
from authz.engine.plantemplate import parse_template, segment_condition
from authz.engine.snapshot import Snapshot
from authz.errors import FailedPrecondition, InvalidArgument
from authz.principal import Principal


class PlanKind(enum.IntEnum):
    """The shape of an answer; numbers equal the proto enum."""

    ALWAYS_ALLOWED = 1
    ALWAYS_DENIED = 2
    CONDITIONAL = 3


@dataclass(frozen=True)
class Plan:
    """A plan: its kind, the condition (TRUE / FALSE for the constant kinds) and why."""

    kind: PlanKind
    condition: Node
    reason: Reason
    message: str
    matched_rules: tuple[str, ...] = ()

    @property
    def fields(self) -> list[str]:
        """The fields the condition reads, sorted."""
        return planast.fields(self.condition)


def denied(reason: Reason, message: str) -> Plan:
    """A plan that allows no row."""
    return Plan(PlanKind.ALWAYS_DENIED, FALSE, reason, message)


def _candidates(
    snapshot: Snapshot, memo: PlanMemo, bound: Mapping[str, Any], template: Template
) -> Iterable[Rule]:
    rules = snapshot.rules
    index = snapshot.index
    if index is None:
        return rules
    if template.concrete:
        # One resource id: exactly Check's narrowing.
        picked = index.candidates({**bound, OBJ_NAME: template.text})
    else:
        narrowing = TemplateNarrowing(memo, template.literal)
        picked = intersect([narrowing.parts(f, bound) for f in (*index.cheap, *index.costly)])
    return rules if picked is None else [rules[i] for i in picked]


MAX_PLAN_NODES = planast.MAX_NODES
MAX_PLAN_DEPTH = planast.MAX_DEPTH


def _check_size(condition: Node, lines: int) -> None:
    what = planast.too_large(condition)
    if what is not None:
        raise FailedPrecondition(f"the plan from {lines} policy lines is {what}: narrow the resource")


def _evaluate(
    scope: dict[str, Any], snapshot: Snapshot, shape: Shape, memo: PlanMemo, effect: int, segment: Node | None
) -> tuple[Cond, bool]:
    # A line's Cond, and whether the template's segment condition was left out of it: an
    # allow line is read only where it is true (`_combine`), and may leave it out.
    allow = effect == ALLOW
    evaluator = LineEvaluator(
        scope,
        snapshot.functions,
        shape,
        memo.compiled,
        memo.resource_conds,
        segment=segment if allow else None,
    )
    try:
        cond = evaluator.run(shape.tree, reached=not allow)
    except RecursionError:
        raise Unplannable(NESTED) from None
    return cond, evaluator.segmented


def _reads(node: Node, fields: Sequence[str]) -> bool:
    # Whether the tree reads one of `fields` (recursive calls: a generator per level cost more).
    if isinstance(node, LEAVES):
        return node.field in fields
    if isinstance(node, planast.Not):
        return _reads(node.child, fields)
    if isinstance(node, JUNCTIONS):
        return any(_reads(child, fields) for child in node.children)
    return False


def _with_segment(
    effect: Effect, lines: list[tuple[Rule, Cond]], segmented: set[int], segment: Node | None
) -> tuple[list[tuple[Rule, Cond]], Node | None]:
    """The lines, and the segment condition to conjoin with their allows' disjunction.

    Every allow line left it out (the list's route lines, `/api/orders/:id`): `any(S and T_i)`
    is `S and any(T_i)`, built once instead of taken out of every line by the simplifier.
    Otherwise (or under a priority effect) each line that left it out gets it back.
    """
    if not segmented or segment is None:
        return lines, None
    allows = (i for i, (rule, _) in enumerate(lines) if rule.effect == ALLOW)
    if effect not in (Effect.PRIORITY, Effect.SUBJECT_PRIORITY) and all(i in segmented for i in allows):
        return lines, segment
    return [
        (rule, Cond(planast.all_of(segment, cond.true), cond.missing) if i in segmented else cond)
        for i, (rule, cond) in enumerate(lines)
    ], None


def _conjoined(segment: Node, rest: Node) -> Node:
    # `segment and rest`, built as it stands: `rest` reads none of the segment's fields (the
    # lines that did are planned whole), so no rewrite of the simplifier can meet the two.
    if rest is TRUE or rest is FALSE:
        return segment if rest is TRUE else FALSE
    parts = segment.children if isinstance(segment, planast.All) else (segment,)
    return planast.All((*parts, *(rest.children if isinstance(rest, planast.All) else (rest,))))


def _combine(effect: Effect, lines: Sequence[tuple[Rule, Cond]], factor: Node | None = None) -> Node:
    # Under subjectPriority the snapshot's rules are already in rank order, so both priority
    # effects take the first line that holds, as Snapshot.decide does. `factor`: a condition
    # of every allow line, left out of them (`_with_segment`).
    if effect in (Effect.PRIORITY, Effect.SUBJECT_PRIORITY):
        return first_holding(until_decisive(lines), lambda condition: _check_size(condition, len(lines)))
    allows = planast.any_of(*(c.true for r, c in lines if r.effect == ALLOW))
    if factor is not None:
        allows = _conjoined(factor, allows)
    if effect is Effect.ALLOW_OVERRIDE:
        return allows
    no_deny = planast.all_of(
        *(planast.negate(planast.any_of(c.true, c.missing)) for r, c in lines if r.effect == DENY)
    )
    return no_deny if effect is Effect.DENY_OVERRIDE else planast.all_of(no_deny, allows)


def plan_resources(
    snapshot: Snapshot,
    principal: Principal,
    action: str,
    resource: str,
    attributes: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    *,
    explain: bool = False,
) -> Plan:
    """The plan for `action` on the rows of `resource` (a template such as `/api/orders/:id`).

    Raises FailedPrecondition naming `FILE:LINE` and the form when a line that can match
    has a condition the plan cannot express; never returns a wider plan.
    """
    try:
        template = parse_template(resource)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    if not snapshot.rules:
        raise FailedPrecondition("a model without policy lines cannot be planned")
    if snapshot.model.bind and snapshot.model.bind != snapshot.model.request:
        # The planner's narrowing and partial evaluation read authz's own request names.
        raise FailedPrecondition(
            "a model whose request definition uses its own names (bound by position) cannot be planned"
        )
    bound: dict[str, Any] = {
        SUBJECT: Subject(principal),
        OBJ_NAME: Obj(template, dict(attributes or {})),
        "r_act": action,
        "r_dom": principal.org_id or "",
        "r_ctx": Attributes(context or {}),
    }
    names = {name: bound[name] for name in snapshot.model.request}
    policy = snapshot.model.policy
    memo = memo_for(snapshot)
    slots = memo.slots
    if slots is None:
        # The policy columns in the matcher's eval() slots, in order (the build checked they exist).
        slots = memo.slots = [policy.index(n) for n in EVAL.findall(snapshot.model.matcher)]
    lines: list[tuple[Rule, Cond]] = []
    segmented: set[int] = set()  # the lines whose segment condition is left for `_combine`
    segment = segment_condition(template)
    with arith.Budget():  # the operators' work, bounded as in one decision
        for rule in _candidates(snapshot, memo, bound, template):
            values = rule.line.values
            try:
                shape, consts = line_tree(snapshot.model.matcher, tuple(values[i] for i in slots))
                scope = {**names, **dict(zip(policy, values, strict=True)), **consts}
                line = (scope, snapshot, shape, memo, rule.effect)
                cond, left_out = _evaluate(*line, segment)
                if left_out and _reads(cond.true, template.names):
                    # `r.obj.id == ''` beside `/api/orders/:id`: the two meet in the line only.
                    cond, left_out = _evaluate(*line, None)
            except Unplannable as exc:
                where = f"{rule.line.file}:{rule.line.line}"
                raise FailedPrecondition(f"{where}: cannot plan {exc.form} (in `{rule.line.text}`)") from None
            except PlanEvalError as exc:
                return denied(Reason.POLICY_ERROR, f"policy error at {rule.line.location}: {exc}")
            # An allow line counts where it matches; a deny line also where it reaches a NULL.
            if cond.true is not FALSE or (rule.effect == DENY and cond.missing is not FALSE):
                if left_out:
                    segmented.add(len(lines))
                lines.append((rule, cond))
    lines, factor = _with_segment(snapshot.model.effect, lines, segmented, segment)
    condition = _combine(snapshot.model.effect, lines, factor)
    _check_size(condition, len(lines))
    rules = tuple(rule.line.location for rule, _ in lines) if explain else ()
    if condition is TRUE:
        return Plan(PlanKind.ALWAYS_ALLOWED, TRUE, Reason.UNSPECIFIED, "every row is allowed", rules)
    if condition is FALSE:
        return Plan(
            PlanKind.ALWAYS_DENIED,
            FALSE,
            Reason.NO_MATCHING_RULE,
            f"no policy rule allows {action} on {template.text}",
            rules,
        )
    return Plan(PlanKind.CONDITIONAL, condition, Reason.UNSPECIFIED, planast.render(condition), rules)


__all__ = ["Plan", "PlanKind", "Template", "Unplannable", "denied", "plan_resources"]
