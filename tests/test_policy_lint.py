"""`authz policy lint`: policy names against Auth0 exports and a live (local) Management API."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from authz.app import demo_policy_dir
from authz.auth0.mgmt import tenant_base_url
from authz.cli.main import main
from authz.policy.auth0 import Auth0SourceError, read_declarations
from authz.policy.lint import lint_directory
from tests.auth0_mgmt import MgmtTenant, serve

API = "https://orders.example.com"
PERMISSIONS = [
    "read:orders",
    "create:orders",
    "update:orders",
    "delete:orders",
    "read:reports",
    "manage:users",
]

TENANT_YAML = """\
tenant:
  friendly_name: 'Orders'
resourceServers:
  - name: Orders API
    identifier: {api}
    signing_alg: RS256
    token_lifetime: ##TOKEN_LIFETIME##
    scopes:
{scopes}
  - name: Auth0 My Account API
    identifier: 'https://##AUTH0_DOMAIN##/me/'
roles:
  - name: admin
    description: Everything
    permissions:
{grants}
  - name: viewer
    description: Read only
    permissions:
      - permission_name: 'read:orders'
        resource_server_identifier: '{api}'
flowVaultConnections:
  - name: 'M2M'
    setup: @@SETUP_CONFIG@@
attackProtection:
  captcha:
    friendly_captcha:
      site_key: ##CAPTCHA_SITE_KEY##
