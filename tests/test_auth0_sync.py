"""`authz auth0 plan | apply | export | action` against a stateful loopback Management API."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from authz.app import demo_policy_dir
from authz.auth0.declare import declare
from authz.auth0.mgmt import Management, ManagementError
from authz.cli.main import main
from authz.policy.auth0 import Auth0SourceError, read_declarations
from authz.policy.lint import lint_directory
from tests.auth0_mgmt import MgmtTenant, serve

API = "https://orders.example.com"
DESCRIPTIONS = {
    "read:orders": "List and open orders",
    "create:orders": "Place orders",
    "update:orders": "Change orders of your organisation",
    "delete:orders": "Delete orders that have not shipped",
    "read:reports": "Read the reports",
    "manage:users": "Manage the users of the back office",
}
PERMISSIONS = sorted(DESCRIPTIONS)


@pytest.fixture
def tenant(monkeypatch: pytest.MonkeyPatch) -> Iterator[MgmtTenant]:
    """A tenant that drifted: a stale description, a missing permission, one only Auth0 has,
    an admin role users hold that lacks a grant, and a role the policies do not define."""
    fake = MgmtTenant()
    fake.add_api("https://x/api/v2/", "Auth0 Management API", [], is_system=True)
    scopes = [(p, DESCRIPTIONS[p]) for p in PERMISSIONS if p != "manage:users"]
    scopes[0] = (scopes[0][0], "old text")  # create:orders
    fake.add_api(API, "Orders API", [*scopes, ("export:orders", "Export orders")])
    fake.add_role("admin", "Every permission of the orders app", [(API, "read:orders")], users=3)
    fake.add_role("legacy", "Before the policies", [(API, "export:orders")], users=1)
    with serve(fake):
        monkeypatch.setenv("AUTH0_DOMAIN", fake.url)
        monkeypatch.setenv("AUTH0_CLIENT_ID", fake.client_id)
        monkeypatch.setenv("AUTH0_CLIENT_SECRET", fake.client_secret)
        monkeypatch.setenv("AUTHZ_AUDIENCE", API)
        monkeypatch.delenv("AUTHZ_CONFIG", raising=False)
        yield fake


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["auth0", *args])
    out, err = capsys.readouterr()
    return code, out, err


def demo() -> str:
    return str(demo_policy_dir())


def test_plan_lists_every_difference_and_exits_2(
    tenant: MgmtTenant, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "plan", demo())
    assert (code, err) == (2, "")
    grants = "create:orders, delete:orders, manage:users, read:reports, update:orders"
    assert out.splitlines() == [
        f"Auth0 {tenant.url} against the policies in {demo()}",
        f"API {API}",
        "  ~ update        permission create:orders  description was 'old text'",
        "    unchanged     permission delete:orders",
        "  + create        permission manage:users  'Manage the users of the back office'",
        "    unchanged     permission read:orders",
        "    unchanged     permission read:reports",
        "    unchanged     permission update:orders",
        "  ? only in Auth0 permission export:orders  kept; --prune deletes it",
        "roles",
        f"  ~ update        role admin  grant {grants}",
        "  ? only in Auth0 role legacy  kept; --prune deletes it",
        "3 change(s) pending (2 update, 1 create): `authz auth0 apply` makes them",
    ]


def test_plan_apply_plan_shows_no_drift_and_the_role_keeps_its_id(
    tenant: MgmtTenant, capsys: pytest.CaptureFixture[str]
) -> None:
    admin_id = next(r["id"] for r in tenant.roles if r["name"] == "admin")
    code, out, _ = run(capsys, "apply", demo(), "--yes")
    assert code == 0, out
    assert f"done: API {API}: update permission create:orders; create permission manage:users" in out
    assert (
        "done: role admin: grant create:orders, delete:orders, manage:users, read:reports, update:orders"
        in out
    )
    code, out, _ = run(capsys, "plan", demo())
    assert code == 0, out
    assert out.splitlines()[-1] == "in sync: nothing to change"
    assert tenant.scopes_of(API) == {**DESCRIPTIONS, "export:orders": "Export orders"}
    assert tenant.grants_of("admin") == {(API, p) for p in PERMISSIONS}
    assert next(r["id"] for r in tenant.roles if r["name"] == "admin") == admin_id
    assert {r["name"] for r in tenant.roles} == {"admin", "legacy"}  # nothing deleted without --prune
    assert not any(method == "DELETE" for method, _, _ in tenant.writes)


def test_a_new_role_is_created_with_its_grants(
    tenant: MgmtTenant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = Path(shutil.copytree(demo_policy_dir(), tmp_path / "policies"))
    with (policies / "roles.csv").open("a") as f:
        f.write("# role: support: Answers customers\ng, support, read:orders\ng, support, read:reports\n")
    code, out, _ = run(capsys, "apply", str(policies), "--yes")
    assert code == 0, out
    assert "done: create role support" in out
    assert tenant.grants_of("support") == {(API, "read:orders"), (API, "read:reports")}
    assert next(r for r in tenant.roles if r["name"] == "support")["description"] == "Answers customers"
    assert run(capsys, "plan", str(policies))[0] == 0


def test_a_failure_half_way_reports_what_was_applied_and_a_second_apply_converges(
    tenant: MgmtTenant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = Path(shutil.copytree(demo_policy_dir(), tmp_path / "policies"))
    with (policies / "roles.csv").open("a") as f:
        f.write("g, support, read:orders\n")
    tenant.fail_write, tenant.fail_repeats = 2, 4  # the second write fails, and each of its retries
    code, out, _ = run(capsys, "apply", str(policies), "--yes")
    assert code == 1
    grants = "create:orders, delete:orders, manage:users, read:reports, update:orders"
    assert out.splitlines()[-5:] == [
        f"done: API {API}: update permission create:orders; create permission manage:users",
        f"failed: role admin: grant {grants}: add role permissions (POST /api/v2/roles/{{id}}/permissions): "
        "HTTP 503: The service is temporarily unavailable",
        "not applied: create role support",
        "not applied: role support: grant read:orders",
        "1 step(s) applied, 1 failed, 2 not attempted; run `authz auth0 apply` again to finish",
    ]
    assert tenant.grants_of("admin") == {(API, "read:orders")}
    assert not any(r["name"] == "support" for r in tenant.roles)

    code, out, _ = run(capsys, "plan", str(policies))
    assert code == 2 and "  ~ update        role admin  grant" in out
    assert "permission create:orders  description" not in out  # the done part is not redone
    code, out, _ = run(capsys, "apply", str(policies), "--yes")
    assert code == 0, out
    assert "done: API" not in out
    assert run(capsys, "plan", str(policies))[0] == 0
    assert tenant.grants_of("support") == {(API, "read:orders")}


def test_a_tenant_that_does_not_answer_times_out(
    tenant: MgmtTenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant.stall = True
    code, _, err = run(capsys, "plan", demo(), "--timeout", "0.2")
    assert code == 1 and err == f"authz: {tenant.url}/oauth/token: no answer within 0.2 s\n"
    monkeypatch.setenv("AUTH0_MANAGEMENT_TOKEN", tenant.token)  # no token request: straight to the API
    code, _, err = run(capsys, "plan", demo(), "--timeout", "0.2")
    assert code == 1
    assert err == "authz: list the APIs (GET /api/v2/resource-servers): no answer within 0.2 s\n"


def test_plan_as_json(tenant: MgmtTenant, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", demo(), "--format", "json")
    assert code == 2
    plan = json.loads(out)
    assert plan["tenant"] == tenant.url and plan["in_sync"] is False
    assert {
        "kind": "permission",
        "name": "manage:users",
        "status": "create",
        "api": API,
        "detail": "",
        "grant": [],
        "revoke": [],
    } in plan["items"]


def test_a_token_without_a_scope_names_it(tenant: MgmtTenant, capsys: pytest.CaptureFixture[str]) -> None:
    tenant.token_scopes -= {"update:roles"}
    code, out, _ = run(capsys, "apply", demo(), "--yes")
    assert code == 1
    assert (
        "HTTP 403: Insufficient scope, expected any of: update:roles — the token lacks the scope update:roles"
        in out
    )
    tenant.token_scopes -= {"read:roles"}
    code, _, err = run(capsys, "plan", demo())
    assert code == 1
    assert "list the roles (GET /api/v2/roles): HTTP 403" in err and "lacks the scope read:roles" in err


def test_prune_refuses_what_is_still_used_unless_forced(
    tenant: MgmtTenant, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "plan", demo(), "--prune")
    assert code == 2
    assert (
        "  ! refused       permission export:orders  "
        "not deleted: role legacy grants it (--force deletes it anyway)" in out
    )
    assert "  ! refused       role legacy  not deleted: users hold it (--force deletes it anyway)" in out
    assert run(capsys, "apply", demo(), "--prune", "--yes")[0] == 0
    assert "export:orders" in tenant.scopes_of(API) and any(r["name"] == "legacy" for r in tenant.roles)

    tenant.role_users[next(r["id"] for r in tenant.roles if r["name"] == "legacy")] = []
    code, out, _ = run(capsys, "apply", demo(), "--prune", "--yes")
    assert code == 0, out
    assert "done: delete role legacy" in out and f"done: API {API}: delete permission export:orders" in out
    assert "export:orders" not in tenant.scopes_of(API)
    assert run(capsys, "plan", demo(), "--prune")[0] == 0


def test_force_prunes_a_role_users_hold(tenant: MgmtTenant, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "apply", demo(), "--prune", "--force", "--yes")
    assert code == 0, out
    assert [r["name"] for r in tenant.roles] == ["admin"]
    assert set(tenant.scopes_of(API)) == set(PERMISSIONS)


def test_rate_limits_are_waited_out_and_pages_followed(
    tenant: MgmtTenant, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant.rate_limit_next = 2  # with x-ratelimit-reset one second ahead
    assert run(capsys, "plan", demo())[0] == 2
    # The first call is limited twice, then answered; two roles fill one page of two, and `total` ends it.
    listings = [(path, q.get("page")) for _, path, q in tenant.requests if path.startswith("/api/v2/r")]
    assert listings[:4] == [("/api/v2/resource-servers", ["0"])] * 3 + [("/api/v2/roles", ["0"])]
    tenant.rate_limit_next = 10
    code, _, err = run(capsys, "plan", demo())
    assert code == 1 and "still rate limited after 4 tries (limit 10)" in err


@pytest.mark.parametrize("value", ["nan", "NaN", "soon"])
def test_a_rate_limit_with_an_odd_retry_after_is_waited_out(
    tenant: MgmtTenant, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    # float() reads "nan", which time.sleep refused with a ValueError: a traceback, before.
    tenant.rate_limit_next, tenant.rate_limit_header, tenant.retry_after = 1, "retry-after", value
    assert run(capsys, "plan", demo())[0] == 2
    assert tenant.rate_limit_next == 0


def test_secrets_are_never_printed(
    tenant: MgmtTenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH0_CLIENT_SECRET", "s3cret-value")
    code, out, err = run(capsys, "plan", demo())
    assert code == 1 and "oauth/token: HTTP 401: Unauthorized" in err
    assert "s3cret-value" not in out + err
    monkeypatch.setenv("AUTH0_MANAGEMENT_TOKEN", tenant.token)  # a token wins over the credentials
    assert run(capsys, "plan", demo())[0] == 2
    monkeypatch.setenv("AUTH0_MANAGEMENT_TOKEN", "expired-token")
    code, out, err = run(capsys, "plan", demo())
    assert code == 1 and "HTTP 401" in err and "expired-token" not in out + err


@pytest.mark.parametrize("status", [307, 308])
def test_a_redirect_is_refused_not_followed_with_the_credentials(
    tenant: MgmtTenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], status: int
) -> None:
    # requests (under auth0-python's GetToken) followed a 307 or 308 and posted the client
    # secret again, to wherever the Location pointed.
    with serve(MgmtTenant()) as elsewhere:
        tenant.redirects["/oauth/token"] = (status, f"{elsewhere.url}/oauth/token")
        with pytest.raises(ManagementError) as refused:
            Management(tenant.url)
        assert refused.value.status == status
        code, out, err = run(capsys, "plan", demo())
        assert code == 1 and f"oauth/token: HTTP {status}: a redirect to {elsewhere.url}/oauth/token" in err
        assert "not followed" in err and tenant.client_secret not in out + err

        monkeypatch.setenv("AUTH0_MANAGEMENT_TOKEN", tenant.token)
        tenant.redirects = {"/api/v2/resource-servers": (status, f"{elsewhere.url}/api/v2/resource-servers")}
        code, out, err = run(capsys, "plan", demo())
        assert code == 1 and f"(GET /api/v2/resource-servers): HTTP {status}: a redirect to" in err
    assert elsewhere.requests == [] and elsewhere.token_audiences == []


MALFORMED = {
    "a list": b"[1, 2, 3]",
    "items of the wrong type": b'{"start": 0, "limit": 2, "total": 2, "resource_servers": [1, "x"]}',
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "not UTF-8": b"\xff\xfe{",
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("status", [200, 403])
def test_a_malformed_answer_is_a_clear_error_not_a_traceback(
    tenant: MgmtTenant, capsys: pytest.CaptureFixture[str], body: bytes, status: int
) -> None:
    # Before: the SDKs' ParsingError, RecursionError, UnicodeDecodeError or AttributeError
    # escaped the command as a traceback.
    tenant.raw["/api/v2/resource-servers"] = (status, body)
    code, _, err = run(capsys, "plan", demo())
    assert code == 1
    call = "authz: list the APIs (GET /api/v2/resource-servers): "
    assert err == f"{call}the answer is not the JSON the Management API documents\n" or (
        status == 403 and err.startswith(f"{call}HTTP 403: no explanation")
    )
    tenant.raw = {"/oauth/token": (status if status != 200 else 400, body)}
    code, _, err = run(capsys, "plan", demo())
    assert code == 1 and err.startswith(f"authz: {tenant.url}/oauth/token")
    assert "Traceback" not in err and len(err) < 500


def test_a_server_echoing_the_credentials_has_them_masked(
    tenant: MgmtTenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A proxy's error page may echo the request; a hostile server may send escape sequences.
    secret, token = "s3cret-value-0123456789", "mgmt-token-0123456789abcdef"
    monkeypatch.setenv("AUTH0_CLIENT_SECRET", secret)
    echo = f"you sent client_secret={secret} \x1b]0;owned\x07\x1b[2J" + "x" * 1_000_000
    answer = {"error": "access_denied", "error_description": echo}
    tenant.raw["/oauth/token"] = (401, json.dumps(answer).encode())
    code, out, err = run(capsys, "plan", demo())
    assert code == 1 and "oauth/token: HTTP 401: you sent client_secret=***" in err
    assert secret not in out + err and "\x1b" not in err and len(err) < 1000

    monkeypatch.setenv("AUTH0_MANAGEMENT_TOKEN", token)
    echo = f"Bearer {token} is not valid \x1b[31m" + "y" * 1_000_000
    tenant.raw = {"/api/v2/resource-servers": (401, json.dumps({"message": echo}).encode())}
    code, out, err = run(capsys, "plan", demo())
    assert code == 1 and "HTTP 401: Bearer *** is not valid" in err
    assert token not in out + err and "\x1b" not in err and len(err) < 1000


def test_tenant_names_cannot_drive_the_terminal(
    tenant: MgmtTenant, capsys: pytest.CaptureFixture[str]
) -> None:
    # Role and permission names come from the tenant; before, they were printed as they were.
    tenant.add_role("evil\x1b]0;owned\x07\x1b[2J", "", [(API, "export:orders")])
    code, out, _ = run(capsys, "plan", demo())
    assert code == 2
    assert "\x1b" not in out and "\x07" not in out
    assert "evil\\x1b]0;owned\\x07\\x1b[2J" in out
    # An id from the tenant in an error: the same.
    tenant.roles[-1]["id"] = "rol\x1b[2J"
    tenant.raw[f"/api/v2/roles/{quote(tenant.roles[-1]['id'], safe='')}/permissions"] = (403, b"{}")
    code, _, err = run(capsys, "plan", demo())
    assert code == 1 and "list the permissions of role rol\\x1b[2J" in err and "\x1b" not in err


def test_apply_without_a_terminal_asks_for_yes(
    tenant: MgmtTenant, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "apply", demo())
    assert code == 1 and "run again with --yes" in err
    assert tenant.writes == []


class Terminal(io.StringIO):
    """Typed answers on a standard input that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_apply_asks_on_a_terminal(
    tenant: MgmtTenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    code, out, _ = run(capsys, "apply", demo())
    assert code == 1 and out.endswith(f"Apply 3 change(s) to {tenant.url}? [y/N] nothing applied\n")
    assert tenant.writes == []
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    code, out, _ = run(capsys, "apply", demo())
    assert code == 0 and out.endswith(f"applied 2 step(s); Auth0 now follows {demo()}\n")


def test_a_missing_api_or_audience_is_an_error(
    tenant: MgmtTenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "plan", demo(), "--audience", "https://billing.example.com")
    assert code == 1 and "has no API https://billing.example.com: create it first" in err
    monkeypatch.delenv("AUTHZ_AUDIENCE")
    code, _, err = run(capsys, "plan", demo())
    assert code == 1 and "no API audience" in err


# --- Deploy CLI export -----------------------------------------------------------------------------


def test_export_yaml_is_deploy_cli_input_that_lints_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTHZ_AUDIENCE", API)
    code, out, _ = run(capsys, "export", demo(), "--api-name", "Orders API")
    assert code == 0
    scopes = "".join(f"  - value: {p}\n    description: {DESCRIPTIONS[p]}\n" for p in PERMISSIONS)
    grants = "".join(
        f"  - permission_name: {p}\n    resource_server_identifier: {API}\n" for p in PERMISSIONS
    )
    assert out == (
        f"resourceServers:\n- name: Orders API\n  identifier: {API}\n  scopes:\n{scopes}"
        f"roles:\n- name: admin\n  description: Every permission of the orders app\n  permissions:\n{grants}"
    )
    (tmp_path / "tenant.yaml").write_text(out)
    report = lint_directory(demo_policy_dir(), read_declarations(str(tmp_path / "tenant.yaml")))
    assert report.findings == ()


def test_export_directory_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "tenant"
    code, _, _ = run(
        capsys, "export", demo(), "--format", "directory", "--output", str(target), "--audience", API
    )
    assert code == 0
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.json")) == [
        "resource-servers/https-orders.example.com.json",
        "roles/admin.json",
    ]
    declared = read_declarations(str(target))
    assert declared.apis[0].scopes == tuple(PERMISSIONS)
    assert dict(declared.apis[0].descriptions) == DESCRIPTIONS
    assert lint_directory(demo_policy_dir(), declared).findings == ()
    assert declared.roles == tuple(
        role.__class__(role.name, role.permissions, declared.roles[0].origin, role.description)
        for role in declare(demo_policy_dir(), (API,)).roles
    )


