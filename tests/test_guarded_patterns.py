"""A pattern a static conjunct keeps from its call is not compiled at load, nor counted.

Under the demo model keyMatch2(r.obj, p.obj) comes after `keyMatch(p.obj, "/*") &&`, false on a
`ui:` element line whatever the request, so keyMatch2 never reads an element id. The pattern
table compiled every dotted id anyway (`ui:el.7` holds a regex `.`): 20,000 of them kept
53 MiB, and past 32,768 (`patterntable.MAX_PATTERNS`) the policy was refused.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from casbin.util.builtin_operators import key_match2

from authz.app import demo_policy_dir
from authz.engine import load_snapshot
from authz.engine.patterntable import MAX_PATTERNS
from authz.engine.policyfiles import MODEL_FILE
from authz.engine.snapshot import Snapshot
from authz.errors import PolicyLoadError
from authz.principal import Principal
from tests.pycasbin_ref import enforcer, write_policy

DEMO = demo_policy_dir()
MODEL = (DEMO / MODEL_FILE).read_text(encoding="utf-8")
ELEMENTS = MAX_PATTERNS + 100
ROUTE = "p, read:orders, /api/x.y/:id, GET, True, allow"
# The demo's own lines (routes, `/*` for admins, `ui:` elements) and role links, beside ours.
DEMO_LINES = [
    line
    for name in ("policy.csv", "roles.csv")
    for line in (DEMO / name).read_text(encoding="utf-8").splitlines()
    if line.startswith(("p,", "g,"))
]
READER = Principal("bob", permissions=("read:orders",))
# pycasbin learns the token's grants from role links.
GRANTS = [f"g, {READER.id}, read:orders"]


def _element_lines() -> list[str]:
    # Distinct dotted ids, a third each for anyone, readers and admins.
    subjects = ("*", "read:orders", "admin")
    return [f"p, {subjects[i % 3]}, ui:el.{i}, view, True, allow" for i in range(ELEMENTS)]


@pytest.fixture(scope="module")
def policy_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield write_policy(Path(tmp), MODEL, [*_element_lines(), ROUTE, *DEMO_LINES])


def _reference(objects: list[str]) -> Any:
    """pycasbin over the lines that can match a request for `objects`: those naming one of them
    and every line that is not an element id (pycasbin weighs each of 32,868 lines per decision,
    5 s here). Under the demo matcher an element line matches only a request for its own id."""
    wanted = {f"ui:el.{i}" for i in range(ELEMENTS)} - set(objects)
    lines = [line for line in _element_lines() if line.split(", ")[2] not in wanted]
    with tempfile.TemporaryDirectory() as tmp:
        return enforcer(write_policy(Path(tmp), MODEL, [*lines, ROUTE, *DEMO_LINES, *GRANTS]))


@pytest.fixture(scope="module")
def snapshot(policy_dir: Path) -> Snapshot:
    return load_snapshot(policy_dir)


def _compiled(snapshot: Snapshot) -> set[tuple[str, str]]:
    # The (function, pattern) pairs the load compiled, read from the snapshot's own table.
    assert snapshot.patterns is not None
    return {(name, pattern) for name, programs in snapshot.patterns.programs.items() for pattern in programs}


def test_more_element_ids_than_the_pattern_limit_load_and_decide_as_pycasbin(
    policy_dir: Path, snapshot: Snapshot
) -> None:
    # Every fifth thousandth id, an id only keyMatch2's regex dot would match, and a missing one.
    sample = [f"ui:el.{i}" for i in range(0, ELEMENTS, 4_999)] + [
        "ui:elX1",
        "ui:el.99999999",
        "ui:menu.orders",
    ]
    reference = _reference(sample)
    for obj in sample:
        for act in ("view", "edit"):
            expected = reference.enforce(READER.id, obj, act)
            assert snapshot.decide(READER, obj, act).allowed == expected, (obj, act)
    # A call reaching a pattern the table left out (were the guard wrong) still matches as
    # pycasbin's keyMatch2, through the process's cache: only slower.
    ours = snapshot.functions["keyMatch2"]
    for key, pattern in (("ui:el.7", "ui:el.7"), ("ui:elX7", "ui:el.7"), ("ui:el.70", "ui:el.7")):
        assert ours(key, pattern) == key_match2(key, pattern), (key, pattern)


def test_a_dotted_route_is_still_compiled_and_matched_as_keymatch2(
    policy_dir: Path, snapshot: Snapshot
) -> None:
    compiled = _compiled(snapshot)
    assert ("keyMatch2", "/api/x.y/:id") in compiled
    assert not any(pattern.startswith("ui:") for _, pattern in compiled)
    reference = _reference([])
    # The dot is a regex dot, as in Casbin: `/api/xzy/7` matches the route.
    for obj in ("/api/x.y/7", "/api/xzy/7", "/api/x.y/7/8", "/api/xy/7"):
        expected = reference.enforce(READER.id, obj, "GET")
        assert snapshot.decide(READER, obj, "GET").allowed == expected, obj
    assert snapshot.decide(READER, "/api/xzy/7", "GET").allowed


@pytest.mark.parametrize(
    "guard",
    [
        'keyMatch(r.obj, "/*")',  # reads the request
        '(keyMatch(p.obj, "/*") || r.act == "view")',  # a static part or'ed with a request one
        # A line's condition pasted between them can regroup the rest (`False) or (True`).
        'keyMatch(p.obj, "/*") && eval(p.cond)',
    ],
)
def test_a_guard_reading_the_request_compiles_the_pattern_as_before(guard: str) -> None:
    # The same element lines load behind the static guard, and are counted behind this one.
    matcher = MODEL.splitlines()[-1]
    assert matcher.startswith("m = ")
    guarded = MODEL.replace(matcher, f"m = {guard} && keyMatch2(r.obj, p.obj) && r.act == p.act")
    static = MODEL.replace(matcher, 'm = keyMatch(p.obj, "/*") && keyMatch2(r.obj, p.obj) && r.act == p.act')
    with tempfile.TemporaryDirectory() as tmp:
        lines = _element_lines()
        assert load_snapshot(write_policy(Path(tmp) / "static", static, lines)).rules
        with pytest.raises(PolicyLoadError, match=f"hands {ELEMENTS:,} distinct regular-expression"):
            load_snapshot(write_policy(Path(tmp) / "guarded", guarded, lines))