"""


def write_yaml_export(
    tmp_path: Path, scopes: list[str] = PERMISSIONS, admin: list[str] = PERMISSIONS, api: str = API
) -> Path:
    """A Deploy CLI tenant.yaml declaring `scopes` on the orders API and an admin role granting `admin`."""
    path = tmp_path / "tenant.yaml"
    path.write_text(
        TENANT_YAML.format(
            api=api,
            scopes="\n".join(f"      - value: '{s}'\n        description: {s}" for s in scopes),
            grants="\n".join(
                f"      - permission_name: '{p}'\n        resource_server_identifier: '{api}'" for p in admin
            ),
        )
    )
    return path


def write_directory_export(tmp_path: Path, scopes: list[str] = PERMISSIONS, api: str = API) -> Path:
    """A Deploy CLI directory export, with placeholders both inside strings and standing for values."""
    root = tmp_path / "export"
    (root / "resource-servers").mkdir(parents=True)
    (root / "roles").mkdir()
    server = {
        "name": "Orders API",
        "identifier": api,
        "scopes": [{"value": s, "description": s} for s in scopes],
    }
    text = json.dumps(server, indent=2).replace(
        '"name"', '"token_lifetime": ##TOKEN_LIFETIME##,\n  "name"', 1
    )
    (root / "resource-servers" / "Orders API.json").write_text(text)
    (root / "resource-servers" / "Auth0 My Account API.json").write_text(
        '{"name": "Auth0 My Account API", "identifier": "https://##AUTH0_DOMAIN##/me/", "token_lifetime": 9}'
    )
    grants = [{"permission_name": p, "resource_server_identifier": api} for p in PERMISSIONS]
    role = json.dumps({"name": "admin", "permissions": grants})
    (root / "roles" / "admin.json").write_text(
        role.replace('"name"', '"description": @@ADMIN_TEXT@@, "name"', 1)
    )
    return root


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """An editable copy of the demo policies."""
    return Path(shutil.copytree(demo_policy_dir(), tmp_path / "policies"))


def replace_in(path: Path, old: str, new: str) -> int:
    """Replace the first `old` in the file; return its 1-based line number."""
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return text[: text.index(old)].count("\n") + 1


def run_lint(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["policy", "lint", *args])
    out, err = capsys.readouterr()
    return code, out, err


# --- exports --------------------------------------------------------------------------------------


def test_demo_policies_are_clean_against_a_tenant_yaml_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = write_yaml_export(tmp_path)
    code, out, _ = run_lint(capsys, str(demo_policy_dir()), "--auth0", str(export))
    assert code == 0, out
    assert out.strip().splitlines() == [f"lint against {API} ({export}): 0 errors, 0 warnings"]


def test_yaml_export_placeholders_do_not_break_parsing(tmp_path: Path) -> None:
    declarations = read_declarations(str(write_yaml_export(tmp_path)))
    assert [(api.identifier, api.system) for api in declarations.apis] == [
        (API, False),
        ("https://##AUTH0_DOMAIN##/me/", True),
    ]
    assert declarations.apis[0].scopes == tuple(PERMISSIONS)
    assert {role.name for role in declarations.roles} == {"admin", "viewer"}


def test_yaml_export_sections_may_be_split_out_with_include(tmp_path: Path) -> None:
    export = write_yaml_export(tmp_path)
    text = export.read_text()
    start, end = text.index("resourceServers:"), text.index("roles:")
    (tmp_path / "apis.yaml").write_text(textwrap.dedent(text[start:end].removeprefix("resourceServers:\n")))
    export.write_text(text[:start] + "resourceServers: !include apis.yaml\n" + text[end:])
    declarations = read_declarations(str(export))
    assert declarations.select_api(None).scopes == tuple(PERMISSIONS)
    assert {role.name for role in declarations.roles} == {"admin", "viewer"}


def test_demo_policies_are_clean_against_a_directory_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = write_directory_export(tmp_path)
    code, out, _ = run_lint(capsys, str(demo_policy_dir()), "--auth0", str(export), "--format", "json")
    assert code == 0, out
    report = json.loads(out)
    assert report == {"source": str(export), "api": API, "errors": 0, "warnings": 0, "findings": []}


def test_a_placeholder_identifier_is_selected_by_the_real_audience(tmp_path: Path) -> None:
    export = write_directory_export(tmp_path, api="https://##ENV##.orders.example.com")
    declarations = read_declarations(str(export))
    assert declarations.select_api("https://staging.orders.example.com").name == "Orders API"
    with pytest.raises(Auth0SourceError, match=re.escape("declares no API 'https://orders.example.org'")):
        declarations.select_api("https://orders.example.org")


def test_a_misspelled_permission_is_an_error_naming_file_and_line(
    tmp_path: Path, policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = replace_in(
        policies / "policy.csv", "p, read:orders, /api/orders/:id,", "p, read:order, /api/orders/:id,"
    )
    export = write_yaml_export(tmp_path)
    code, out, _ = run_lint(capsys, str(policies), "--auth0", str(export))
    assert code == 1
    assert (
        f"{policies}/policy.csv:{line}: error: used but not declared on the API: read:order"
        " — did you mean read:orders?" in out.splitlines()
    )
    assert out.strip().endswith("1 error, 0 warnings")

    code, out, _ = run_lint(capsys, str(policies), "--auth0", str(export), "--format", "json")
    assert code == 1
    [finding] = json.loads(out)["findings"]
    assert finding["severity"] == "error"
    assert (finding["name"], finding["file"], finding["line"], finding["suggestion"]) == (
        "read:order",
        "policy.csv",
        line,
        "read:orders",
    )


def test_a_misspelled_role_grant_in_a_g_line_is_an_error(tmp_path: Path, policies: Path) -> None:
    line = replace_in(policies / "roles.csv", "g, admin, read:reports", "g, admin, read:report")
    report = lint_directory(policies, read_declarations(str(write_directory_export(tmp_path))))
    assert [
        (f.finding.severity.value, f.finding.file, f.finding.line, f.suggestion) for f in report.findings
    ] == [("error", "roles.csv", line, "read:reports")]


def test_an_unused_declared_permission_is_a_warning_naming_the_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = write_yaml_export(tmp_path, scopes=[*PERMISSIONS, "export:orders"])
    code, out, _ = run_lint(capsys, str(demo_policy_dir()), "--auth0", str(export))
    assert code == 0
    assert f"warning: declared on the API but never used by the policies: export:orders ({export})" in out
    assert out.strip().endswith("0 errors, 1 warning")


def test_a_name_declared_only_on_another_api_says_so(tmp_path: Path, policies: Path) -> None:
    export = write_directory_export(tmp_path)
    (export / "resource-servers" / "Billing.json").write_text(
        json.dumps(
            {
                "name": "Billing",
                "identifier": "https://billing.example.com",
                "scopes": [{"value": "pay:bills"}],
            }
        )
    )
    line = replace_in(policies / "policy.csv", "p, read:reports,", "p, pay:bills,")
    declarations = read_declarations(str(export))
    with pytest.raises(Auth0SourceError, match=r"2 APIs .*choose one with --audience"):
        lint_directory(policies, declarations)
    report = lint_directory(policies, declarations, API)
    errors = [f for f in report.findings if f.finding.severity.value == "error"]
    assert [(f.name, f.finding.line) for f in errors] == [("pay:bills", line)]
    assert "it is a permission of https://billing.example.com" in errors[0].finding.message


def test_a_role_the_auth0_role_does_not_grant_is_a_warning(tmp_path: Path) -> None:
    export = write_yaml_export(tmp_path, admin=[p for p in PERMISSIONS if p != "manage:users"])
    report = lint_directory(demo_policy_dir(), read_declarations(str(export)))
    [found] = report.findings
    assert (found.finding.severity.value, found.finding.file, found.name) == (
        "warning",
        "roles.csv",
        "manage:users",
    )
    assert found.finding.line == 7
    assert (
        found.finding.message
        == f"role admin is given manage:users here, but the Auth0 role does not grant it ({export})"
    )


def test_user_ids_on_the_left_of_g_lines_are_not_names(tmp_path: Path, policies: Path) -> None:
    with (policies / "roles.csv").open("a") as f:
        f.write("g, auth0|42, admin\ng, amin, read:orders\n")
    report = lint_directory(policies, read_declarations(str(write_yaml_export(tmp_path))))
    # auth0|42 is a user; "amin" looks like a user too but is suspiciously close to a role.
    assert [(f.finding.severity.value, f.name, f.finding.line, f.suggestion) for f in report.findings] == [
        ("warning", "amin", 9, "admin")
    ]


def test_unreadable_sources_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    (broken / "roles").mkdir(parents=True)
    (broken / "roles" / "x.json").write_text('{"name": ')
    code, _, err = run_lint(capsys, str(demo_policy_dir()), "--auth0", str(broken))
    assert code == 2 and "x.json: not valid JSON" in err
    code, _, err = run_lint(capsys, str(demo_policy_dir()), "--auth0", str(tmp_path / "tenant.yaml"))
    assert code == 2 and "no such export file or directory" in err
    (tmp_path / "other.yaml").write_text("clients: []\n")
    code, _, err = run_lint(capsys, str(demo_policy_dir()), "--auth0", str(tmp_path / "other.yaml"))
    assert code == 2 and "not a Deploy CLI tenant.yaml export" in err


# --- the Management API, live -----------------------------------------------------------------------


@pytest.fixture
def tenant() -> Iterator[MgmtTenant]:
    """The orders API beside Auth0's own two, and three roles."""
    fake = MgmtTenant()
    fake.add_api("https://x/api/v2/", "Auth0 Management API", [], is_system=True)
    fake.add_api(API, "Orders API", [(p, p) for p in PERMISSIONS])
    fake.add_api("https://tenant.example.com/me/", "My Account API", [])
    fake.add_role("admin", "Everything", [(API, p) for p in PERMISSIONS])
    fake.add_role("viewer", "Read only", [(API, "read:orders")])
    fake.add_role("empty", "Nothing", [])
    with serve(fake):
        yield fake


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch, tenant: MgmtTenant) -> None:
    monkeypatch.setenv("AUTH0_CLIENT_ID", tenant.client_id)
    monkeypatch.setenv("AUTH0_CLIENT_SECRET", tenant.client_secret)


