"""PlanResources over every transport, the Python client with SQLAlchemy, and `authz plan`."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from google.protobuf import json_format
from sqlalchemy import Column, MetaData, String, Table, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from authz.api.v1 import authz_pb2
from authz.api.v1.authz_connect import AuthorizationServiceClientSync
from authz.cli.main import main
from authz_client import AsyncAuthzClient, AuthzClient, AuthzError, PlanResult
from authz_client.sqlalchemy import PlanFieldError, authorized_query, plan_where
from tests.conftest import settings_for
from tests.policy_dirs import copy_demo, line_number
from tests.test_http import post_json, same_answer

TEMPLATE = "/api/orders/:id"


def test_grpc_plan_for_the_demo(server, issuer):
    token = issuer.mint(sub="ada", roles=["admin"])
    request = authz_pb2.PlanResourcesRequest(token=token, action="DELETE", resource=TEMPLATE, explain=True)
    reply = server.stub.PlanResources(request, timeout=5)
    assert reply.kind == authz_pb2.PLAN_KIND_CONDITIONAL
    assert reply.subject == "ada"
    assert reply.fields == ["id", "status"]
    assert reply.policy_version and reply.decision_id
    assert [r.split(":")[1] for r in reply.matched_rules] == ["13", "14"]
    assert json_format.MessageToDict(reply.condition) == {
        "all": {
            "conditions": [
                {
                    "negate": {
                        "any": {
                            "conditions": [
                                {
                                    "compare": {
                                        "operator": "PLAN_OPERATOR_EQ",
                                        "field": "status",
                                        "value": "shipped",
                                    }
                                },
                                {"isNull": "status"},
                            ]
                        }
                    }
                },
                # `:id` is one non-empty segment (`[^/]+`).
                {"compare": {"operator": "PLAN_OPERATOR_NE", "field": "id", "value": ""}},
                {"negate": {"compare": {"operator": "PLAN_OPERATOR_LIKE", "field": "id", "value": "%/%"}}},
            ]
        }
    }
    request.explain = False
    assert not server.stub.PlanResources(request, timeout=5).matched_rules


def test_a_refused_token_is_always_denied_with_its_reason(server, issuer):
    for token, reason in (
        ("", authz_pb2.REASON_TOKEN_MISSING),
        ("not-a-jwt", authz_pb2.REASON_TOKEN_MALFORMED),
        (issuer.mint(exp_in=-600, roles=["admin"]), authz_pb2.REASON_TOKEN_EXPIRED),
    ):
        reply = server.stub.PlanResources(
            authz_pb2.PlanResourcesRequest(token=token, action="GET", resource=TEMPLATE), timeout=5
        )
        assert (reply.kind, reply.reason, reply.subject) == (authz_pb2.PLAN_KIND_ALWAYS_DENIED, reason, "")
        assert not reply.HasField("condition")


def test_the_metadata_carries_the_token(server, issuer):
    token = issuer.mint(permissions=["read:orders"])
    reply = server.stub.PlanResources(
        authz_pb2.PlanResourcesRequest(action="GET", resource=TEMPLATE),
        metadata=[("authorization", f"Bearer {token}")],
        timeout=5,
    )
    assert (reply.kind, reply.message) == (
        authz_pb2.PLAN_KIND_CONDITIONAL,
        "id != '' AND NOT (id like '%/%')",
    )


def test_unknown_action_or_resource_is_always_denied(server, issuer):
    token = issuer.mint(roles=["admin"])
    for action, resource in (("FLY", TEMPLATE), ("GET", "/api/planets/:id")):
        reply = server.stub.PlanResources(
            authz_pb2.PlanResourcesRequest(token=token, action=action, resource=resource), timeout=5
        )
        assert (reply.kind, reply.reason) == (
            authz_pb2.PLAN_KIND_ALWAYS_DENIED,
            authz_pb2.REASON_NO_MATCHING_RULE,
        )


def test_bad_input_is_refused_like_check(server, issuer):
    token = issuer.mint(roles=["admin"])
    for resource, action in (("", "GET"), (TEMPLATE, ""), ("/" + "a" * 5000, "GET")):
        plan = authz_pb2.PlanResourcesRequest(token=token, action=action, resource=resource)
        check = authz_pb2.CheckRequest(token=token, action=action, resource=resource)
        with pytest.raises(grpc.RpcError) as planned:
            server.stub.PlanResources(plan, timeout=5)
        with pytest.raises(grpc.RpcError) as checked:
            server.stub.Check(check, timeout=5)
        assert planned.value.code() == checked.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The attribute bounds (values, nesting, bytes) are Check's.
    many = {f"a{i}": i for i in range(300)}
    plan = authz_pb2.PlanResourcesRequest(token=token, action="GET", resource=TEMPLATE)
    plan.attributes.update(many)
    check = authz_pb2.CheckRequest(token=token, action="GET", resource="/api/orders/1")
    check.attributes.update(many)
    with pytest.raises(grpc.RpcError) as planned:
        server.stub.PlanResources(plan, timeout=5)
    with pytest.raises(grpc.RpcError) as checked:
        server.stub.Check(check, timeout=5)
    assert planned.value.code() == checked.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert planned.value.details() == checked.value.details()
    huge = authz_pb2.PlanResourcesRequest(token=token, action="GET", resource=TEMPLATE)
    huge.attributes.update({"blob": "x" * (5 * 1024 * 1024)})
    with pytest.raises(grpc.RpcError) as refused:
        server.stub.PlanResources(huge, timeout=10)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_connect_json_and_grpc_web_give_the_grpc_answer(http_server, issuer):
    token = issuer.mint(sub="bob", permissions=["update:orders"], org_id="org_1")
    payload = {"token": token, "action": "PUT", "resource": TEMPLATE, "explain": True}
    request = json_format.ParseDict(payload, authz_pb2.PlanResourcesRequest())
    via_grpc = http_server.stub.PlanResources(request, timeout=5)
    assert via_grpc.kind == authz_pb2.PLAN_KIND_CONDITIONAL
    reply = post_json(http_server.http_url, "PlanResources", payload)
    assert reply.status == 200
    body = reply.json()
    assert body["kind"] == "PLAN_KIND_CONDITIONAL"
    assert body["fields"] == ["id", "org_id", "owner", "status"]
    same_answer(via_grpc, json_format.Parse(reply.body, authz_pb2.PlanResourcesResponse()))
    for protocol in (ProtocolType.CONNECT, ProtocolType.GRPC_WEB):
        with AuthorizationServiceClientSync(http_server.http_url, protocol=protocol) as client:
            same_answer(
                http_server.stub.PlanResources(request, timeout=5),
                client.plan_resources(request, timeout_ms=5000),
            )


def test_an_unplannable_line_is_failed_precondition_on_every_transport(issuer, make_server, tmp_path):
    directory = copy_demo(tmp_path)
    with (directory / "policy.csv").open("a") as policy:
        policy.write("p, *, /api/orders/:id, PATCH, regexMatch(r.obj.owner, '^a'), allow\n")
    line = line_number(directory / "policy.csv", "PATCH")
    running = make_server(
        settings_for(issuer, policy_dir=str(directory), http_listen="127.0.0.1:0", cors_origins=())
    )
    token = issuer.mint(roles=["admin"])
    request = authz_pb2.PlanResourcesRequest(token=token, action="PATCH", resource=TEMPLATE)
    with pytest.raises(grpc.RpcError) as refused:
        running.stub.PlanResources(request, timeout=5)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details().startswith(f"policy.csv:{line}: cannot plan regexMatch() of r.obj.owner")
    with (
        AuthorizationServiceClientSync(running.http_url) as client,
        pytest.raises(ConnectError) as connect_refused,
    ):
        client.plan_resources(request, timeout_ms=5000)
    assert connect_refused.value.code.value == "failed_precondition"
    with AuthzClient(running.address) as client, pytest.raises(AuthzError) as client_refused:
        client.plan_resources("PATCH", TEMPLATE, token=token)
    assert client_refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    # The other routes still plan.
    request.action = "GET"
    assert running.stub.PlanResources(request, timeout=5).kind == authz_pb2.PLAN_KIND_CONDITIONAL


ORDERS = Table(
    "orders",
    MetaData(),
    Column("order_id", String, primary_key=True),
    Column("owner", String),
    Column("state", String),
)
ROWS = [
    {"order_id": "1", "owner": "bob", "state": "draft"},
    {"order_id": "2", "owner": "bob", "state": "open"},
    {"order_id": "3", "owner": "amy", "state": "draft"},
    {"order_id": "4", "owner": None, "state": "draft"},
    {"order_id": "5", "owner": "bob", "state": None},
]


def test_authorized_query_filters_a_table_as_check_would(server, issuer):
    engine = create_engine("sqlite://")
    ORDERS.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(ORDERS.insert(), ROWS)
    bob = issuer.mint(sub="bob")
    fields = {"status": "state", "id": "order_id"}
    with AuthzClient(server.address) as client, engine.connect() as connection:
        statement = authorized_query(client, bob, "PUT", TEMPLATE, select(ORDERS.c.order_id), fields=fields)
        assert [r[0] for r in connection.execute(statement)] == ["1"]
        for row in ROWS:
            attributes = {
                k: v for k, v in (("owner", row["owner"]), ("status", row["state"])) if v is not None
            }
            allowed = client.check(f"/api/orders/{row['order_id']}", "PUT", token=bob, attributes=attributes)
            assert allowed.allowed == (row["order_id"] == "1")
        nobody = authorized_query(client, "", "PUT", TEMPLATE, select(ORDERS.c.order_id), fields=fields)
        assert list(connection.execute(nobody)) == []
        # `status` maps to no column without the field map: refused, never dropped.
        with pytest.raises(PlanFieldError, match="'status'"):
            authorized_query(
                client, bob, "PUT", TEMPLATE, select(ORDERS.c.order_id), fields={"id": "order_id"}
            )
        plan = client.plan_resources("PUT", TEMPLATE, token=bob)
        assert plan.kind == "CONDITIONAL" and plan.fields == ("id", "owner", "status")
        clause = plan_where(plan, ORDERS, fields)
        compiled = clause.compile(engine)
        # Values are bound parameters, never SQL text.
        assert "bob" not in str(compiled) and "bob" in compiled.params.values()


def test_cli_plan_prints_the_condition_and_sample_sql(server, issuer, capsys):
    token = issuer.mint(sub="ada", roles=["admin"])
    code = main(["plan", "DELETE", TEMPLATE, "--address", server.address, "--token", token])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(f"CONDITIONAL  DELETE {TEMPLATE}\n")
    assert (
        "  condition: NOT (status == 'shipped' OR status IS NULL) AND id != '' AND NOT (id like '%/%')\n"
        in out
    )
    assert (
        """  sql:       SELECT * FROM "orders" WHERE NOT ("status" = 'shipped' OR "status" IS NULL) """
        """AND "id" <> '' AND NOT ("id" LIKE '%/%' ESCAPE '\\')\n""" in out
    )
    assert token not in out
    code = main(["plan", "DELETE", TEMPLATE, "--address", server.address, "--token", ""])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("ALWAYS_DENIED") and "REASON_TOKEN_MISSING" in out


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orm_orders"
    order_id: Mapped[str] = mapped_column(primary_key=True)
    owner: Mapped[str | None]
    org_id: Mapped[str | None]
    state: Mapped[str | None]


def test_orm_statement_and_the_async_client(server, issuer):
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    carol = issuer.mint(sub="carol", permissions=["update:orders"], org_id="org_1")
    with Session(engine) as session:
        session.add_all(
            [
                Order(order_id="1", owner="bob", org_id="org_1", state="shipped"),
                Order(order_id="2", owner="carol", org_id="org_2", state="draft"),
                Order(order_id="3", owner="carol", org_id=None, state="open"),
                Order(order_id="4", owner=None, org_id="org_2", state="draft"),
            ]
        )
        session.commit()
        with AuthzClient(server.address) as client:
            statement = authorized_query(
                client,
                carol,
                "PUT",
                TEMPLATE,
                select(Order).order_by(Order.order_id),
                fields={"status": Order.state, "id": Order.order_id},
            )
            assert [o.order_id for o in session.scalars(statement)] == ["1", "2"]

        async def plan() -> PlanResult:
            async with AsyncAuthzClient(server.address) as authz:
                return await authz.plan_resources("PUT", TEMPLATE, token=carol, explain=True)

        result = asyncio.run(plan())
        assert result.kind == "CONDITIONAL" and result.subject == "carol" and len(result.matched_rules) == 2
        where = plan_where(result, Order.__table__, {"status": "state", "id": "order_id"})
        assert [o.order_id for o in session.scalars(select(Order).where(where).order_by(Order.order_id))] == [
            "1",
            "2",
        ]


def test_deeply_nested_attributes_are_refused_like_check(server, issuer):
    token = issuer.mint(roles=["admin"])
    nested: dict[str, object] = {"leaf": 1}
    for _ in range(150):
        nested = {"n": nested}
    codes = []
    for request in (
        authz_pb2.PlanResourcesRequest(token=token, action="GET", resource=TEMPLATE),
        authz_pb2.CheckRequest(token=token, action="GET", resource="/api/orders/1"),
    ):
        request.attributes.update({"deep": nested})
        with pytest.raises(grpc.RpcError) as refused:
            getattr(server.stub, type(request).__name__.removesuffix("Request"))(request, timeout=5)
        codes.append(refused.value.code())
    assert codes[0] == codes[1] != grpc.StatusCode.OK
