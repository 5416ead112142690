"""`authz policy validate`: engine errors as located findings, and the sound warnings."""

from __future__ import annotations

import json

import pytest

from authz.cli.main import main
from authz.engine import load_snapshot
from authz.engine.policyfiles import MAX_POLICY_FILES, MAX_POLICY_LINES
from authz.errors import PolicyLoadError
from authz.findings import MAX_FINDINGS, MAX_MESSAGE_CHARS, Finding, Severity
from authz.policy.validate import validate_dir
from tests.conftest import REPO
from tests.policy_dirs import copy_demo, line_number, write_policy

RBAC_MODEL = """[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act, eft

[role_definition]
g = _, _
g2 = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
"""


def messages(report, severity):
    return [(f.file, f.line, f.message) for f in report.findings if f.severity is severity]


def test_demo_policies_are_valid_without_warnings():
    report = validate_dir(REPO / "policies")
    assert report.ok and report.findings == []
    assert report.snapshot is not None and report.version == report.snapshot.version


def test_every_bad_line_is_reported_at_once_with_file_and_line(tmp_path):
    policies = copy_demo(tmp_path)
    csv = policies / "policy.csv"
    text = csv.read_text()
    text = text.replace(
        "p, read:orders, /api/orders, GET, True, allow", "p, read:orders, /api/orders, GET, allow"
    )
    text = text.replace("r.obj.org_id == r.sub.org_id", "r.obj.org_id == = r.sub.org_id")
    text = text.replace("r.obj.status == 'shipped'", "r.obj.status.__class__ == 'x'")
    csv.write_text(text + "x, bogus\n")
    report = validate_dir(policies)
    assert not report.ok
    errors = messages(report, Severity.ERROR)
    lines = {(file, line) for file, line, _ in errors}
    assert ("policy.csv", 2) in lines  # arity
    assert ("policy.csv", line_number(csv, "== = r.sub")) in lines  # syntax error in a condition
    assert ("policy.csv", line_number(csv, "__class__")) in lines  # not allowed in a matcher
    assert ("policy.csv", line_number(csv, "x, bogus")) in lines  # unknown line type
    assert any("the policy definition p needs 5" in m for _, _, m in errors)


def test_a_broken_matcher_is_one_finding_on_its_model_line(tmp_path):
    policies = copy_demo(tmp_path)
    model = policies / "model.conf"
    model.write_text(model.read_text().replace("keyMatch2(r.obj, p.obj)", "keyMatch2(r.obj, p.obj"))
    report = validate_dir(policies)
    assert [(f.file, f.line) for f in report.errors] == [("model.conf", line_number(model, "m = "))]
    assert "matcher" in report.errors[0].message


def test_missing_directory_and_model_are_errors(tmp_path):
    assert not validate_dir(tmp_path / "nope").ok
    (tmp_path / "p.csv").write_text("p, a, b, c\n")
    report = validate_dir(tmp_path)
    assert not report.ok and "model.conf" in report.errors[0].message


def test_warnings_duplicates_cycles_effects_and_unread_lines(tmp_path):
    policies = write_policy(
        tmp_path / "p",
        RBAC_MODEL,
        policy_csv=(
            "p, reader, /a, GET, allow\n"
            "p,reader,/a,GET,allow\n"  # duplicate (spacing does not matter)
            "p, reader, /b, GET, alow\n"  # unknown effect
            "p, reader, /c, GET, deny\n"  # deny under allow-override: never decides
            "p2, reader, /d, GET, allow\n"  # p2: never evaluated
        ),
        roles_csv=(
            "g, a, b\n"
            "g, b, c\n"
            "g, c, a\n"  # closes the cycle a -> b -> c -> a
            "g, d, d\n"  # a one-line cycle
            "g2, x, y\n"  # g2: the matcher never calls g2()
            "g2, y, z\n"
        ),
    )
    report = validate_dir(policies)
    assert report.ok, report.errors
    warnings = messages(report, Severity.WARNING)
    by_line = {(file, line): message for file, line, message in warnings}
    assert "duplicate of policy.csv:1" in by_line[("policy.csv", 2)]
    assert "'alow' is neither allow nor deny" in by_line[("policy.csv", 3)]
    assert "deny lines never change a decision" in by_line[("policy.csv", 4)]
    assert "p2 line never evaluated" in by_line[("policy.csv", 5)]
    assert (
        by_line[("roles.csv", 3)]
        == "role cycle a -> b -> c -> a (lines roles.csv:1, roles.csv:2, roles.csv:3)"
    )
    assert by_line[("roles.csv", 4)].startswith("role cycle d -> d")
    assert "2 g2 lines never read: no matcher calls g2()" in by_line[("roles.csv", 5)]
    assert len(warnings) == 7


