"""`authz policy diff`: real edits of the demo policies and the exact reports they give."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from authz.app import demo_policy_dir
from authz.cli.main import main
from authz.engine.policyfiles import read_policy_dir

ALL = [
    "admin",
    "create:orders",
    "delete:orders",
    "manage:users",
    "read:orders",
    "read:reports",
    "update:orders",
]


@pytest.fixture
def old(tmp_path: Path) -> Path:
    return Path(shutil.copytree(demo_policy_dir(), tmp_path / "old"))


@pytest.fixture
def new(tmp_path: Path) -> Path:
    return Path(shutil.copytree(demo_policy_dir(), tmp_path / "new"))


def edit(directory: Path, old_text: str, new_text: str, file: str = "policy.csv") -> None:
    path = directory / file
    text = path.read_text()
    assert old_text in text
    path.write_text(text.replace(old_text, new_text, 1))


def diff(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["policy", "diff", *args])
    out, err = capsys.readouterr()
    assert err == ""
    return code, out


def header(old: Path, new: Path) -> str:
    versions = (read_policy_dir(old).version, read_policy_dir(new).version)
    return f"policy diff {old} (version {versions[0]}) -> {new} (version {versions[1]})"


def unchanged(*changed: str) -> str:
    return "unchanged: " + ", ".join(name for name in ALL if name not in changed)


def test_a_deny_added(old: Path, new: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with (new / "policy.csv").open("a") as f:
        f.write(
            "# Nothing under /api/admin is deleted through the API.\np, *, /api/admin/*, DELETE, True, deny\n"
        )
    code, out = diff(capsys, str(old), str(new))
    assert code == 0
    assert out.splitlines() == [
        header(old, new),
        "role admin",
        "  - loses DELETE /api/admin/* (route): allowed -> denied  [new policy.csv:35]",
        "permission manage:users",
        "  - loses DELETE /api/admin/* (route): allowed -> denied  [new policy.csv:35]",
        unchanged("admin", "manage:users"),
        "policy.csv:34: comment changed, access did not",
        "  + # Nothing under /api/admin is deleted through the API.",
        "0 gain(s), 2 loss(es), 0 changed condition(s)",
    ]
    assert diff(capsys, str(old), str(new), "--fail-on", "widen")[0] == 0  # narrowing only


def test_a_role_widened(old: Path, new: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(new, "g, admin, manage:users", "g, admin, manage:users\ng, admin, read:invoices", "roles.csv")
    edit(new, "p, read:reports, /api/reports/*, GET,", "p, read:reports, /api/reports/*, *,")
    code, out = diff(capsys, str(old), str(new), "--fail-on", "widen")
    assert code == 2
    assert out.splitlines() == [
        header(old, new),
        "role admin",
        "  + gains any action /api/reports/* (route): denied -> allowed  [new policy.csv:17]",
        "permission read:reports",
        "  + gains any action /api/reports/* (route): denied -> allowed  [new policy.csv:17]",
        # read:invoices is new, and grants nothing yet: admin's new g line has no effect of its own.
        "unchanged: create:orders, delete:orders, manage:users, read:invoices, read:orders, update:orders",
        "roles.csv:8: text changed, access did not",
        "  + g, admin, read:invoices",
        "2 gain(s), 0 loss(es), 0 changed condition(s)",
    ]


def test_a_condition_narrowed(old: Path, new: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(
        new,
        "PUT, r.obj.org_id == r.sub.org_id, allow",
        "PUT, r.obj.org_id == r.sub.org_id && r.obj.status != 'shipped', allow",
    )
    code, out = diff(capsys, str(old), str(new), "--fail-on", "widen")
    assert code == 0
    narrowed = [
        "  ~ condition changed: PUT /api/orders/:id (route)  [old policy.csv:8, new policy.csv:8]",
        "      - allow if r.obj.org_id == r.sub.org_id",
        "      + allow if r.obj.org_id == r.sub.org_id && r.obj.status != 'shipped'",
    ]
    assert out.splitlines() == [
        header(old, new),
        "role admin",
        *narrowed,
        "permission update:orders",
        *narrowed,
        unchanged("admin", "update:orders"),
        "0 gain(s), 0 loss(es), 2 changed condition(s)",
    ]


def test_a_comment_changed_and_a_line_reformatted(
    old: Path, new: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(new, "# Reports and administration.", "# Reports, and the back office.")
    edit(new, "p, read:orders, /api/orders, GET, True, allow", "p,read:orders,/api/orders,GET,True,allow")
    code, out = diff(capsys, str(old), str(new), "--fail-on", "widen")
    assert code == 0
    assert out.splitlines() == [
        header(old, new),
        unchanged(),
        "policy.csv:2: text changed, access did not",
        "  - p, read:orders, /api/orders, GET, True, allow",
        "  + p,read:orders,/api/orders,GET,True,allow",
        "policy.csv:16: comment changed, access did not",
        "  - # Reports and administration.",
        "  + # Reports, and the back office.",
        "no change of access",
    ]


def test_a_new_permission_given_to_a_role_and_to_everyone(
    old: Path, new: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(new, "g, admin, manage:users", "g, admin, manage:users\ng, admin, export:orders", "roles.csv")
    with (new / "policy.csv").open("a") as f:
        f.write("p, export:orders, /api/exports, GET, True, allow\np, *, ui:menu.help, view, True, allow\n")
    code, out = diff(capsys, str(old), str(new), "--format", "json", "--fail-on", "widen")
    assert code == 2
    report = json.loads(out)
    assert report["widens"] is True
    gains = {
        (p["name"], c["action"], c["resource"], c["target"], tuple(c["because"]))
        for p in report["principals"]
        for c in p["changes"]
    }
    assert gains == {
        ("admin", "GET", "/api/exports", "route", ("new policy.csv:34",)),
        ("export:orders", "GET", "/api/exports", "route", ("new policy.csv:34",)),
        # Everyone's new UI element is reported once, not again under each role and permission.
        ("*", "view", "ui:menu.help", "UI element", ("new policy.csv:35",)),
    }
    assert [p["kind"] for p in report["principals"]] == ["role", "permission", "everyone"]
    assert report["no_effect"] == []  # the g line is how admin gains the route


def test_markdown_for_a_pull_request(old: Path, new: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(new, "p, delete:orders, ui:button.delete-order, view, True, allow\n", "")
    code, out = diff(capsys, str(old), str(new), "--format", "markdown")
    assert code == 0
    versions = (read_policy_dir(old).version, read_policy_dir(new).version)
    table = "| change | action | resource | before → after |\n|---|---|---|---|\n"
    loss = "| - loses | `view` | `ui:button.delete-order` | allowed → denied |\n\n"
    assert out == (
        "### Policy impact\n\n"
        f"`{old}` ({versions[0]}) → `{new}` ({versions[1]}): "
        "0 gain(s), 2 loss(es), 0 changed condition(s)\n\n"
        f"#### role admin\n\n{table}{loss}#### permission delete:orders\n\n{table}{loss}"
        "Unchanged: `create:orders`, `manage:users`, `read:orders`, `read:reports`, `update:orders`\n"
    )


def test_against_a_git_revision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    policies = Path(shutil.copytree(demo_policy_dir(), repo / "config" / "policies"))

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "policies")
    edit(policies, "p, read:reports, ui:menu.reports, view, True, allow\n", "")
    code, out = diff(capsys, "--git", "HEAD", str(policies))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(
        f"policy diff HEAD:{policies} (version {read_policy_dir(demo_policy_dir()).version})"
    )
    assert lines[1:5] == [
        "role admin",
        "  - loses view ui:menu.reports (UI element): allowed -> denied  [old policy.csv:23]",
        "permission read:reports",
        "  - loses view ui:menu.reports (UI element): allowed -> denied  [old policy.csv:23]",
    ]
    assert main(["policy", "diff", "--git=--output=x", str(policies)]) == 2
    assert "is not a revision" in capsys.readouterr().err
    assert main(["policy", "diff", "--git", "no-such-rev", str(policies)]) == 2
    assert "git ls-tree" in capsys.readouterr().err


def test_two_directories_are_needed(old: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "diff", str(old)]) == 2
    assert "give two policy directories" in capsys.readouterr().err
