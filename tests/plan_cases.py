"""A fixed table of data filtering cases for the PHP and TypeScript query adapters.

One policy (the demo model, lines on owner, org_id, status and amount with `&&`, `||`,
`!`, `in`, an allow beside a deny, a single order beside the list's template), one table
of orders with NULLs in every column, principals from an admin to a token that is
refused, and the actions. `expected_ids` asks the real authz's Check for every row,
sending the row's non-NULL columns as attributes (NULL is an attribute not sent): the
adapters' rows must be exactly those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from authz.api.v1 import authz_pb2
from authz.app import App, demo_policy_dir
from tests.conftest import RunningServer, settings_for
from tests.issuer import Issuer
from tests.policy_dirs import write_policy

TEMPLATE = "/api/orders/:id"
COLUMNS = ("owner", "org_id", "status", "amount")
# The tables name org_id `org`: the adapters' field maps rename it.
TABLE_COLUMNS = {"owner": "owner", "org_id": "org", "status": "status", "amount": "amount"}

POLICY = """\
p, read:orders, /api/orders/:id, GET, r.obj.org_id == r.sub.org_id, allow
p, *, /api/orders/:id, GET, r.obj.owner == r.sub.id, allow
p, *, /api/orders/:id, GET, r.obj.status == 'archived' && !(r.obj.owner == r.sub.id), deny
p, *, /api/orders/3, GET, True, allow
p, update:orders, /api/orders/:id, PUT, r.obj.org_id == r.sub.org_id && r.obj.amount <= 100, allow
p, *, /api/orders/:id, PUT, r.obj.owner == r.sub.id && r.obj.status in ('draft', 'open'), allow
p, delete:orders, /api/orders/:id, DELETE, !(r.obj.status == 'shipped') || r.obj.amount < 10, allow
p, *, /api/orders/:id, DELETE, r.obj.amount > 500, deny
p, admin, /api/orders/:id, *, True, allow
p, list:all, /api/*, GET, True, allow
p, list:all, /api/orders/:id, PUT, True, allow
p, list:all, /api/*, PUT, True, deny
"""

ROWS: tuple[dict[str, Any], ...] = tuple(
    dict(zip(("id", *COLUMNS), row, strict=True))
    for row in (
        ("1", "alice", "o1", "draft", 50),
        ("2", "bob", "o1", "open", 150),
        ("3", "carol", "o2", "shipped", 5),
        ("4", "bob", "o2", "archived", 700),
        ("5", None, "o1", "draft", None),
        ("6", "alice", None, None, 100),
        ("7", "dave", "o1", "archived", 20),
        ("8", "bob", None, "open", 600),
        ("9", None, None, None, None),
        ("10", "carol", "o2", "shipped", 100),
        # keyMatch2's `/*` takes no line break but a final one; LIKE's own characters.
        ("a\nb", "frank", "o1", None, 1),
        ("a\n", "frank", "o1", None, 1),
        ("\n\n", None, None, None, None),
        ("%", "frank", "o2", None, 2),
        ("_", "bob", "o1", None, 3),
        ("\\", "alice", "o1", None, 4),
        # Not one path segment: `:id` (`[^/]+`) refuses them, `/*` takes them.
        ("", "frank", "o1", None, 5),
        ("a/b", "dave", "o1", None, 6),
        ("/", "bob", "o1", None, 7),
    )
)
ACTIONS = ("GET", "PUT", "DELETE", "POST")


def tokens(issuer: Issuer) -> dict[str, str]:
    """The principals, by name: their raw access tokens (one expired, one not a JWT)."""
    return {
        "alice": issuer.mint("alice", permissions=["read:orders", "update:orders"], org_id="o1"),
        "bob": issuer.mint("bob", permissions=[], org_id="o1"),
        "carol": issuer.mint("carol", permissions=["delete:orders", "read:orders"], org_id="o2"),
        "dave": issuer.mint("dave", roles=["admin"]),
        "erin": issuer.mint("erin", permissions=["read:orders", "update:orders"]),
        "frank": issuer.mint("frank", permissions=["list:all"]),
        "expired": issuer.mint("alice", permissions=["read:orders"], org_id="o1", exp_in=-600),
        "garbage": "not-a-jwt",
    }


def serve(issuer: Issuer, tmp: Path) -> RunningServer:
    """A real authz on the cases' policy (the demo model, written under `tmp`), HTTP listener on."""
    model = (demo_policy_dir() / "model.conf").read_text()
    roles = "g, admin, read:orders\n"
    directory = write_policy(tmp / "plan-cases", model, policy_csv=POLICY, roles_csv=roles)
    app = App(settings_for(issuer, policy_dir=str(directory), http_listen="127.0.0.1:0"))
    app.start()
    running = RunningServer(app)
    running.wait_serving()
    return running


def expected_ids(server: RunningServer, token: str, action: str) -> list[str]:
    """The ids of the rows Check allows, each asked with its non-NULL columns as attributes."""
    allowed = []
    for row in ROWS:
        request = authz_pb2.CheckRequest(token=token, resource=f"/api/orders/{row['id']}", action=action)
        request.attributes.update({k: row[k] for k in COLUMNS if row[k] is not None})
        if server.stub.Check(request, timeout=5).allowed:
            allowed.append(row["id"])
    return sorted(allowed)


def table_rows() -> list[dict[str, Any]]:
    """ROWS with the tables' column names."""
    return [{"id": r["id"], **{TABLE_COLUMNS[k]: r[k] for k in COLUMNS}} for r in ROWS]


# The tables' column types as the adapters are told them (PHP `$types`, Kysely `columnTypes`).
COLUMN_TYPES = {"id": "text", "owner": "text", "org_id": "text", "status": "text", "amount": "number"}


def _compare(op: str, field: str, value: Any) -> dict[str, Any]:
    return {"compare": {"operator": f"PLAN_OPERATOR_{op}", "field": field, "value": value}}


# A column compared with a value of its own type selects what Check allows; with another type
# (which SQLite and PostgreSQL would convert, Check never does) the plan is refused. Each case:
# the ids of ROWS it selects, or the words of the refusal after the field's name.
TEXT_WITH_NUMBER = "(a text column) with a number"
NUMBER_WITH_STRING = "(a number column) with a string"
TYPE_CASES: list[tuple[str, dict[str, Any], list[str] | str]] = [
    ("number column, number", _compare("GT", "amount", 100), ["2", "4", "8"]),
    ("text column, strings", _compare("IN", "status", ["draft", "open"]), ["1", "2", "5", "8"]),
    ("null check, no value", {"isNull": "amount"}, ["\n\n", "5", "9"]),
    ("number column, string", _compare("EQ", "amount", "50"), NUMBER_WITH_STRING),
    ("text column, number", _compare("EQ", "owner", 5), TEXT_WITH_NUMBER),
    ("text column, boolean", _compare("NE", "status", True), "(a text column) with a boolean"),
    ("number column, a string in the list", _compare("IN", "amount", [5, "50"]), NUMBER_WITH_STRING),
    ("number column, like", _compare("LIKE", "amount", "5%"), NUMBER_WITH_STRING),
    (
        "deep in the tree",
        {"any": {"conditions": [_compare("EQ", "owner", "bob"), {"negate": _compare("LT", "amount", "9")}]}},
        NUMBER_WITH_STRING,
    ),
]


def type_cases() -> list[dict[str, Any]]:
    """TYPE_CASES as JSON plans."""
    return [
        {"name": name, "plan": {"kind": "PLAN_KIND_CONDITIONAL", "condition": c}, "expected": e}
        for name, c, e in TYPE_CASES
    ]