def test_an_unterminated_string_in_an_export_is_refused_in_linear_time(tmp_path: Path) -> None:
    # Each escaped quote after an unterminated one started a literal scanning to the end: about
    # 40 s for these 120 KB before the JSON was refused.
    servers = tmp_path / "tenant" / "resource-servers"
    servers.mkdir(parents=True)
    (servers / "api.json").write_text('{"identifier": "' + '\\"' * 60_000)
    started = time.perf_counter()
    with pytest.raises(Auth0SourceError, match="not valid JSON"):
        read_declarations(str(tmp_path / "tenant"))
    assert time.perf_counter() - started < 10
    # Placeholders still stand for values outside strings and stay text inside them.
    (servers / "api.json").write_text('{"identifier": "https://x.example ##KEEP##", "token_lifetime": ##T##}')
    assert read_declarations(str(tmp_path / "tenant")).apis[0].identifier == "https://x.example ##KEEP##"


def test_lint_takes_the_audience_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "tenant.yaml"
    monkeypatch.delenv("AUTHZ_AUDIENCE", raising=False)
    assert (
        run(
            capsys,
            "export",
            demo(),
            "--audience",
            API,
            "--audience",
            "https://billing.example.com",
            "--output",
            str(export),
        )[0]
        == 0
    )
    code = main(["policy", "lint", demo(), "--auth0", str(export)])
    assert code == 2 and "choose one with --audience" in capsys.readouterr().err
    config = tmp_path / "authz.toml"
    config.write_text(f'audience = ["https://other.example.com", "{API}"]\n')
    monkeypatch.setenv("AUTHZ_CONFIG", str(config))
    code = main(["policy", "lint", demo(), "--auth0", str(export)])
    assert code == 0
    assert capsys.readouterr().out.strip() == f"lint against {API} ({export}): 0 errors, 0 warnings"


