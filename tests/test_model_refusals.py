"""`authz policy validate` refuses, at FILE:LINE with the reason, what authz would not decide as
Casbin does; "valid" means the same decisions. Policy lines pycasbin's file adapter cannot load
are refused too (pycasbin run on the same file), and the lines it loads are split as it splits."""

from __future__ import annotations

import casbin
import pytest
from casbin.persist.adapter import _extract_tokens
from hypothesis import given
from hypothesis import strategies as st

from authz.cli.main import main
from authz.engine import load_snapshot
from authz.engine.policyfiles import PolicySource, UnloadableLine, split_tokens
from authz.errors import PolicyLoadError
from authz.live import LivePolicy
from authz.policy.validate import validate_dir, validate_source
from authz.principal import Principal
from tests import policy_dirs
from tests.pycasbin_ref import write_policy

MATCHER = "g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act"
MODEL = policy_dirs.model(MATCHER, policy_dirs.ALLOW, policy="sub, obj, act, eft")
PRIORITY = policy_dirs.model(MATCHER, "priority(p.eft) || deny", policy="priority, sub, obj, act, eft")
SUBJECT_PRIORITY = policy_dirs.model(MATCHER, "subjectPriority(p.eft) || deny", policy="sub, obj, act, eft")
LINE = "p, alice, data, read, allow"


@pytest.mark.parametrize(
    ("model", "lines", "where", "fragment"),
    [
        (MODEL, ['p, "alice", data, read, allow'], ("policy.csv", 1), "is quoted"),
        (MODEL, [LINE, 'g, alice, "admin"'], ("policy.csv", 2), "is quoted"),
        (MODEL.replace("r.obj == p.obj", "keyMatch2(r.obj)"), [LINE], ("model.conf", 14), "takes 2"),
        (
            MODEL.replace("r.obj == p.obj", "keyMatch(r.obj, p.obj, r.act)"),
            [LINE],
            ("model.conf", 14),
            "takes 2",
        ),
        (MODEL.replace("g(r.sub, p.sub)", "g(r.sub)"), [LINE], ("model.conf", 14), "takes 2 or 3"),
        (MODEL.replace("r = sub, obj, act", "r = act, thing, sub"), [LINE], ("model.conf", 2), "by position"),
        (MODEL.replace("r = sub, obj, act", "r = a, b"), [LINE], ("model.conf", 2), "by position"),
        (MODEL.replace("[role_definition]\ng = _, _\n", ""), [LINE], ("model.conf", 12), "not 'g'"),
        (
            SUBJECT_PRIORITY.replace("[role_definition]\ng = _, _\n", "").replace(
                "g(r.sub, p.sub)", "r.sub == p.sub"
            ),
            [LINE],
            ("model.conf", 9),
            "which the model lacks",
        ),
        (SUBJECT_PRIORITY, [LINE, "g, a, b", "g, b, a"], ("policy.csv", 2), "subjectPriority(p.eft) ranks"),
        (
            PRIORITY,
            ["p, 1, a, d, read, allow", "p, x, b, d, read, deny"],
            ("policy.csv", 2),
            "not a whole number",
        ),
        (MODEL.replace("some(where (p.eft == allow))", "max(p.eft)"), [LINE], ("model.conf", 11), "effect"),
        (
            MODEL.replace("[matchers]\n", "[matchers]\nm2 = r.sub == p.sub\n"),
            [LINE],
            ("model.conf", 14),
            "enforce context 2 has m2 but no r2, p2, e2",
        ),
        # Nested past the parser's depth: Python raises MemoryError there, not SyntaxError; the
        # model's checks read the tree first and let it escape the load.
        (
            MODEL.replace("r.obj == p.obj", "(" * 150 + "!" * 1000 + "r.obj == p.obj" + ")" * 150),
            [LINE],
            ("model.conf", 14),
            "nested too deeply",
        ),
        # A line break to str.splitlines but not to Casbin's model reader: one matcher line to
        # Casbin, two to whoever reads the file.
        (MODEL.replace("&& r.act", "&&\u2028r.act"), [LINE], ("model.conf", 14), "U+2028"),
        ("# notes\x0bon the model\n" + MODEL, [LINE], ("model.conf", 1), "U+000B"),
    ],
)
def test_refused_with_file_line_and_reason(tmp_path, model, lines, where, fragment):
    report = validate_dir(write_policy(tmp_path, model, lines))
    assert not report.ok
    assert any((f.file, f.line) == where and fragment in f.message for f in report.errors), report.errors


