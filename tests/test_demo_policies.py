"""Every demo rule (issue 2, item 8) through the real gRPC server with real RS256 tokens."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import struct_pb2

from authz.api.v1 import authz_pb2
from authz.app import demo_policy_dir
from tests.conftest import RunningServer
from tests.issuer import Issuer

UI_ELEMENTS = {
    "ui:menu.orders": "read:orders",
    "ui:menu.reports": "read:reports",
    "ui:menu.admin": "manage:users",
    "ui:button.create-order": "create:orders",
    "ui:button.delete-order": "delete:orders",
}
ALL_PERMISSIONS = sorted({*UI_ELEMENTS.values(), "update:orders"})


def policy_line(fragment: str) -> str:
    """The demo policy line containing `fragment`, as matched_rules names it (`FILE:LINE: ...`)."""
    text = (demo_policy_dir() / "policy.csv").read_text(encoding="utf-8")
    found = [
        f"policy.csv:{number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), start=1)
        if fragment in line and line.startswith("p,")
    ]
    assert len(found) == 1, found
    return found[0]


SHIPPED_DENY = policy_line("DELETE, r.obj.status == 'shipped', deny")
OWN_DRAFT = policy_line("r.obj.owner == r.sub.id && r.obj.status == 'draft'")
SAME_ORG = policy_line("r.obj.org_id == r.sub.org_id")


def check(
    server: RunningServer,
    token: str,
    action: str,
    resource: str,
    attributes: dict[str, Any] | None = None,
    *,
    explain: bool = True,
) -> authz_pb2.CheckResponse:
    attrs = struct_pb2.Struct()
    attrs.update(attributes or {})
    return server.stub.Check(
        authz_pb2.CheckRequest(
            token=token, resource=resource, action=action, attributes=attrs, explain=explain
        )
    )


def allowed(server: RunningServer, token: str, action: str, resource: str, **attributes: Any) -> bool:
    reply = check(server, token, action, resource, attributes)
    assert (reply.reason == authz_pb2.REASON_ALLOWED) == reply.allowed, reply
    return reply.allowed


# -- orders: read and create ----------------------------------------------------------


@pytest.mark.parametrize("resource", ["/api/orders", "/api/orders/42"])
def test_read_orders_needs_read_orders(server: RunningServer, issuer: Issuer, resource: str) -> None:
    assert allowed(server, issuer.mint(permissions=["read:orders"]), "GET", resource)
    reply = check(server, issuer.mint(permissions=["create:orders"]), "GET", resource)
    assert not reply.allowed and reply.reason == authz_pb2.REASON_NO_MATCHING_RULE


def test_create_order_needs_create_orders(server: RunningServer, issuer: Issuer) -> None:
    assert allowed(server, issuer.mint(permissions=["create:orders"]), "POST", "/api/orders")
    assert not allowed(server, issuer.mint(permissions=["read:orders"]), "POST", "/api/orders")
    # create:orders creates on the collection only.
    assert not allowed(server, issuer.mint(permissions=["create:orders"]), "POST", "/api/orders/42")


# -- orders: update --------------------------------------------------------------------


def test_put_own_draft_is_allowed_without_any_permission(server: RunningServer, issuer: Issuer) -> None:
    reply = check(
        server,
        issuer.mint(sub="alice"),
        "PUT",
        "/api/orders/7",
        {"owner": "alice", "status": "draft", "org_id": "org_1"},
    )
    assert reply.allowed and reply.reason == authz_pb2.REASON_ALLOWED
    assert list(reply.matched_rules) == [OWN_DRAFT]


def test_put_own_order_past_draft_is_denied(server: RunningServer, issuer: Issuer) -> None:
    reply = check(
        server,
        issuer.mint(sub="alice"),
        "PUT",
        "/api/orders/7",
        {"owner": "alice", "status": "submitted", "org_id": "org_1"},
    )
    assert not reply.allowed and reply.reason == authz_pb2.REASON_NO_MATCHING_RULE


def test_put_someone_elses_draft_is_denied(server: RunningServer, issuer: Issuer) -> None:
    reply = check(
        server,
        issuer.mint(sub="alice"),
        "PUT",
        "/api/orders/7",
        {"owner": "bob", "status": "draft", "org_id": "org_1"},
    )
    assert not reply.allowed and reply.reason == authz_pb2.REASON_NO_MATCHING_RULE


def test_update_orders_within_the_tokens_org(server: RunningServer, issuer: Issuer) -> None:
    token = issuer.mint(sub="carol", permissions=["update:orders"], org_id="org_1")
    order = {"owner": "bob", "status": "shipped", "org_id": "org_1"}
    reply = check(server, token, "PUT", "/api/orders/7", order)
    assert reply.allowed and list(reply.matched_rules) == [SAME_ORG]
    other_org = check(server, token, "PUT", "/api/orders/7", {**order, "org_id": "org_2"})
    assert not other_org.allowed and other_org.reason == authz_pb2.REASON_NO_MATCHING_RULE


def test_update_orders_without_a_token_org_is_unknown_so_denied(
    server: RunningServer, issuer: Issuer
) -> None:
    token = issuer.mint(sub="carol", permissions=["update:orders"])
    reply = check(
        server, token, "PUT", "/api/orders/7", {"owner": "bob", "status": "draft", "org_id": "org_1"}
    )
    assert not reply.allowed
    assert reply.reason == authz_pb2.REASON_NO_MATCHING_RULE
    assert "r.sub.org_id" in reply.message


# -- orders: delete --------------------------------------------------------------------


def test_delete_needs_delete_orders(server: RunningServer, issuer: Issuer) -> None:
    assert allowed(
        server, issuer.mint(permissions=["delete:orders"]), "DELETE", "/api/orders/7", status="draft"
    )
    reply = check(
        server,
        issuer.mint(permissions=["update:orders"], org_id="org_1"),
        "DELETE",
        "/api/orders/7",
        {"status": "draft", "org_id": "org_1"},
    )
    assert not reply.allowed and reply.reason == authz_pb2.REASON_NO_MATCHING_RULE


@pytest.mark.parametrize(
    "grants",
    [
        {"permissions": ["delete:orders"]},
        {"roles": ["admin"]},
        {"roles": ["admin"], "permissions": ALL_PERMISSIONS},
    ],
    ids=["delete:orders", "admin", "admin+everything"],
)
def test_nobody_deletes_a_shipped_order(
    server: RunningServer, issuer: Issuer, grants: dict[str, Any]
) -> None:
    reply = check(server, issuer.mint(**grants), "DELETE", "/api/orders/7", {"status": "shipped"})
    assert not reply.allowed
    assert reply.reason == authz_pb2.REASON_EXPLICIT_DENY
    assert list(reply.matched_rules) == [SHIPPED_DENY]
    assert SHIPPED_DENY.startswith("policy.csv:") and ": p, *, /api/orders/:id, DELETE, " in SHIPPED_DENY


def test_explain_off_returns_no_matched_rules(server: RunningServer, issuer: Issuer) -> None:
    token = issuer.mint(roles=["admin"])
    denied = check(server, token, "DELETE", "/api/orders/7", {"status": "shipped"}, explain=False)
    assert denied.reason == authz_pb2.REASON_EXPLICIT_DENY and list(denied.matched_rules) == []
    granted = check(server, token, "GET", "/api/orders/7", explain=False)
    assert granted.allowed and list(granted.matched_rules) == []


def test_delete_without_status_is_attribute_missing(server: RunningServer, issuer: Issuer) -> None:
    reply = check(server, issuer.mint(roles=["admin"]), "DELETE", "/api/orders/7", {"owner": "alice"})
    assert not reply.allowed
    assert reply.reason == authz_pb2.REASON_ATTRIBUTE_MISSING
    assert "r.obj.status" in reply.message
    assert list(reply.matched_rules) == [SHIPPED_DENY]


# -- reports and administration -----------------------------------------------------------


def test_reports_below_api_reports_need_read_reports(server: RunningServer, issuer: Issuer) -> None:
    reader = issuer.mint(permissions=["read:reports"])
    for resource in ("/api/reports/sales", "/api/reports/2024/q1/summary"):
        assert allowed(server, reader, "GET", resource)
        assert not allowed(server, issuer.mint(permissions=["read:orders"]), "GET", resource)
    assert not allowed(server, reader, "POST", "/api/reports/sales")
    assert not allowed(server, reader, "GET", "/api/reports")  # the rule covers paths below it


@pytest.mark.parametrize(
    "grants", [{"roles": ["admin"]}, {"permissions": ["manage:users"]}], ids=["admin", "manage"]
)
def test_admin_area_for_admin_role_or_manage_users(
    server: RunningServer, issuer: Issuer, grants: dict[str, Any]
) -> None:
    token = issuer.mint(**grants)
    for action, resource in (
        ("GET", "/api/admin/users"),
        ("POST", "/api/admin/users/9/block"),
        ("DELETE", "/api/admin/x"),
    ):
        assert allowed(server, token, action, resource)


def test_admin_area_denied_otherwise(server: RunningServer, issuer: Issuer) -> None:
    token = issuer.mint(permissions=[p for p in ALL_PERMISSIONS if p != "manage:users"], roles=["editor"])
    assert not allowed(server, token, "GET", "/api/admin/users")


def test_admin_role_implies_every_permission(server: RunningServer, issuer: Issuer) -> None:
    admin = issuer.mint(sub="root", roles=["admin"], org_id="org_1")
    assert allowed(server, admin, "GET", "/api/orders")
    assert allowed(server, admin, "GET", "/api/orders/1")
    assert allowed(server, admin, "POST", "/api/orders")
    assert allowed(server, admin, "PUT", "/api/orders/1", org_id="org_1", owner="bob", status="shipped")
    assert allowed(server, admin, "DELETE", "/api/orders/1", status="draft")
    assert allowed(server, admin, "GET", "/api/reports/sales")
    for element in UI_ELEMENTS:
        assert allowed(server, admin, "view", element)
    # The role, not a name that merely looks like it.
    assert not allowed(server, issuer.mint(sub="root", roles=["administrator"]), "GET", "/api/orders")


# -- machine tokens ---------------------------------------------------------------------


def test_machine_scope_grants_but_user_scope_does_not(server: RunningServer, issuer: Issuer) -> None:
    machine = issuer.mint(machine=True, scope="read:orders", permissions=None)
    assert allowed(server, machine, "GET", "/api/orders/42")
    assert not allowed(server, machine, "POST", "/api/orders")
    user = issuer.mint(sub="alice", scope="openid profile read:orders", permissions=[])
    reply = check(server, user, "GET", "/api/orders/42")
    assert not reply.allowed and reply.reason == authz_pb2.REASON_NO_MATCHING_RULE


# -- UI elements ------------------------------------------------------------------------


@pytest.mark.parametrize("element", sorted(UI_ELEMENTS))
def test_each_ui_element_needs_its_grant(server: RunningServer, issuer: Issuer, element: str) -> None:
    grant = UI_ELEMENTS[element]
    assert allowed(server, issuer.mint(permissions=[grant]), "view", element)
    others = [p for p in ALL_PERMISSIONS if p != grant]
    assert not allowed(server, issuer.mint(permissions=others), "view", element)
    assert not allowed(server, issuer.mint(permissions=[grant]), "GET", element)


def test_admin_menu_also_for_the_admin_role(server: RunningServer, issuer: Issuer) -> None:
    assert allowed(server, issuer.mint(roles=["admin"]), "view", "ui:menu.admin")


def test_visibility_by_prefix(server: RunningServer, issuer: Issuer) -> None:
    token = issuer.mint(permissions=["read:orders", "read:reports"])
    reply = server.stub.GetVisibility(authz_pb2.GetVisibilityRequest(token=token, prefix="ui:"))
    assert list(reply.visible) == ["ui:menu.orders", "ui:menu.reports"]
    assert set(reply.decisions) == set(UI_ELEMENTS)
    assert {k for k, v in reply.decisions.items() if v} == {"ui:menu.orders", "ui:menu.reports"}
    assert reply.reason == authz_pb2.REASON_UNSPECIFIED


# -- everything else -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("GET", "/api/customers/1"),
        ("GET", "/api/orders/42/items"),
        ("PATCH", "/api/orders/42"),
        ("view", "/api/orders"),
        ("view", "ui:menu.unknown"),
        ("GET", "/"),
        ("POST", "/api/reports/x"),
    ],
)
def test_everything_else_is_denied(server: RunningServer, issuer: Issuer, action: str, resource: str) -> None:
    token = issuer.mint(permissions=ALL_PERMISSIONS, org_id="org_1")
    reply = check(server, token, action, resource, {"owner": "alice", "status": "draft", "org_id": "org_1"})
    assert not reply.allowed
    assert reply.reason == authz_pb2.REASON_NO_MATCHING_RULE
    assert list(reply.matched_rules) == []
