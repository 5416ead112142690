"""Comparisons in a planned line: a chain (`a < b < c`) as Python evaluates it, with an
unknown attribute of the row, or `r.obj` itself, on a side.

A field compared with a value holds where the field is not NULL and the comparison holds,
and reaches a missing attribute where it is NULL:

    f == v:   true = f IS NOT NULL & f == v  missing = f IS NULL
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable
from typing import Any

from authz.engine import planast
from authz.engine.bindings import plain
from authz.engine.planast import FALSE, TRUE, Node
from authz.engine.plancond import MISSING_COND, Cond, Conjunction, bounded
from authz.engine.planerrors import Unplannable
from authz.engine.plansymbols import MISSING, SYMBOLIC, WHOLE, Field, Obj, as_cond, concrete

_LITERALS = (str, bool, int, float)

_COMPARE: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Eq: ("eq", operator.eq),
    ast.NotEq: ("ne", operator.ne),
    ast.Lt: ("lt", operator.lt),
    ast.LtE: ("le", operator.le),
    ast.Gt: ("gt", operator.gt),
    ast.GtE: ("ge", operator.ge),
    ast.In: ("in", lambda a, b: a in b),
    ast.NotIn: ("not in", lambda a, b: a not in b),
    ast.Is: ("is", operator.is_),
    ast.IsNot: ("is not", operator.is_not),
}
_FLIP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}

# A plan's numbers travel as doubles (google.protobuf.Value): past 2**53 an integer would
# arrive as a neighbour (9007199254740993 as ...992), and the filter would compare with it.
_EXACT_INT = 2**53


def _literal(value: Any, what: str) -> planast.Literal:
    value = plain(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _EXACT_INT:
        raise Unplannable(
            f"comparison of {what} with {value}, which a plan cannot carry exactly (past 2**53)"
        )
    if isinstance(value, _LITERALS):
        return value
    raise Unplannable(f"comparison of {what} with a {type(value).__name__}")


def _null_checks(name: str) -> tuple[planast.IsNull, Node]:
    # A field's `IS NULL` and `IS NOT NULL`. Most plans compare the same few fields, so a short
    # name's (the policy's `r.obj.owner`; a request may choose a key, `r.obj[r.sub.x]`) are
    # made once.
    return _kept_null_checks(name) if len(name) <= _KEPT_NAME else _made_null_checks(name)


def _made_null_checks(name: str) -> tuple[planast.IsNull, Node]:
    null = planast.IsNull(name)
    return null, planast.negate(null)


_KEPT_NAME = 64
_kept_null_checks = functools.lru_cache(maxsize=1024)(_made_null_checks)


def _field_compare(field: Field, op: str, value: Any) -> Cond:
    what = f"r.obj.{field.name}"
    null, present = _null_checks(field.name)
    if op in ("in", "not in"):
        if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
            raise Unplannable(f"{what} {op} a {type(value).__name__} (only a list of literals)")
        items = tuple(dict.fromkeys(_literal(v, what) for v in value if v is not None))
        test: Node = planast.Compare("in", field.name, items) if items else FALSE
        if op == "not in":
            test = planast.negate(test)
    elif op in ("eq", "ne"):
        if value is None:
            # A present attribute never equals None.
            test = FALSE if op == "eq" else TRUE
        else:
            test = planast.Compare(op, field.name, _literal(value, what))
    elif op in _FLIP:
        if isinstance(plain(value), str) or isinstance(value, bool) or not isinstance(value, int | float):
            # String order is the database's collation, not Python's: it could widen access.
            raise Unplannable(f"ordering comparison of {what} with a {type(plain(value)).__name__}")
        test = planast.Compare(op, field.name, _literal(value, what))
    else:
        raise Unplannable(f"{what} compared with `{op}`")
    if isinstance(test, planast.Const):
        return Cond(present if test.value else FALSE, null)
    # Built directly: a guard and a comparison (or its negation) never simplify further.
    return Cond(planast.All((present, test)), null)


def compare(ops: list[ast.cmpop], values: list[Any]) -> Any:
    """A comparison chain over its operands' values (one more than `ops`): concrete while
    both sides are, from the first unknown comparison on a Cond of the rest."""
    result: Any = True
    terms: list[Cond] = []  # from the first unknown comparison on
    for op, left, right in zip(ops, values, values[1:], strict=False):
        if left is MISSING or right is MISSING:
            part: Any = MISSING_COND
        elif isinstance(left, SYMBOLIC) or isinstance(right, SYMBOLIC):
            part = _symbolic_compare(op, left, right)
        else:
            part = concrete(functools.partial(_COMPARE[type(op)][1], left, right))
            if not terms:
                if not part:
                    return part
                result = part
                continue
        terms.append(as_cond(part))
    if not terms:
        return result
    if len(terms) == 1:
        # One unknown comparison (`r.obj.owner == r.sub.id`): its Cond as made, already
        # simplified, without a chain's rebuild of it.
        bounded(terms[0])
        return terms[0]
    chain = Conjunction()
    for term in terms:
        chain.add(term)
    return chain.result()


def _symbolic_compare(op: ast.cmpop, left: Any, right: Any) -> Cond:
    name = _COMPARE[type(op)][0]
    if isinstance(left, WHOLE) or isinstance(right, WHOLE):
        obj, other = (left, right) if isinstance(left, Obj) else (right, left)
        if isinstance(obj, Obj) and name in ("eq", "ne") and isinstance(plain(other), str):
            test = obj.template.equals(plain(other))
            if name == "eq":
                return Cond(test.true, test.unknown)
            return Cond(planast.all_of(planast.negate(test.true), planast.negate(test.unknown)), test.unknown)
        what = "r.obj compared as a whole" if isinstance(obj, Obj) else "comparison of a condition"
        raise Unplannable(what)
    if isinstance(left, Field) and isinstance(right, Field):
        raise Unplannable(f"comparison of r.obj.{left.name} with r.obj.{right.name}")
    if isinstance(left, Field):
        return _field_compare(left, name, right)
    if name in ("in", "not in"):
        raise Unplannable(f"membership in r.obj.{right.name}")
    if name not in _FLIP:
        raise Unplannable(f"r.obj.{right.name} compared with `{name}`")
    return _field_compare(right, _FLIP[name], left)
