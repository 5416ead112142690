"""A plan's condition as a sample SQL `WHERE` clause, for `authz plan` to print (never run)."""

from __future__ import annotations

from authz.engine.plannodes import All, AnyOf, Compare, Const, IsNull, Literal, Node, Not
from authz.printable import escaped

_SQL_OPERATORS = {
    "eq": "=",
    "ne": "<>",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "in": "IN",
    "like": "LIKE",
}


def _sql_value(value: Literal | tuple[Literal, ...]) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_sql_value(v) for v in value) + ")"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        if value.isprintable():
            return "'" + value.replace("'", "''") + "'"
        # PostgreSQL's escape string: the line stays one line and a control character cannot
        # drive the terminal it is printed on (`\n`, `\x1b`, `\u2028` read as written).
        return "E'" + escaped(value.replace("\\", "\\\\")).replace("'", "''") + "'"
    return repr(value)


def _sql_name(name: str) -> str:
    return '"' + escaped(name.replace('"', '""')) + '"'


def sample_sql(node: Node, table: str) -> str:
    """The condition as a WHERE clause over `table`, literals inlined: for reading only.

    Adapters never build SQL text like this: they bind every value as a parameter.
    """
    return f"SELECT * FROM {_sql_name(table)} WHERE {_sql(node)}"  # noqa: S608 (printed, never run)


def _sql(node: Node) -> str:
    if isinstance(node, Const):
        return "TRUE" if node.value else "FALSE"
    if isinstance(node, IsNull):
        return f"{_sql_name(node.field)} IS NULL"
    if isinstance(node, Compare):
        escape = " ESCAPE '\\'" if node.op == "like" else ""
        return f"{_sql_name(node.field)} {_SQL_OPERATORS[node.op]} {_sql_value(node.value)}{escape}"
    if isinstance(node, Not):
        if isinstance(node.child, IsNull):
            return f"{_sql_name(node.child.field)} IS NOT NULL"
        return f"NOT ({_sql(node.child)})"
    joiner = " AND " if isinstance(node, All) else " OR "
    return joiner.join(f"({_sql(c)})" if isinstance(c, All | AnyOf) else _sql(c) for c in node.children)
