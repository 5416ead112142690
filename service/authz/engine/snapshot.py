"""An immutable, compiled policy snapshot and the decisions it answers.

A snapshot is built once from a policy directory (model + policy files, `engine/build.py`),
validated as a whole, and never changed afterwards, so any number of threads may evaluate
it at once and a reload simply swaps in a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from authz.decision import Decision, Reason
from authz.engine import arith
from authz.engine.bindings import NO_VALUES, AttributeMissing, Attributes, Resource, Subject
from authz.engine.cache import DecisionCache, decision_key
from authz.engine.candidates import CandidateEvaluator
from authz.engine.effects import EFFECTS, EvalFailure, Hit, Rule, truth
from authz.engine.index import PolicyIndex
from authz.engine.matchercheck import SUBJECT
from authz.engine.model import Effect, ModelSpec
from authz.engine.patterntable import PatternTable
from authz.engine.policyfiles import PolicyLine
from authz.engine.roles import RoleGraph
from authz.principal import Principal

# r.ctx of a request that sent no context: one shared, none built per decision.
_NO_CONTEXT = Attributes(NO_VALUES)


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
    # The patterns the load compiled (keyMatch2 and friends, by function); the matcher's
    # functions hold the same table.
    patterns: PatternTable | None = None

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
                hits = self.evaluator.hits(rules, lines, rvals)
            else:
                hits = self._hits(rules if picked is None else [rules[i] for i in picked], rvals)
            return EFFECTS[self.model.effect](hits, explain)
        except EvalFailure as failure:
            return Decision(False, Reason.POLICY_ERROR, str(failure), (failure.location,))
        finally:
            arith.restore(outer)

    @staticmethod
    def _hits(rules: list[Rule], rvals: tuple[Any, ...]) -> Iterator[Hit]:
        for rule in rules:
            try:
                result = rule.fn(*rvals, *rule.line.values)
            except AttributeMissing as missing:
                yield Hit(rule, missing.path)
                continue
            except Exception as exc:
                raise EvalFailure(rule.line.location, f"{type(exc).__name__}: {exc}") from exc
            # The location is built only when a result is not a bool: most calls never need it.
            if result is True or (result is not False and truth(result, rule.line.location)):
                yield Hit(rule)

    def _decide_empty(self, rvals: tuple[Any, ...]) -> Decision:
        # pycasbin evaluates the matcher once with empty policy values when there are none.
        assert self.empty_fn is not None
        try:
            ok = truth(self.empty_fn(*rvals, *("" for _ in self.model.policy)), "model.conf")
        except AttributeMissing as missing:
            return Decision(False, Reason.NO_MATCHING_RULE, f"{missing.path} was not sent")
        except EvalFailure:
            raise
        except Exception as exc:
            raise EvalFailure("model.conf", f"{type(exc).__name__}: {exc}") from exc
        if ok:
            return Decision(True, Reason.ALLOWED, "allowed by the matcher (no policy lines)")
        if self.model.effect is Effect.DENY_OVERRIDE:
            # As in Casbin: deny-override allows what no line denies, and without lines none does.
            return Decision(True, Reason.ALLOWED, "allowed: no policy line denies it (deny-override effect)")
        return Decision(False, Reason.NO_MATCHING_RULE, "no policy rule allows this request")

    def visible_resources(self, prefix: str) -> list[str]:
        """Literal resource ids named by policy lines that start with `prefix`, sorted."""
        return sorted(r for r in self.resources if r.startswith(prefix))
