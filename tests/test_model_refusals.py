"""`authz policy validate` refuses, at FILE:LINE with the reason, what authz would not decide as
Casbin does; "valid" means the same decisions."""

from __future__ import annotations

import pytest

from authz.policy.validate import validate_dir
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
