"""A plan's condition tree (`engine/planast.py`) as proto messages and back.

The proto form is the public one (docs/policies.md "Data filtering" shows its JSON);
the reverse direction serves the CLI, which prints a plan it received over gRPC.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from authz.api.v1 import authz_pb2
from authz.engine import planast
from authz.engine.planast import Node
from authz.transports.structs import python_value

_OPERATORS = {op: f"PLAN_OPERATOR_{op.upper()}" for op in planast.OPERATORS}
_BY_NUMBER = {authz_pb2.PlanOperator.Value(name): op for op, name in _OPERATORS.items()}


def _value(value: planast.Literal | tuple[planast.Literal, ...]) -> struct_pb2.Value:
    out = struct_pb2.Value()
    if isinstance(value, tuple):
        out.list_value.values.extend(_value(v) for v in value)
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, str):
        out.string_value = value
    else:
        out.number_value = value
    return out


def condition_to_proto(node: Node) -> authz_pb2.PlanCondition:
    """A condition as a PlanCondition message (constants are the plan's kind, not nodes)."""
    if isinstance(node, planast.IsNull):
        return authz_pb2.PlanCondition(is_null=node.field)
    if isinstance(node, planast.Compare):
        return authz_pb2.PlanCondition(
            compare=authz_pb2.PlanComparison(
                operator=_OPERATORS[node.op], field=node.field, value=_value(node.value)
            )
        )
    if isinstance(node, planast.Not):
        return authz_pb2.PlanCondition(negate=condition_to_proto(node.child))
    if isinstance(node, planast.All):
        return authz_pb2.PlanCondition(
            all=authz_pb2.PlanConditionList(conditions=[condition_to_proto(c) for c in node.children])
        )
    if isinstance(node, planast.AnyOf):
        return authz_pb2.PlanCondition(
            any=authz_pb2.PlanConditionList(conditions=[condition_to_proto(c) for c in node.children])
        )
    raise ValueError(f"a {type(node).__name__} is not a condition node")


def _literal(value: struct_pb2.Value) -> planast.Literal | tuple[planast.Literal, ...]:
    return _plan_literal(python_value(value))


def _plan_literal(value: Any) -> planast.Literal | tuple[planast.Literal, ...]:
    if isinstance(value, str | bool):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, list):
        items = [_plan_literal(item) for item in value]
        if any(isinstance(item, tuple) for item in items):
            raise ValueError("a nested list is not a plan value")
        return tuple(item for item in items if not isinstance(item, tuple))
    raise ValueError(f"a {'null' if value is None else 'struct'} value is not a plan literal")


def condition_from_proto(message: authz_pb2.PlanCondition) -> Node:
    """A PlanCondition message as a condition tree; ValueError for a malformed one."""
    kind = message.WhichOneof("node")
    if kind == "is_null":
        return planast.IsNull(message.is_null)
    if kind == "compare":
        c = message.compare
        if c.operator not in _BY_NUMBER:
            raise ValueError(f"unknown plan operator {c.operator}")
        return planast.Compare(_BY_NUMBER[c.operator], c.field, _literal(c.value))
    if kind == "negate":
        return planast.Not(condition_from_proto(message.negate))
    if kind in ("all", "any"):
        children = tuple(condition_from_proto(c) for c in getattr(message, kind).conditions)
        return planast.All(children) if kind == "all" else planast.AnyOf(children)
    raise ValueError("an empty plan condition")