@pytest.mark.parametrize(
    ("model", "lines"),
    [
        (
            MODEL.replace("r = sub, obj, act", "r = user, thing, action")
            .replace("r.sub", "r.user")
            .replace("r.obj", "r.thing")
            .replace("r.act", "r.action"),
            [LINE],
        ),
        (PRIORITY, ["p, 10, a, d, read, allow", "p, 2, b, d, read, deny"]),
        (SUBJECT_PRIORITY, [LINE, "g, alice, admin"]),
        (MODEL.replace("\n", "\r\n"), [LINE]),
    ],
)
def test_what_authz_implements_exactly_is_valid(tmp_path, model, lines):
    report = validate_dir(write_policy(tmp_path, model, lines))
    assert report.ok, report.errors


# The last policy column is an eval() condition: a value there is Python to pycasbin.
CONDITION_MODEL = policy_dirs.model(
    "(r.sub == p.sub || g(r.sub, p.sub)) && r.obj == p.obj && r.act == p.act && eval(p.cond)",
    policy_dirs.ALLOW,
    policy="sub, obj, act, cond",
)
GOOD = "p, alice, ui:x, show, True"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        # Read as one parenthesised condition by a reader that ignores a `)` closing nothing.
        (
            "p, bob, ui:x, show, False) or (True",
            "LINE: unbalanced ')' (character 26) closes no '(' or '[': "
            "pycasbin's file adapter cannot load this line (it raises IndexError)",
        ),
        ("p, bob, ui:x), show, True", "LINE: unbalanced ')' (character 13) closes no '(' or '['"),
        ("p, bob, ui:x, show, True]", "LINE: unbalanced ']' (character 25) closes no '(' or '['"),
        ("p, bob, ui:x, show, True)(", "LINE: unbalanced ')' (character 25)"),
        # Quotes mean nothing to pycasbin's splitter: a `)` in a string literal counts.
        ("p, bob, ui:x, show, r.sub == ')' or True", "LINE: unbalanced ')' (character 31)"),
        ("g, bob), admin", "LINE: unbalanced ')' (character 7)"),
        # pycasbin splits before it looks at the line's type.
        ("x, bob), admin", "LINE: unbalanced ')' (character 7)"),
        # An empty type: pycasbin reads its first character.
        (", bob, ui:x, show, True", "unknown line type ''"),
    ],
)
def test_a_line_pycasbin_cannot_load_is_refused_at_its_line(tmp_path, capsys, line, message):
    # Padded: the adapter strips each line before splitting it, and so does authz.
    directory = write_policy(tmp_path, CONDITION_MODEL, [GOOD, f"  {line}  "])
    with pytest.raises(IndexError):
        casbin.Enforcer(str(directory / "model.conf"), str(directory / "policy.csv"))
    with pytest.raises(PolicyLoadError) as refused:
        load_snapshot(directory)
    [finding] = refused.value.findings
    assert (finding.file, finding.line) == ("policy.csv", 2)
    assert finding.message.startswith(message.replace("LINE", line))
    assert validate_dir(directory).errors == [finding]
    assert main(["policy", "validate", str(directory)]) == 1
    assert f"{directory}/policy.csv:2: error: {finding.message}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "line",
    [
        "p, bob, ui:x, show, (r.sub == 'bob') and (True)",
        "p, bob, ui:x, show, ((True))",
        "p, bob, ui:x, show, r.obj in ('ui:x', 'ui:y')",
        "p, bob, ui:x, show, r.obj in ['ui:y', 'ui:x']",
        # The kinds are not matched: `]` closes the `(` opened inside the string, `]` the `[`.
        "p, bob, ui:x, show, r.sub in ['(bob]', 'bob']",
        # A `(` left open at the end swallows nothing more.
        "p, bob, ui:x, show, r.sub != '('",
    ],
)
def test_a_line_with_brackets_pycasbin_loads_is_split_and_decided_as_it_does(tmp_path, line):
    directory = write_policy(tmp_path, CONDITION_MODEL, [GOOD, line])
    reference = casbin.Enforcer(str(directory / "model.conf"), str(directory / "policy.csv"))
    snapshot = load_snapshot(directory)
    assert [list(ln.values) for ln in snapshot.lines] == reference.get_policy()
    for who in ("alice", "bob", "carol"):
        decided = snapshot.decide(Principal(who), "ui:x", "show")
        assert decided.allowed == reference.enforce(who, "ui:x", "show")


