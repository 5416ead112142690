"""SQLAlchemy 2 adapter: a PlanResources plan as a WHERE clause (Core ``select()`` and ORM).

    stmt = authorized_query(client, token, "GET", "/api/orders/:id", select(Order))
    rows = session.scalars(stmt).all()

Every field the plan reads is looked up in the field map (attribute -> column name or
column expression), else as a column of the same name of the statement's table; a field
with neither is a :class:`PlanFieldError`, never a silently dropped filter. Column names
come only from the field map or the table; every value is a bound parameter.
``ALWAYS_DENIED`` (and any kind this client does not know) selects no row.

A plan is refused (:class:`PlanFieldError`) rather than translated where SQL could select
a row the plan does not: a comparison of a column with a value of another type (SQLite and
PostgreSQL convert ``'5'`` to a number column's ``5``; Check never finds them equal), a
number that is not finite, a LIKE pattern a collation could read without case, an
unknown node or operator, and a tree past the server's bounds (32 levels, 10,000 nodes).

A path parameter of the template (``:id``) whose column is an integer column (``Integer``,
``BigInteger``) is read as Check reads it, the row's text ``str(n)``, and compared as an
integer: ``id == '42'`` is ``id = 42``, a text no integer writes so (``'007'``, ``'7\n'``,
``''``) matches no row, a LIKE pattern needing a character no integer holds (``'%/%'``)
matches none; ``<`` ``<=`` ``>`` ``>=`` with a text (Check orders text, not numbers) and
any other LIKE pattern are refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, ColumnElement, FromClause, Select, and_, false, not_, or_, true, type_coerce
from sqlalchemy.sql.elements import Grouping

from authz_client._api import authz_pb2

from ._intids import integer_of, like_matches_no_integer, template_params
from .plan import ALWAYS_ALLOWED, CONDITIONAL, PlanResult

if TYPE_CHECKING:
    from .client import AuthzClient

__all__ = ["PlanFieldError", "authorized_query", "plan_where"]

FieldMap = Mapping[str, "str | ColumnElement[Any]"]


class PlanFieldError(ValueError):
    """The plan reads a field that maps to no column (or is malformed): the query is refused."""


# The server's bounds on a plan (authz.engine.planast): a tree past them is not its plan.
MAX_PLAN_NODES = 10_000
MAX_PLAN_DEPTH = 32
# The column types whose values Check compares with a plan value of each type as SQL does
# (Python: `True == 1 == 1.0`, but `'1' != 1`).
_NUMBERS = (int, float, Decimal)
_ACCEPTS: dict[type, tuple[type, ...]] = {str: (str,), bool: _NUMBERS, int: _NUMBERS, float: _NUMBERS}


def _value(value: Any, *, in_list: bool = False) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        number = float(value.number_value)
        if not math.isfinite(number):
            raise PlanFieldError(f"a plan number must be finite, not {number}")
        return int(number) if number.is_integer() else number
    if kind == "list_value" and not in_list:
        return [_value(v, in_list=True) for v in value.list_value.values]
    if kind == "list_value":
        raise PlanFieldError("a list value holds only strings, numbers and booleans")
    raise PlanFieldError(f"a {kind or 'missing'} value is not a plan literal")


def like_pattern(value: Any) -> str:
    """A PLAN_OPERATOR_LIKE pattern this adapter runs as Check reads it, else PlanFieldError.

    SQLite's LIKE ignores the case of ASCII letters and MySQL's collations case and accents
    too: a pattern holding a letter or a character outside ASCII could select rows the plan
    does not. The planner writes wildcards, line breaks and `/` only.
    """
    if not isinstance(value, str):
        raise PlanFieldError("PLAN_OPERATOR_LIKE needs a string pattern")
    if any(not ch.isascii() or ch.isalpha() for ch in value):
        raise PlanFieldError(
            "a PLAN_OPERATOR_LIKE pattern with a letter or a character outside ASCII is refused"
        )
    return value


def _check_type(name: str, column: ColumnElement[Any], value: Any) -> None:
    # A column whose Python type SQLAlchemy cannot say (a bare expression) is left to the database.
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return
    for item in value if isinstance(value, list) else (value,):
        if not issubclass(python_type, _ACCEPTS[type(item)]):
            raise PlanFieldError(
                f"the plan compares {name!r} (a {python_type.__name__} column) with a "
                f"{type(item).__name__}: the database would convert one to the other, Check does not"
            )


# SQLite parses `a OR b OR c ...` as a chain one level deeper per term and refuses one deeper
# than 1,000 ("Expression tree is too large"): longer lists are joined as parenthesised halves.
_FLAT_TERMS = 64


def _joined(join: Any, parts: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    if len(parts) <= _FLAT_TERMS:
        joined: ColumnElement[bool] = join(*parts)
        return joined
    half = len(parts) // 2
    # type_coerce keeps and_/or_ from flattening a same-operator group back into one list.
    halves = (Grouping(type_coerce(_joined(join, p), Boolean)) for p in (parts[:half], parts[half:]))
    grouped: ColumnElement[bool] = join(*halves)
    return grouped


_ORDERINGS = (
    authz_pb2.PLAN_OPERATOR_LT,
    authz_pb2.PLAN_OPERATOR_LE,
    authz_pb2.PLAN_OPERATOR_GT,
    authz_pb2.PLAN_OPERATOR_GE,
)


def _is_integer(column: ColumnElement[Any]) -> bool:
    try:
        return column.type.python_type is int  # not Boolean (bool), Numeric (Decimal)
    except NotImplementedError:
        return False


def _integer_compare(name: str, column: ColumnElement[Any], op: int, value: Any) -> ColumnElement[bool]:
    # A comparison that holds for no row is `column <> column`: false, and NULL on a NULL
    # column as the text comparison was (so a NOT around it never takes NULL rows in).
    never: ColumnElement[bool] = column != column
    if op == authz_pb2.PLAN_OPERATOR_LIKE:
        if not isinstance(value, str) or not like_matches_no_integer(value):
            raise PlanFieldError(
                f"the plan matches {name!r}, an integer id column, with the LIKE pattern {value!r}: "
                "which integers' text it matches is not certain"
            )
        return never
    if op == authz_pb2.PLAN_OPERATOR_IN:
        if not isinstance(value, list):
            raise PlanFieldError("PLAN_OPERATOR_IN needs a list value")
        numbers = [integer_of(v) if isinstance(v, str) else v for v in value]
        kept = [n for n in numbers if n is not None]
        return column.in_(kept) if kept else never
    if isinstance(value, list):
        raise PlanFieldError("only PLAN_OPERATOR_IN takes a list value")
    if op not in (authz_pb2.PLAN_OPERATOR_EQ, authz_pb2.PLAN_OPERATOR_NE):
        raise PlanFieldError(
            f"the plan orders {name!r}, an integer id column, against the text {value!r}: "
            "Check compares the texts, not the numbers"
            if op in _ORDERINGS
            else f"unknown plan operator {op}"
        )
    number = integer_of(value) if isinstance(value, str) else None
    equal: ColumnElement[bool] = never if number is None else column == number
    return equal if op == authz_pb2.PLAN_OPERATOR_EQ else not_(equal)


def _has_text(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and any(isinstance(v, str) for v in value))


class _Translator:
    def __init__(self, source: FromClause | None, fields: FieldMap) -> None:
        self.source = source
        self.fields = fields
        self.nodes = 0
        self.integer_ids: frozenset[str] = frozenset()

    def column(self, name: str) -> ColumnElement[Any]:
        mapped = self.fields.get(name, name)
        if not isinstance(mapped, str):
            return mapped
        if self.source is not None and mapped in self.source.c:
            found: ColumnElement[Any] = self.source.c[mapped]
            return found
        raise PlanFieldError(
            f"the plan reads {name!r}, which is neither in the field map nor a column of the table"
        )

    def count(self, nodes: int) -> None:
        self.nodes += nodes
        if self.nodes > MAX_PLAN_NODES:
            raise PlanFieldError(f"a plan of more than {MAX_PLAN_NODES:,} nodes is refused")

    def node(self, message: Any, depth: int = 1) -> ColumnElement[bool]:
        if depth > MAX_PLAN_DEPTH:
            raise PlanFieldError(f"a plan deeper than {MAX_PLAN_DEPTH} is refused")
        self.count(1)
        kind = message.WhichOneof("node")
        if kind == "all":
            return _joined(and_, [self.node(c, depth + 1) for c in message.all.conditions])
        if kind == "any":
            return _joined(or_, [self.node(c, depth + 1) for c in message.any.conditions])
        if kind == "negate":
            return not_(self.node(message.negate, depth + 1))
        if kind == "is_null":
            return self.column(message.is_null).is_(None)
        if kind == "compare":
            return self.compare(message.compare)
        raise PlanFieldError("an empty plan condition")

    def compare(self, comparison: Any) -> ColumnElement[bool]:
        column = self.column(comparison.field)
        value = _value(comparison.value)
        op = comparison.operator
        if comparison.field in self.integer_ids and _has_text(value):
            if op == authz_pb2.PLAN_OPERATOR_IN and isinstance(value, list):
                self.count(len(value))
            return _integer_compare(comparison.field, column, op, value)
        _check_type(comparison.field, column, value)
        if op == authz_pb2.PLAN_OPERATOR_LIKE:
            return column.like(like_pattern(value), escape="\\")
        if op == authz_pb2.PLAN_OPERATOR_IN:
            if not isinstance(value, list):
                raise PlanFieldError("PLAN_OPERATOR_IN needs a list value")
            self.count(len(value))
            return column.in_(value)
        if isinstance(value, list):
            raise PlanFieldError("only PLAN_OPERATOR_IN takes a list value")
        operators = {
            authz_pb2.PLAN_OPERATOR_EQ: column.__eq__,
            authz_pb2.PLAN_OPERATOR_NE: column.__ne__,
            authz_pb2.PLAN_OPERATOR_LT: column.__lt__,
            authz_pb2.PLAN_OPERATOR_LE: column.__le__,
            authz_pb2.PLAN_OPERATOR_GT: column.__gt__,
            authz_pb2.PLAN_OPERATOR_GE: column.__ge__,
        }
        if op not in operators:
            raise PlanFieldError(f"unknown plan operator {op}")
        result: ColumnElement[bool] = operators[op](value)
        return result


def plan_where(
    plan: PlanResult,
    source: FromClause | None = None,
    fields: FieldMap | None = None,
    *,
    template: str = "",
) -> ColumnElement[bool]:
    """The WHERE clause for a plan: ``true()``, ``false()`` or the translated condition.

    ``source`` is the table (or other FROM clause) whose columns the fields name;
    ``fields`` maps a plan field to a column name of ``source`` or to a column expression.
    ``template`` is the resource the plan was asked for (``/api/orders/:id``): its path
    parameters whose column is an integer column compare as integers (module docstring).
    """
    if plan.kind == ALWAYS_ALLOWED:
        return true()
    if plan.kind != CONDITIONAL or plan.condition is None:
        return false()
    translator = _Translator(source, fields or {})
    for name in plan.fields:
        translator.column(name)  # every field resolves before any SQL is built
    translator.integer_ids = frozenset(
        name
        for name in template_params(template)
        if name in plan.fields and _is_integer(translator.column(name))
    )
    return translator.node(plan.condition)


def _source_of(statement: Select[Any]) -> FromClause | None:
    froms = statement.get_final_froms()
    return froms[0] if len(froms) == 1 else None


def authorized_query(
    client: AuthzClient,
    token: str | None,
    action: str,
    resource: str,
    select_stmt: Select[Any],
    *,
    fields: FieldMap | None = None,
    source: FromClause | None = None,
    attributes: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    enforce_context: str = "",
) -> Select[Any]:
    """``select_stmt`` restricted to the rows the token's principal may ``action``.

    ``resource`` is the template the rows share (``/api/orders/:id``). ``source`` defaults
    to the statement's only FROM table. ``enforce_context`` plans with another section set of
    the model (``"2"``: r2, p2, e2, m2). Raises :class:`PlanFieldError` for a field that maps
    to no column and ``AuthzError`` when the plan cannot be made (FAILED_PRECONDITION, or
    INVALID_ARGUMENT for a context the model lacks).
    """
    plan = client.plan_resources(
        action,
        resource,
        token=token,
        attributes=attributes,
        context=context,
        enforce_context=enforce_context,
    )
    source = source if source is not None else _source_of(select_stmt)
    where = plan_where(plan, source, fields, template=resource)
    return select_stmt.where(where)
