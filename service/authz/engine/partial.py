"""Partial evaluation of one policy line's matcher with the resource's attributes unknown.

The matcher is the one the snapshot compiled (pycasbin's rewrites, the same allow-list
already passed at build time), parsed here as a syntax tree and interpreted with
`r.sub`, `r.act`, `r.ctx` and the line's values bound and `r.obj` symbolic.

A boolean result is a `Cond` (`plancond`): two conditions over a row, `true` (Check's
matcher returns True for that row) and `missing` (Check's evaluation reaches an attribute
the row does not have, i.e. a NULL column, which Check treats as "not sent"). Python's
evaluation order is followed exactly, because it decides which attribute is reached first:

    not a:    true = Fa                      missing = Ma
    f == v:   true = f IS NOT NULL & f == v  missing = f IS NULL

The values and what they do as operands are `plansymbols`', comparisons `plancompare`'s,
and the parsed line `planshape`'s.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

from authz.engine import planast
from authz.engine.bindings import AttributeMissing
from authz.engine.planast import FALSE, TRUE, Node
from authz.engine.plancompare import compare
from authz.engine.plancond import Cond, Conjunction, bounded, cond_or
from authz.engine.planerrors import PlanEvalError, Unplannable
from authz.engine.planshape import OBJ_NAME, Compiled, Shape
from authz.engine.plansymbols import (
    MISSING,
    SYMBOLIC,
    Obj,
    arithmetic,
    as_cond,
    concrete,
    lookup,
    symbolic_call,
)

_BOOLS = (bool, float)


class LineEvaluator:
    """Interprets one line's matcher tree over bound names (one instance per line)."""

    __slots__ = (
        "_unreached",
        "compiled",
        "fixed",
        "functions",
        "names",
        "resource_conds",
        "resource_only",
        "segment",
        "segmented",
    )

    def __init__(
        self,
        names: Mapping[str, Any],
        functions: Mapping[str, Callable[..., Any]],
        shape: Shape,
        compiled: Compiled,
        resource_conds: dict[tuple[Any, ...], Any],
        *,
        segment: Node | None = None,
    ) -> None:
        """`segment`: the template's segment condition (`plantemplate.segment_condition`) that
        the planner conjoins after combining the lines; a chain read only where it is true
        leaves out a term that is exactly it, and `segmented` says one was left out."""
        self.names = names
        self.functions = functions
        self.fixed = shape.fixed
        self.resource_only = shape.resource_only
        self.compiled = compiled
        self.resource_conds = resource_conds
        # The `and` chains whose NULL reach nobody reads (`run`), by node id.
        self._unreached: set[int] = set()
        self.segment = segment
        self.segmented = False

    def run(self, tree: ast.expr, *, reached: bool = True) -> Cond:
        """The line's result as a Cond; raises Unplannable or PlanEvalError.

        `reached=False` when the caller reads only where the line is true (an allow line's
        part in every effect): a top-level `and` chain then leaves where it reaches a NULL
        unworked, FALSE in the result, which spares a rebuild of the chain per term; so does an
        `and` chain that is a term of such a chain (only where it is true is read there too).
        """
        self._unreached = set() if reached else {id(tree)}
        value = self.eval(tree)
        if isinstance(value, SYMBOLIC):
            return as_cond(value)
        if not isinstance(value, _BOOLS):
            raise PlanEvalError(f"matcher result should be bool, got {type(value).__name__}")
        return Cond(TRUE if value else FALSE, FALSE)

    def eval(self, node: ast.expr) -> Any:
        """The value of one expression: concrete, or symbolic (Field, Obj, Cond, MISSING)."""
        fixed = self.fixed.get(id(node))
        if fixed is not None:
            # A subtree that does not read r.obj runs as compiled code, as in Check.
            fn, params = self.compiled(*fixed)
            names = self.names
            try:  # `concrete`, inline: most of a line's nodes are these
                return fn(*[names[n] for n in params])
            except AttributeMissing:
                return MISSING
            except Exception as exc:
                raise PlanEvalError(f"{type(exc).__name__}: {exc}") from exc
        resource_only = self.resource_only.get(id(node))
        if resource_only is not None:
            return self._resource_only(node, *resource_only)
        return self._dispatch(node)

    def _resource_only(self, node: ast.expr, source: str, names: tuple[str, ...]) -> Any:
        # A subtree about r.obj's id and the line's values alone (`r.obj == p.obj || ...`):
        # the same for every principal, so one answer per template and values is kept.
        obj = self.names[OBJ_NAME]
        key = (
            source,
            obj.template.text,
            *(self.names[n] for n in names if n in self.names and n != OBJ_NAME),
        )
        found = self.resource_conds.get(key)
        if found is None:
            # Kept for lines of either effect: worked out with its NULL reach (a deny line reads
            # it), whatever the chain around it reads. An allow line's answer without it, kept
            # and then read by a deny line, dropped the deny's unknown rows: a wider plan.
            unreached, self._unreached = self._unreached, set()
            try:
                found = self._dispatch(node)
            finally:
                self._unreached = unreached
            if isinstance(found, Cond) and _nodes(found) > _RESOURCE_COND_NODES:
                return found  # the memo bounds entries: a large answer would make it large
            if len(self.resource_conds) >= _RESOURCE_CONDS_MAX:
                self.resource_conds.clear()
            self.resource_conds[key] = found
        return found

    def _dispatch(self, node: ast.expr) -> Any:
        method = _DISPATCH.get(type(node))
        if method is None:
            raise Unplannable(f"{type(node).__name__} expression")
        return method(self, node)

    def _constant(self, node: ast.Constant) -> Any:
        return node.value

    def _name(self, node: ast.Name) -> Any:
        if node.id in self.names:
            return self.names[node.id]
        return self.functions[node.id]

    def _boolop(self, node: ast.BoolOp) -> Any:
        is_and = isinstance(node.op, ast.And)
        unreached = is_and and id(node) in self._unreached
        if unreached:
            # `a and (b and c)`: the inner chain's NULL reach is not read either.
            self._unreached.update(
                id(c) for c in node.values if isinstance(c, ast.BoolOp) and isinstance(c.op, ast.And)
            )
        chain: Conjunction | None = None
        acc: Cond | None = None
        value: Any = None
        for child in node.values:
            value = self.eval(child)
            if chain is None and acc is None and not isinstance(value, SYMBOLIC):
                # Python's own semantics while everything so far is concrete.
                if bool(value) != is_and:
                    return value
                continue
            cond = as_cond(value)
            if is_and:
                chain = chain or Conjunction(reached=not unreached)
                if (
                    unreached
                    and cond.missing is FALSE
                    and self.segment is not None
                    and cond.true == self.segment
                ):
                    # The template's segment condition, a conjunct of the whole line.
                    self.segmented = True
                    continue
                chain.add(cond)
                if chain.false:
                    # False for every row: Python evaluates no later term for any row, so
                    # neither does the plan (a later term's error is not Check's either).
                    break
            else:
                acc = cond if acc is None else cond_or(acc, cond)
                bounded(acc)
                if acc.true is TRUE and acc.missing is FALSE:
                    break  # true for every row: likewise
        if chain is not None:
            return chain.result()
        return value if acc is None else acc

    def _unaryop(self, node: ast.UnaryOp) -> Any:
        value = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            if isinstance(value, SYMBOLIC):
                cond = as_cond(value)
                return Cond(cond.false, cond.missing)
            return not value
        if value is MISSING:
            return MISSING
        if isinstance(value, SYMBOLIC):
            raise Unplannable("arithmetic on an unknown attribute")
        return concrete(lambda: -value if isinstance(node.op, ast.USub) else +value)

    def _binop(self, node: ast.BinOp) -> Any:
        return arithmetic(node.op, self.eval(node.left), self.eval(node.right))

    def _ifexp(self, node: ast.IfExp) -> Any:
        test = self.eval(node.test)
        if test is MISSING:
            return MISSING
        if isinstance(test, SYMBOLIC):
            raise Unplannable("a conditional expression on an unknown attribute")
        return self.eval(node.body if test else node.orelse)

    def _compare(self, node: ast.Compare) -> Any:
        return compare(node.ops, [self.eval(node.left), *(self.eval(c) for c in node.comparators)])

    def _attribute(self, node: ast.Attribute) -> Any:
        return lookup(self.eval(node.value), node.attr, node)

    def _subscript(self, node: ast.Subscript) -> Any:
        key = self.eval(node.slice)
        if key is MISSING:
            return MISSING
        if isinstance(key, SYMBOLIC):
            raise Unplannable("an index that depends on an unknown attribute")
        return lookup(self.eval(node.value), key, node, item=True)

    def _call(self, node: ast.Call) -> Any:
        assert isinstance(node.func, ast.Name)  # the build's allow-list
        name = node.func.id
        args = [self.eval(a) for a in node.args]
        if any(a is MISSING for a in args):
            return MISSING
        objs = [a for a in args if isinstance(a, Obj)]
        if objs and all(o.template.concrete for o in objs):
            args = [a.template.text if isinstance(a, Obj) else a for a in args]
        if any(isinstance(a, SYMBOLIC) for a in args):
            return symbolic_call(name, args)
        fn = self.functions[name]
        return concrete(lambda: fn(*args))

    def _tuple(self, node: ast.Tuple | ast.List | ast.Set) -> Any:
        items = [self.eval(e) for e in node.elts]
        if any(i is MISSING for i in items):
            return MISSING
        if any(isinstance(i, SYMBOLIC) for i in items):
            raise Unplannable("a collection holding an unknown attribute")
        return tuple(items) if isinstance(node, ast.Tuple) else list(items)

    _list = _tuple
    _set = _tuple


_DISPATCH: dict[type[ast.AST], Callable[[LineEvaluator, Any], Any]] = {
    kind: getattr(LineEvaluator, f"_{kind.__name__.lower()}")
    for kind in (
        ast.Constant,
        ast.Name,
        ast.BoolOp,
        ast.UnaryOp,
        ast.BinOp,
        ast.IfExp,
        ast.Compare,
        ast.Attribute,
        ast.Subscript,
        ast.Call,
        ast.Tuple,
        ast.List,
        ast.Set,
    )
}


_RESOURCE_CONDS_MAX = 65536
# Larger answers are computed again instead: a template of 500 path parameters against a
# pattern of 500 segments plans to 1,500 nodes, and requests choose the templates.
_RESOURCE_COND_NODES = 256


def _nodes(cond: Cond) -> int:
    return planast.measure(cond.true)[0] + planast.measure(cond.missing)[0]