def test_live_tenant_is_read_page_by_page_with_the_bearer_token(
    tenant: MgmtTenant, credentials: None
) -> None:
    declarations = read_declarations(tenant.url)
    host = tenant.url.removeprefix("http://")
    assert tenant.token_audiences == [f"https://{host}/api/v2/"]
    assert [api.identifier for api in declarations.apis] == [
        "https://x/api/v2/",
        API,
        "https://tenant.example.com/me/",
    ]
    assert declarations.select_api(None).scopes == tuple(PERMISSIONS)
    roles = {role.name: role for role in declarations.roles}
    assert roles.keys() == {"admin", "viewer", "empty"}
    assert roles["admin"].permissions == {(API, p) for p in PERMISSIONS}
    assert roles["viewer"].permissions == {(API, "read:orders")}
    admin = next(role["id"] for role in tenant.roles if role["name"] == "admin")
    pages = {
        path: sorted(int(q["page"][0]) for _, p, q in tenant.requests if p == path)
        for path in ("/api/v2/resource-servers", "/api/v2/roles", f"/api/v2/roles/{admin}/permissions")
    }
    assert pages == {
        "/api/v2/resource-servers": [0, 1],
        "/api/v2/roles": [0, 1],
        f"/api/v2/roles/{admin}/permissions": [0, 1, 2],
    }
    assert all(q["include_totals"] == ["true"] for _, p, q in tenant.requests if p.startswith("/api/v2/"))


def test_lint_against_a_live_tenant(
    tenant: MgmtTenant, credentials: None, policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_lint(capsys, str(demo_policy_dir()), "--auth0", tenant.url)
    assert code == 0, out
    assert out.strip() == f"lint against {API} ({tenant.url}): 0 errors, 0 warnings"

    tenant.rate_limit_next, tenant.rate_limit_header = 1, "retry-after"  # waited out, not reported
    line = replace_in(policies / "policy.csv", "p, delete:orders,", "p, delete:order,")
    code, out, _ = run_lint(capsys, str(policies), "--auth0", tenant.url, "--format", "json")
    assert code == 1
    [finding] = json.loads(out)["findings"]
    assert (finding["file"], finding["line"], finding["suggestion"]) == ("policy.csv", line, "delete:orders")


def test_live_tenant_errors_are_reported(
    tenant: MgmtTenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_lint(capsys, str(demo_policy_dir()), "--auth0", tenant.url)
    assert code == 2 and "needs AUTH0_MANAGEMENT_TOKEN, or AUTH0_CLIENT_ID and AUTH0_CLIENT_SECRET" in err
    monkeypatch.setenv("AUTH0_CLIENT_ID", tenant.client_id)
    monkeypatch.setenv("AUTH0_CLIENT_SECRET", "wrong")
    code, _, err = run_lint(capsys, str(demo_policy_dir()), "--auth0", tenant.url)
    assert code == 2 and f"{tenant.url}/oauth/token: HTTP 401: Unauthorized" in err
    assert "wrong" not in err


def test_tenant_domains_need_https_except_on_loopback() -> None:
    assert tenant_base_url("example.us.auth0.com") == "https://example.us.auth0.com"
    assert tenant_base_url("https://example.us.auth0.com/") == "https://example.us.auth0.com"
    assert tenant_base_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    with pytest.raises(Auth0SourceError, match="plain http is accepted only on loopback"):
        tenant_base_url("http://example.us.auth0.com")
    with pytest.raises(Auth0SourceError, match="not a tenant domain"):
        tenant_base_url("https://example.us.auth0.com/api/v2")
