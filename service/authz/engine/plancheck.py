"""Which policy lines PlanResources can plan, decided from their syntax alone (for validate).

The planner (`partial.py`) decides at request time, with the principal bound, so a line
that this check accepts can still be refused for one resource template (a keyMatch2
pattern with regular-expression characters against a path parameter, an ordering
comparison with a string from the token). What this check rejects can never be planned:
`r.obj` reaching anything other than a comparison of one attribute with a value that
does not depend on `r.obj`, a comparison of `r.obj` itself with such a value, or
`keyMatch` / `keyMatch2(r.obj, pattern)`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from typing import Any

from authz.engine.matcher import EVAL
from authz.engine.planerrors import Unplannable
from authz.engine.planshape import NESTED, OBJ_NAME, line_tree
from authz.engine.snapshot import Snapshot

_ORDER = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_EQUALITY = (ast.Eq, ast.NotEq)


def _mentions(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == OBJ_NAME for n in ast.walk(node))


def _attribute(node: ast.AST) -> str | None:
    # `r.obj.name` or `r.obj['name']`: the attribute's name.
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == OBJ_NAME:
        return node.attr
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == OBJ_NAME
        and isinstance(node.slice, ast.Constant)
    ):
        return str(node.slice.value)
    return None


def _is_obj(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == OBJ_NAME


def _pair(left: ast.AST, op: ast.cmpop, right: ast.AST, consts: Mapping[str, Any]) -> str | None:
    if not _mentions(left) and not _mentions(right):
        return None
    if _mentions(left) and _mentions(right):
        return "a comparison of r.obj with r.obj"
    side, other = (left, right) if _mentions(left) else (right, left)
    name = _attribute(side)
    if name is not None:
        if isinstance(op, ast.In | ast.NotIn) and side is right:
            return f"membership in r.obj.{name}"
        if isinstance(op, ast.Is | ast.IsNot):
            return f"r.obj.{name} compared with `is`"
        literal = consts.get(other.id) if isinstance(other, ast.Name) else None
        if isinstance(op, _ORDER) and isinstance(literal, str):
            return f"ordering comparison of r.obj.{name} with a str"
        return None
    if _is_obj(side) and isinstance(op, _EQUALITY):
        return None
    return "r.obj compared as a whole" if _is_obj(side) else f"{ast.unparse(side)} compared"


def unplannable(node: ast.AST, consts: Mapping[str, Any]) -> str | None:
    """The first form in `node` (literals lifted into `consts`) that no plan can express, or None."""
    if not _mentions(node):
        return None
    if isinstance(node, ast.BoolOp):
        return next((f for f in (unplannable(v, consts) for v in node.values) if f), None)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return unplannable(node.operand, consts)
    if isinstance(node, ast.Compare):
        values = [node.left, *node.comparators]
        pairs = zip(node.ops, values, values[1:], strict=False)
        return next((f for f in (_pair(a, op, b, consts) for op, a, b in pairs) if f), None)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name, args = node.func.id, node.args
        key_match = name in ("keyMatch", "keyMatch2") and len(args) == 2
        if key_match and _is_obj(args[0]) and not _mentions(args[1]):
            return None
        found = next((a for a in args if _mentions(a)), None)
        shown = f"r.obj.{_attribute(found)}" if found is not None and _attribute(found) else "r.obj"
        return f"{name}() of {shown}, which has no SQL form"
    if isinstance(node, ast.BinOp):
        return "arithmetic on an unknown attribute"
    if _attribute(node) is not None:
        return f"r.obj.{_attribute(node)} used as a truth value; compare it: == True"
    return f"{type(node).__name__} expression on r.obj"


def plannability(snapshot: Snapshot) -> dict[str, list[str]]:
    """Per resource value of the `p` lines: the problems (`FILE:LINE: form`), empty when plannable."""
    model = snapshot.model
    obj = model.field_index("obj")
    slots = [model.policy.index(n) for n in EVAL.findall(model.matcher)]
    out: dict[str, list[str]] = {}
    for rule in snapshot.rules:
        values = rule.line.values
        resource = values[obj] if obj is not None else "*"
        problems = out.setdefault(resource, [])
        try:
            shape, consts = line_tree(model.matcher, tuple(values[i] for i in slots))
            form = unplannable(shape.tree, consts)
        except Unplannable as exc:
            form = exc.form
        except RecursionError:
            form = NESTED
        if form:
            problems.append(f"{rule.line.file}:{rule.line.line}: {form}")
    return out


def summary(snapshot: Snapshot) -> Iterator[str]:
    """Lines for validate's text output: each resource, plannable or why not."""
    for resource, problems in sorted(plannability(snapshot).items()):
        yield f"  {resource}: " + ("plannable" if not problems else "not plannable: " + "; ".join(problems))