def test_cycles_are_per_domain(tmp_path):
    model = RBAC_MODEL.replace("g = _, _\ng2 = _, _", "g = _, _, _").replace(
        "g(r.sub, p.sub)", "g(r.sub, p.sub, 'o')"
    )
    policies = write_policy(
        tmp_path / "p", model, policy_csv="p, a, /a, GET, allow\n", roles_csv="g, a, b, o1\ng, b, a, o2\n"
    )
    assert validate_dir(policies).findings == []


# The definitions in an unusual order, with comments, so a line is only right when it is looked up.
SHUFFLED_MODEL = """# matchers first
[matchers]
m = r.sub == p.sub && r.obj == p.obj && r.act == p.act

[policy_effect]
e = some(where (p.eft == allow))

[policy_definition]
p = sub, obj, act, eft

# the request last
[request_definition]
r = sub, obj, act
"""


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        ("r.act == p.act", "r.act == = p.act", "m = ", "matcher: syntax error"),
        ("r.act == p.act", "r.act == p.act && eval(p.cond)", "m = ", "eval(p_cond) names no policy field"),
        (
            "r = sub, obj, act",
            "r = sub, obj, act, zone",
            "r = ",
            "request definition r = sub, obj, act, zone",
        ),
        ("e = some(where (p.eft == allow))", "e = max(p.eft)", "e = ", "unsupported policy effect"),
    ],
    ids=["matcher-syntax", "eval-field", "request-field", "effect"],
)
def test_the_engine_locates_model_findings_on_their_definition_line(tmp_path, old, new, key, message):
    policies = write_policy(
        tmp_path / "p", SHUFFLED_MODEL.replace(old, new), policy_csv="p, a, /a, GET, allow\n"
    )
    model = policies / "model.conf"
    with pytest.raises(PolicyLoadError) as raised:
        load_snapshot(policies)
    [finding] = raised.value.findings
    assert (finding.severity, finding.file, finding.line) == (
        Severity.ERROR,
        "model.conf",
        line_number(model, key),
    )
    assert finding.message.startswith(message)
    assert f"model.conf:{finding.line}: {finding.message}" in str(raised.value)
    assert validate_dir(policies).errors == [finding]


def test_a_policy_file_with_an_unusual_name_keeps_its_file_and_line(tmp_path):
    # A leading space, other spaces, dots and non-ASCII letters: no colon, so nothing to confuse
    # a `FILE:LINE:` reader, but still a name a regular expression over the text could lose.
    name = " règles 2024 (v2.1).csv"
    policies = write_policy(tmp_path / "p", RBAC_MODEL)
    (policies / name).write_text("# comment\np, a, /a, GET, allow\np, b, /b\n")
    with pytest.raises(PolicyLoadError) as raised:
        load_snapshot(policies)
    assert [(f.file, f.line, f.message) for f in raised.value.findings] == [
        (name, 3, "p, b, /b: has 2 values, the policy definition p needs 4")
    ]
    [error] = validate_dir(policies).errors
    assert (error.file, error.line) == (name, 3)
    assert error.render(str(policies)) == f"{policies}/{name}:3: error: {error.message}"


