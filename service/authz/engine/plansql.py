"""A plan's condition as a sample SQL `WHERE` clause, for `authz plan` to print (never run)."""

from __future__ import annotations

from authz.engine.plannodes import Compare, Literal, Node
from authz.engine.plantext import infix
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


def _sql_compare(node: Compare) -> str:
    escape = " ESCAPE '\\'" if node.op == "like" else ""
    return f"{_sql_name(node.field)} {_SQL_OPERATORS[node.op]} {_sql_value(node.value)}{escape}"


_sql = infix(_sql_name, _sql_compare)


def sample_sql(node: Node, table: str) -> str:
    """The condition as a WHERE clause over `table`, literals inlined: for reading only.

    Adapters never build SQL text like this: they bind every value as a parameter.
    """
    return f"SELECT * FROM {_sql_name(table)} WHERE {_sql(node)}"  # noqa: S608 (printed, never run)
