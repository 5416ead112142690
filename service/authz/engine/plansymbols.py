"""The values of a planned line, and what they do as operands.

The planner (`partial`) evaluates a line with the row unknown. A value is concrete (the
principal's, the line's, a literal) or symbolic: a `Field` (an attribute of the row), an
`Obj` (`r.obj` itself), a `Cond` (`plancond`: a boolean over the rows) or `MISSING` (an
attribute the request lacks, which Check treats as "not sent"). Here: a value as a truth
value, an attribute or item of one, arithmetic (concrete values only) and a function call
with a symbolic argument (`keyMatch` / `keyMatch2` of `r.obj`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from authz.engine import arith
from authz.engine.bindings import AttributeMissing, get_attr, get_item, plain
from authz.engine.plancond import FALSE_COND, MISSING_COND, TRUE_COND, Cond
from authz.engine.planerrors import PlanEvalError, Unplannable
from authz.engine.planpath import Template


@dataclass(frozen=True, slots=True)
class Field:
    """An unknown attribute of the row (or a path parameter): `r.obj.<name>`."""

    name: str


@dataclass(frozen=True, slots=True)
class Obj:
    """`r.obj` itself: one row's resource id, the template filled in from the row."""

    template: Template
    known: Mapping[str, Any]


class _Missing:
    # A concrete attribute the request lacks (`r.sub.org_id` of a token without one).
    __slots__ = ()


MISSING = _Missing()
# The operators size-checked and charged to the plan's budget as in Check (`arith`): with a
# known `r.obj.<field>` from the request, `r.obj.org_id * 1000000000` built gigabytes here,
# and a line Check denies as a policy error was planned as allowing every row.
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: arith.add,
    ast.Sub: arith.sub,
    ast.Mult: arith.mul,
    ast.Div: arith.truediv,
    ast.Mod: arith.mod,
    ast.FloorDiv: arith.floordiv,
}
# Functions whose first argument may be the symbolic `r.obj`.
_OBJ_FUNCTIONS = ("keyMatch", "keyMatch2")
# Tuples for isinstance: a union (`Cond | Obj`) is built again on every test.
SYMBOLIC = (Field, Obj, Cond, _Missing)
WHOLE = (Cond, Obj)


def as_cond(value: Any) -> Cond:
    """A value in a boolean position."""
    if isinstance(value, Cond):
        return value
    if value is MISSING:
        return MISSING_COND
    if isinstance(value, Field):
        raise Unplannable(f"r.obj.{value.name} used as a truth value; compare it: == True")
    if isinstance(value, Obj):
        raise Unplannable("r.obj used as a truth value")
    return TRUE_COND if value else FALSE_COND


def concrete(fn: Callable[[], Any]) -> Any:
    """`fn()`, a computation on concrete values: MISSING where it reaches an attribute the
    request lacks; PlanEvalError where it fails, which it does for every row alike."""
    try:
        return fn()
    except AttributeMissing:
        return MISSING
    except Exception as exc:
        raise PlanEvalError(f"{type(exc).__name__}: {exc}") from exc


def symbolic_call(name: str, args: list[Any]) -> Cond:
    """The matcher function `name` called with a symbolic argument: `keyMatch` / `keyMatch2`
    of `r.obj` and a pattern, as the template answers it; Unplannable otherwise."""
    first = args[0]
    if (
        name in _OBJ_FUNCTIONS
        and len(args) == 2
        and isinstance(first, Obj)
        and isinstance(plain(args[1]), str)
    ):
        pattern = plain(args[1])
        template = first.template
        test = template.key_match2(pattern) if name == "keyMatch2" else template.key_match(pattern)
        # Rows the planner cannot tell are planned as missing attributes: fail closed.
        return Cond(test.true, test.unknown)
    shown = next((f"r.obj.{a.name}" for a in args if isinstance(a, Field)), "r.obj")
    raise Unplannable(f"{name}() of {shown}, which has no SQL form")


def arithmetic(op: ast.operator, left: Any, right: Any) -> Any:
    """`left op right`, on concrete values only (MISSING where either is)."""
    if left is MISSING or right is MISSING:
        return MISSING
    if isinstance(left, SYMBOLIC) or isinstance(right, SYMBOLIC):
        raise Unplannable("arithmetic on an unknown attribute")
    fn = _BINARY[type(op)]
    return concrete(lambda: fn(plain(left), plain(right)))


def lookup(value: Any, key: Any, node: ast.expr, *, item: bool = False) -> Any:
    """`value.key` (`value[key]` with `item`) for the expression `node`, `value` concrete or
    symbolic: MISSING where the request lacks it, a `Field` for an attribute of the row."""
    if value is MISSING:
        return MISSING
    if isinstance(value, Obj):
        if item and isinstance(key, int):
            # A character of the id, as Check reads it (`bindings.get_item`).
            if not value.template.concrete:
                raise Unplannable("a character of the resource id (r.obj[<number>])")
            text = value.template.text
            if not -len(text) <= key < len(text):
                raise PlanEvalError(f"IndexError: string index {key} out of range")
            return text[key]
        name = str(key)
        return value.known[name] if name in value.known else Field(name)
    if isinstance(value, Field):
        raise Unplannable(f"nested attribute r.obj.{value.name}.{key}")
    if isinstance(value, Cond):
        raise Unplannable("attribute of a condition")
    path = ast.unparse(node)
    try:
        return get_item(value, key, path) if item else get_attr(value, str(key), path)
    except AttributeMissing:
        return MISSING
    except Exception as exc:
        raise PlanEvalError(f"{type(exc).__name__}: {exc}") from exc
