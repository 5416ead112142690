"""Link conditions (`g = _, _, (_, _)`): time-windowed role links, decided as pycasbin does.

pycasbin needs `add_named_link_condition_func(..., time_match_func)` per link in code;
authz applies Casbin's time window to every link of such a role definition. The clock
is held still on both sides (pycasbin's `datetime` in its operators module, authz's
`roles.now`) so a request can sit exactly on a window's start or end.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import casbin.util.builtin_operators as casbin_operators
import pytest

from authz.engine import load_snapshot
from authz.engine import roles as roles_module
from authz.errors import PolicyLoadError
from authz.policy.validate import validate_dir
from authz.principal import Principal
from tests.pycasbin_ref import enforcer, write_policy

START = datetime(2030, 5, 1, 9, 0, 0)
END = datetime(2030, 5, 1, 17, 0, 0)
STAMP = "%Y-%m-%d %H:%M:%S"
TIMED_MODEL = """[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[role_definition]
g = _, _, (_, _)

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
"""
DOMAIN_MODEL = (
    TIMED_MODEL.replace("r = sub, obj, act", "r = sub, dom, obj, act")
    .replace("p = sub, obj, act", "p = sub, dom, obj, act")
    .replace("g = _, _, (_, _)", "g = _, _, _, (_, _)")
    .replace("g(r.sub, p.sub)", "g(r.sub, p.sub, r.dom) && r.dom == p.dom")
)
# Around each edge: just before, exactly on it (the comparison is strict), just after.
MOMENTS = (
    START - timedelta(seconds=1),
    START,
    START + timedelta(microseconds=1),
    END - timedelta(microseconds=1),
    END,
    END + timedelta(seconds=1),
)
INSIDE = (False, False, True, True, False, False)


class _Clock:
    at = START


class _FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        return _Clock.at


@pytest.fixture
def clock(monkeypatch):
    monkeypatch.setattr(casbin_operators, "datetime", _FrozenDatetime)
    monkeypatch.setattr(roles_module, "now", lambda: _Clock.at)
    yield _Clock
    _Clock.at = START


def _window(start: datetime | None, end: datetime | None) -> str:
    return f"{start.strftime(STAMP) if start else '_'}, {end.strftime(STAMP) if end else '_'}"


def test_a_link_holds_strictly_inside_its_window_at_both_edges(tmp_path, clock):
    directory = write_policy(
        tmp_path,
        TIMED_MODEL,
        [
            "p, admin, data, read",
            "p, auditor, logs, read",
            f"g, alice, admin, {_window(START, END)}",
            f"g, alice, auditor, {_window(None, END)}",  # open start
            f"g, bob, admin, {_window(START, None)}",  # open end
        ],
    )
    snapshot = load_snapshot(directory)
    reference = enforcer(directory)
    assert snapshot.cache is None  # decisions read the clock
    seen = []
    for moment in MOMENTS:
        clock.at = moment
        for sub, obj in (("alice", "data"), ("alice", "logs"), ("bob", "data")):
            want = reference.enforce(sub, obj, "read")
            got = snapshot.decide(Principal(id=sub), obj, "read")
            assert got.allowed == want, (moment, sub, obj, got.message)
        alice = snapshot.decide(Principal(id="alice"), "data", "read").allowed
        seen.append(alice)
    assert tuple(seen) == INSIDE


def test_domain_links_have_windows_per_domain(tmp_path, clock):
    directory = write_policy(
        tmp_path,
        DOMAIN_MODEL,
        [
            "p, admin, d1, data, read",
            "p, admin, d2, data, read",
            f"g, alice, admin, d1, {_window(START, END)}",
            f"g, alice, admin, d2, {_window(END, None)}",
        ],
    )
    snapshot = load_snapshot(directory)
    reference = enforcer(directory)
    outcomes = []
    for moment in MOMENTS:
        clock.at = moment
        for domain in ("d1", "d2", "d3"):
            want = reference.enforce("alice", domain, "data", "read")
            got = snapshot.decide(Principal(id="alice", org_id=domain), "data", "read").allowed
            assert got == want, (moment, domain)
            outcomes.append(got)
    assert True in outcomes and False in outcomes


def test_the_last_line_for_a_link_sets_its_window_as_in_pycasbin(tmp_path, clock):
    directory = write_policy(
        tmp_path,
        TIMED_MODEL,
        [
            "p, admin, data, read",
            f"g, alice, admin, {_window(START, END)}",
            f"g, alice, admin, {_window(END, None)}",
        ],
    )
    snapshot, reference = load_snapshot(directory), enforcer(directory)
    for moment in MOMENTS:
        clock.at = moment
        assert snapshot.decide(Principal(id="alice"), "data", "read").allowed == reference.enforce(
            "alice", "data", "read"
        )


def test_token_grants_still_count_beside_timed_links(tmp_path, clock):
    directory = write_policy(
        tmp_path, TIMED_MODEL, ["p, admin, data, read", f"g, editor, admin, {_window(START, END)}"]
    )
    snapshot = load_snapshot(directory)
    token = Principal(id="carol", roles=("editor",))
    clock.at = START + timedelta(hours=1)
    assert snapshot.decide(token, "data", "read").allowed
    clock.at = END
    assert not snapshot.decide(token, "data", "read").allowed


@pytest.mark.parametrize(
    ("model", "lines", "where", "fragment"),
    [
        (
            TIMED_MODEL,
            ["p, a, b, c", "g, alice, admin, tomorrow, _"],
            ("policy.csv", 2),
            "'tomorrow' is not a time",
        ),
        (TIMED_MODEL, ["p, a, b, c", "g, alice, admin"], ("policy.csv", 2), "role definition g needs 4"),
        (TIMED_MODEL, ["p, a, b, c", "g, a, b, 0000-01-01 00:00:00, _"], ("policy.csv", 2), "is not a time"),
        (
            TIMED_MODEL.replace("(_, _)", "(_, _, _)"),
            ["p, a, b, c"],
            ("model.conf", 8),
            "3 link-condition value(s)",
        ),
        (
            TIMED_MODEL.replace("g = _, _, (_, _)", "g = _, _, _, _"),
            ["p, a, b, c"],
            ("model.conf", 8),
            "2 domains",
        ),
        (
            TIMED_MODEL.replace("g = _, _, (_, _)", "g = a, b"),
            ["p, a, b, c"],
            ("model.conf", 8),
            "is not `_, _`",
        ),
        (
            TIMED_MODEL.replace("g(r.sub, p.sub)", "g(r.sub, p.sub, 'd1')"),
            ["p, a, b, c"],
            ("model.conf", 14),
            "Casbin would skip the conditions",
        ),
    ],
)
def test_validate_refuses_what_would_be_misread(tmp_path, model, lines, where, fragment):
    directory = write_policy(tmp_path, model, lines)
    report = validate_dir(directory)
    assert not report.ok
    assert any((f.file, f.line) == where and fragment in f.message for f in report.errors), report.errors
    with pytest.raises(PolicyLoadError):
        load_snapshot(directory)


def test_the_published_temporal_example_grants_what_pycasbin_grants():
    # Casbin's own example: alice keeps data3, 4, 5, 7 and loses 2, 6, 8 (windows past or future).
    directory = Path(__file__).resolve().parent / "conformance" / "rbac_with_temporal_roles"
    snapshot = load_snapshot(directory)
    allowed = {
        obj
        for obj in (f"data{i}" for i in range(1, 9))
        if snapshot.decide(Principal(id="alice"), obj, "read").allowed
    }
    assert allowed == {"data1", "data3", "data4", "data5", "data7"}
    assert validate_dir(directory).findings == []
