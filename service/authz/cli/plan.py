"""`authz plan`: ask a running service for a PlanResources plan and print it readably and as SQL."""

from __future__ import annotations

import argparse

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from authz.cli.attrs import add_enforce_context
from authz.cli.remote import add_connection_args, channel_for, request_structs
from authz.engine import planast, plansql
from authz.printable import escaped
from authz.transports.planproto import condition_from_proto


def add_plan_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `authz plan ACTION RESOURCE`."""
    plan = commands.add_parser(
        "plan", help="ask a running service which rows of a list the token may act on (PlanResources)"
    )
    plan.add_argument("action", help="GET, view, approve ...")
    plan.add_argument("resource", help="the template the rows share: /api/orders/:id")
    plan.add_argument("--attr", action="append", help="attribute every row shares, key=value (string)")
    plan.add_argument("--attrs-json", help="shared attributes as a JSON object (typed)")
    plan.add_argument("--ctx", action="append", help="context attribute key=value")
    plan.add_argument("--context-json", help="context attributes as a JSON object")
    plan.add_argument("--table", help="table name in the sample SQL (default: from the resource)")
    add_enforce_context(plan)
    add_connection_args(plan)
    plan.set_defaults(func=run_plan)


def _table(resource: str) -> str:
    # `/api/orders/:id` -> orders: the last literal segment before a parameter.
    literal = [s for s in resource.split("/") if s and not s.startswith(":")]
    return literal[-1] if literal else "resources"


def run_plan(ns: argparse.Namespace) -> int:
    """Print the plan; exit 0 when some rows may be allowed, 1 when none are."""
    attrs, context = request_structs(ns)
    request = authz_pb2.PlanResourcesRequest(
        token=ns.token,
        action=ns.action,
        resource=ns.resource,
        attributes=attrs,
        context=context,
        explain=True,
        enforce_context=ns.enforce_context,
    )
    with channel_for(ns) as channel:
        reply = authz_pb2_grpc.AuthorizationServiceStub(channel).PlanResources(request, timeout=ns.timeout)
    kind = authz_pb2.PlanKind.Name(reply.kind).removeprefix("PLAN_KIND_")
    print(f"{kind}  {ns.action} {ns.resource}")
    print(f"  subject:   {reply.subject or '-'}")
    if reply.kind == authz_pb2.PLAN_KIND_CONDITIONAL:
        condition = condition_from_proto(reply.condition)
        print(f"  condition: {planast.render(condition)}")
        print(f"  fields:    {escaped(', '.join(reply.fields))}")
        print(f"  sql:       {plansql.sample_sql(condition, ns.table or _table(ns.resource))}")
    else:
        reason = authz_pb2.Reason.Name(reply.reason)
        print(f"  message:   {escaped(reply.message)}" + (f" ({reason})" if reply.reason else ""))
    print(f"  policy:    {reply.policy_version}   decision: {reply.decision_id}")
    if reply.matched_rules:
        print("  rules:")
        for rule in reply.matched_rules:
            print(f"    {escaped(rule)}")
    return 1 if reply.kind == authz_pb2.PLAN_KIND_ALWAYS_DENIED else 0