def test_an_unlocated_error_is_one_finding_without_a_file(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(PolicyLoadError) as raised:
        load_snapshot(missing)
    message = f"policy directory {missing} does not exist"
    assert str(raised.value) == message
    assert raised.value.findings == [Finding(Severity.ERROR, "", 0, message)]
    [error] = validate_dir(missing).errors
    assert error.render() == f"error: {message}"
    assert error.render(str(missing)) == f"{missing}: error: {message}"


def test_cli_exit_status_and_json(tmp_path, capsys):
    assert main(["policy", "validate", str(REPO / "policies")]) == 0
    assert "/policies: valid" in capsys.readouterr().out
    policies = copy_demo(tmp_path)
    with (policies / "roles.csv").open("a") as f:
        f.write("g, admin, read:orders\ng, admin\n")
    assert main(["policy", "validate", str(policies)]) == 1
    out = capsys.readouterr().out
    assert f"{policies}/roles.csv:9: error: g, admin: has 1 values, role definition g needs 2" in out
    assert f"{policies}/roles.csv:8: warning: duplicate of roles.csv:2: g, admin, read:orders" in out
    assert main(["policy", "validate", str(policies), "--format", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["valid"] is False and (document["errors"], document["warnings"]) == (1, 1)
    assert {"severity": "warning", "file": "roles.csv", "line": 8}.items() <= document["findings"][1].items()


def test_a_role_declared_as_a_permission_too_is_a_warning(tmp_path):
    # authz reads a grant by name: a token permission `admin` would hold the admin role's rights.
    policies = copy_demo(tmp_path)
    assert validate_dir(policies).findings == []
    with (policies / "permissions.csv").open("a") as extra:
        extra.write("# permission: admin: Looks harmless\n")
    [found] = validate_dir(policies).findings
    assert found.severity is Severity.WARNING
    assert (found.file, found.line) == (
        "roles.csv",
        line_number(policies / "roles.csv", "g, admin, read:orders"),
    )
    assert "a token with the permission admin holds every right of the role admin" in found.message


def test_countless_bad_lines_are_refused_with_a_bounded_list_of_findings(tmp_path):
    # 200,000 unknown lines (400 KB) made 200,000 findings and a 14 MB message (logged, kept as
    # the last rejection, answered by GetPolicy); 8 MB of them took 24 s and 2.2 GB.
    policies = copy_demo(tmp_path)
    (policies / "junk.csv").write_text("x\n" * 200_000)
    with pytest.raises(PolicyLoadError) as caught:
        load_snapshot(policies)
    assert len(caught.value.findings) == MAX_FINDINGS + 1
    assert "junk.csv:1: unknown line type 'x'" in str(caught.value)
    assert "more findings not listed" in str(caught.value) and len(str(caught.value)) < 100_000


def test_each_finding_quoting_long_policy_text_is_bounded_and_keeps_its_reason(tmp_path):
    # A 1 MB condition made each of its findings 2 MB (the line, then the condition again), and
    # 1,000 such lines a refusal of 2 GB: logged, kept as the last rejection, sent by GetPolicy.
    policies = copy_demo(tmp_path)
    long_token = "x" * 1_000_000
    many_words = " ".join(["y"] * 300_000)
    (policies / "long.csv").write_text(
        f"p, *, /api/a, GET, foo({long_token}), allow\np, *, /api/b, GET, foo({many_words}), allow\n"
    )
    with pytest.raises(PolicyLoadError) as caught:
        load_snapshot(policies)
    found = [f for f in caught.value.findings if f.file == "long.csv"]
    assert [f.line for f in found] == [1, 2]
    assert all(len(f.message) <= MAX_MESSAGE_CHARS for f in found)
    assert "only the model's functions may be called, not 'foo'" in found[0].message
    assert "…[999,5" in found[0].message and "characters]…" in found[1].message
    assert len(str(caught.value)) < 4 * MAX_MESSAGE_CHARS
    # Long messages given whole are cut too.
    assert len(str(PolicyLoadError("z" * 1_000_000))) <= MAX_MESSAGE_CHARS


def test_a_policy_over_the_line_bound_is_refused_before_its_lines_are_made(tmp_path):
    policies = copy_demo(tmp_path)
    (policies / "blank.csv").write_text("\n" * (MAX_POLICY_LINES + 1))
    with pytest.raises(PolicyLoadError, match=f"lines, over the limit of {MAX_POLICY_LINES}"):
        load_snapshot(policies)


def test_a_directory_of_more_policy_files_than_the_bound_is_refused_before_they_are_opened(tmp_path):
    policies = copy_demo(tmp_path)
    for n in range(MAX_POLICY_FILES + 1 - 4):  # the demo has four
        (policies / f"empty{n}.csv").write_text("")
    with pytest.raises(PolicyLoadError, match=f"1001 \\*.csv files, over the limit of {MAX_POLICY_FILES}"):
        load_snapshot(policies)
