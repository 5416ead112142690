"""Static conjuncts narrow the index: under the demo model, element lines are few candidates.

`keyMatch(p.obj, "/*")` reads the line alone. On a line where it is false the branch
`keyMatch(p.obj, "/*") && keyMatch2(r.obj, p.obj)` is false, so the keyMatch2 prefix index
beside it leaves such lines out. It used to index them all: thousands of `ui:` element
lines shared the one prefix `ui`, a group too broad to keep, and since `*` (subject) and
`view` (action) were as broad, every element request weighed every line (20,000 such lines:
54 ms a decision, and GetVisibility over them minutes).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from authz.app import demo_policy_dir
from authz.engine import build_snapshot, load_snapshot
from authz.engine.bindings import Subject
from authz.engine.policyfiles import MODEL_FILE, PolicySource
from authz.engine.snapshot import Snapshot
from authz.principal import Principal
from tests.pycasbin_ref import enforcer, write_policy

DEMO = demo_policy_dir()
MODEL = (DEMO / MODEL_FILE).read_text(encoding="utf-8")
# Well past the size (BROAD_MIN) below which the index keeps every group anyway.
ELEMENTS = 2_000
SUBJECTS = ("*", "read:orders", "admin")


def _element_lines(count: int) -> str:
    return "".join(f"p, {SUBJECTS[i % 3]}, ui:el.{i}, view, True, allow\n" for i in range(count))


def _demo_with_elements(count: int) -> Snapshot:
    files = tuple((name, (DEMO / name).read_text(encoding="utf-8")) for name in ("policy.csv", "roles.csv"))
    return build_snapshot(PolicySource(MODEL, (*files, ("elements.csv", _element_lines(count)))))


def _candidates(snapshot: Snapshot, principal: Principal, obj: str, act: str) -> list[str]:
    assert snapshot.index is not None
    picked = snapshot.index.candidates(
        snapshot.model.aliased({"r_sub": Subject(principal), "r_obj": obj, "r_act": act, "r_dom": ""})
    )
    assert picked is not None, "the index did not narrow the request"
    return [snapshot.rules[i].line.values[1] for i in picked]


def test_an_element_request_weighs_only_that_elements_lines() -> None:
    snapshot = _demo_with_elements(ELEMENTS)
    reader = Principal("bob", permissions=("read:orders",))
    assert _candidates(snapshot, reader, "ui:el.7", "view") == ["ui:el.7"]
    assert _candidates(snapshot, reader, "ui:menu.admin", "view") == ["ui:menu.admin", "ui:menu.admin"]
    assert _candidates(snapshot, reader, "ui:missing", "view") == []
    # Routes are narrowed as before: by the prefix of their patterns.
    assert set(_candidates(snapshot, reader, "/api/orders/42", "GET")) <= {"/api/orders", "/api/orders/:id"}
    decide = snapshot.decide
    assert decide(reader, "ui:el.0", "view").allowed  # `*`
    assert decide(reader, "ui:el.1", "view").allowed  # read:orders
    assert not decide(reader, "ui:el.2", "view").allowed  # admin
    assert decide(Principal("root", roles=("admin",)), "ui:el.2", "view").allowed
    assert decide(reader, "/api/orders/42", "GET").allowed


def test_visibility_over_every_element_weighs_one_line_each() -> None:
    snapshot = dataclasses.replace(_demo_with_elements(ELEMENTS), cache=None)
    reader = Principal("bob", permissions=("read:orders",))
    names = snapshot.visible_resources("ui:el.")
    assert len(names) == ELEMENTS
    assert all(len(_candidates(snapshot, reader, name, "view")) == 1 for name in names)
    shown = [name for name in names if snapshot.decide(reader, name, "view").allowed]
    assert len(shown) == sum(1 for i in range(ELEMENTS) if SUBJECTS[i % 3] != "admin")


def test_decisions_equal_pycasbins_with_many_element_lines() -> None:
    # Elements, routes and deny lines of every subject and action kind, past the broad-group
    # size, each request asked of authz (indexed and full scan) and of pycasbin.
    lines = [
        f"p, {SUBJECTS[i % 3]}, ui:el.{i % 200}, {('view', '*', 'edit')[i % 7 % 3]}, True, "
        f"{'deny' if i % 11 == 0 else 'allow'}"
        for i in range(600)
    ]
    lines += [
        f"p, {SUBJECTS[i % 3]}, /api/r{i % 20}/:id, {('GET', '*')[i % 2]}, True, allow" for i in range(60)
    ]
    lines += ["p, *, /api/*, DELETE, True, deny", "p, admin, /*, *, True, allow", "p, *, *, view, True, deny"]
    roles = [
        line
        for line in (DEMO / "roles.csv").read_text(encoding="utf-8").splitlines()
        if line.startswith("g,")
    ]
    principals = (
        Principal("alice", permissions=("read:orders",)),
        Principal("root", roles=("admin",)),
        Principal("nobody"),
    )
    grants = [f"g, {p.id}, {grant}" for p in principals for grant in sorted(p.grants)]
    requests = [
        (obj, act)
        for obj in (
            "ui:el.0",
            "ui:el.1",
            "ui:el.2",
            "ui:el.11",
            "ui:el.199",
            "ui:missing",
            "*",
            "/api/r3/4",
            "/api/x",
        )
        for act in ("view", "edit", "GET", "DELETE")
    ]
    with tempfile.TemporaryDirectory() as tmp:
        ours = load_snapshot(write_policy(Path(tmp) / "authz", MODEL, [*lines, *roles]))
        reference = enforcer(write_policy(Path(tmp) / "pycasbin", MODEL, [*lines, *roles, *grants]))
    full_scan = dataclasses.replace(ours, index=None, cache=None)
    for principal in principals:
        for obj, act in requests:
            decision = ours.decide(principal, obj, act)
            expected = reference.enforce(principal.id, obj, act)
            assert decision.allowed == expected, (principal.id, obj, act, decision)
            assert full_scan.decide(principal, obj, act).allowed == expected
            if obj.startswith("ui:"):
                # The element's own lines and the one route pattern with no literal prefix.
                assert set(_candidates(ours, principal, obj, act)) <= {obj, "/*"}