@given(st.text(st.sampled_from("()[],# a'\"\t"), max_size=24))
def test_authz_splits_every_line_as_pycasbin_or_refuses_where_it_raises(line):
    # pycasbin's file adapter hands its splitter the stripped line.
    try:
        expected = _extract_tokens(line.strip())
    except IndexError:
        with pytest.raises(UnloadableLine):
            split_tokens(line)
    else:
        assert split_tokens(line) == expected


def test_a_reload_onto_a_line_pycasbin_cannot_load_keeps_the_last_good_policy(tmp_path):
    directory = write_policy(tmp_path, CONDITION_MODEL, [GOOD])
    live = LivePolicy(directory)
    serving = live.reload()
    write_policy(tmp_path, CONDITION_MODEL, [GOOD, "p, bob, ui:x, show, False) or (True"])
    with pytest.raises(PolicyLoadError, match=r"policy\.csv:2: .*unbalanced '\)'"):
        live.reload()
    assert live.current is serving
    assert live.last_rejected is not None
    assert [(f.file, f.line) for f in live.last_rejected.findings] == [("policy.csv", 2)]
    assert not live.current.decide(Principal("bob"), "ui:x", "show").allowed


def test_a_lone_carriage_return_in_a_policy_file_is_refused_at_its_line(tmp_path, capsys):
    # One `g` line to pycasbin (carol a member of `admin\rg`, dave of nothing); two to editors
    # and to a reader breaking lines at \r, which made both admins.
    directory = write_policy(tmp_path, CONDITION_MODEL, ["p, admin, ui:x, show, True"])
    with (directory / "policy.csv").open("a", newline="") as policy:
        policy.write("g, ann, admin\r\ng, carol, admin\rg, dave, admin\n")
    reference = casbin.Enforcer(str(directory / "model.conf"), str(directory / "policy.csv"))
    assert reference.get_grouping_policy() == [["ann", "admin"], ["carol", "admin\rg", "dave", "admin"]]
    decided = [reference.enforce(who, "ui:x", "show") for who in ("ann", "carol", "dave")]
    assert decided == [True, False, False]
    with pytest.raises(PolicyLoadError) as refused:
        load_snapshot(directory)
    [finding] = refused.value.findings
    assert (finding.file, finding.line) == ("policy.csv", 3)
    assert finding.message.startswith(
        "'g, carol, admin\\rg, dave, admin' holds a lone \\r (a carriage return not before \\n): "
        "pycasbin's file adapter reads it as part of the line"
    )
    assert main(["policy", "validate", str(directory)]) == 1
    assert f"{directory}/policy.csv:3: error: {finding.message}" in capsys.readouterr().out
    # Text that never was a file (a policy store's, a candidate's) is refused the same way.
    text = (directory / "policy.csv").read_bytes().decode()
    assert validate_source(PolicySource(CONDITION_MODEL, (("policy.csv", text),))).errors == [finding]


def test_a_policy_file_with_crlf_line_ends_loads_as_pycasbin_reads_it(tmp_path):
    directory = write_policy(tmp_path, CONDITION_MODEL, [])
    (directory / "policy.csv").write_bytes(b"p, admin, ui:x, show, True\r\ng, ann, admin\r\n")
    reference = casbin.Enforcer(str(directory / "model.conf"), str(directory / "policy.csv"))
    snapshot = load_snapshot(directory)
    loaded = reference.get_policy() + reference.get_grouping_policy()
    assert [list(ln.values) for ln in snapshot.lines] == loaded
    assert snapshot.decide(Principal("ann"), "ui:x", "show").allowed