# --- the Post-Login Action -------------------------------------------------------------------------


def test_the_action_puts_the_roles_into_the_configured_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTHZ_ROLES_CLAIM", "https://orders.example.com/roles")
    code, out, _ = run(capsys, "action")
    assert code == 0 and 'const claim = "https://orders.example.com/roles";' in out
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Action's code is not executed")
    script = tmp_path / "run.js"
    (tmp_path / "action.js").write_text(out)
    script.write_text(
        textwrap.dedent(
            """
            const action = require("./action.js");
            const set = {access: {}, id: {}};
            const api = {
              accessToken: {setCustomClaim: (k, v) => { set.access[k] = v; }},
              idToken: {setCustomClaim: (k, v) => { set.id[k] = v; }},
            };
            action.onExecutePostLogin({authorization: {roles: ["admin", "support"]}}, api)
              .then(() => action.onExecutePostLogin({}, {accessToken: {setCustomClaim: (k, v) => {
                set.none = v; }}, idToken: {setCustomClaim: () => {}}}))
              .then(() => console.log(JSON.stringify(set)));
            """
        )
    )
    result = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=60, check=True)
    claim = "https://orders.example.com/roles"
    assert json.loads(result.stdout) == {
        "access": {claim: ["admin", "support"]},
        "id": {claim: ["admin", "support"]},
        "none": [],
    }
