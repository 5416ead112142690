"""Policy directories for the policy tooling tests (real files in tmp_path), and model texts."""

from __future__ import annotations

import shutil
from pathlib import Path

from authz.app import demo_policy_dir

# Allow lines combined with deny lines, the effect most tests of several sections use.
BOTH = "some(where (p.eft == allow)) && !some(where (p.eft == deny))"
# Allow lines only: Casbin's basic effect.
ALLOW = "some(where (p.eft == allow))"


def model(
    matcher: str,
    effect: str = BOTH,
    *,
    request: str = "sub, obj, act",
    policy: str = "sub, obj, act, cond, eft",
    roles: str = "g = _, _",
) -> str:
    """A model.conf text with one section of each kind: r, p, g, e and m.

    The columns are the demo model's (a condition and an effect per line) unless told;
    `roles` is the [role_definition] section's lines, empty for a model without one.
    """
    role_definition = f"[role_definition]\n{roles}\n\n" if roles else ""
    return (
        f"[request_definition]\nr = {request}\n\n[policy_definition]\np = {policy}\n\n{role_definition}"
        f"[policy_effect]\ne = {effect}\n\n[matchers]\nm = {matcher}\n"
    )


# Deny rules that read top-level, nested, list and context attributes, and an allow rule
# comparing a token claim with an attribute (tests/test_attributes.py, test_properties_attrs.py).
ATTRIBUTE_MODEL = model(
    '(p.sub == "*" || g(r.sub, p.sub)) && r.obj == p.obj && r.act == p.act && eval(p.cond)',
    request="sub, obj, act, ctx",
)
ATTRIBUTE_POLICY = """\
p, *, doc, delete, True, allow
p, *, doc, delete, r.obj.status == 'shipped', deny
p, *, doc, delete, r.obj.meta.lock == 'held', deny
p, *, doc, delete, r.obj.tags[0] == 'frozen', deny
p, *, doc, delete, r.ctx.risk == 'high', deny
p, *, doc, share, r.sub.claims.tenant == r.obj.tenant, allow
"""


def contexts_model(e: str = BOTH, e2: str = BOTH, *, m2: str | None = None, extra: str = "") -> str:
    """r/p/e/m on (sub, obj, act) plus context 2 on (sub, obj) with keyMatch2 routes and g2 groups."""
    m2 = m2 or "g(r2.sub, p2.sub) && (keyMatch2(r2.obj, p2.obj) || g2(r2.obj, p2.obj))"
    return f"""[request_definition]
r = sub, obj, act
r2 = sub, obj

[policy_definition]
p = sub, obj, act, eft
p2 = sub, obj, eft

[role_definition]
g = _, _
g2 = _, _

[policy_effect]
e = {e}
e2 = {e2}

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
m2 = {m2}
{extra}"""


def copy_demo(tmp_path: Path, name: str = "policies") -> Path:
    """A writable copy of the demo policies, test suites included."""
    target = tmp_path / name
    shutil.copytree(demo_policy_dir(), target)
    return target


def line_number(path: Path, fragment: str) -> int:
    """The 1-based number of the only line of `path` containing `fragment`."""
    found = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if fragment in line]
    assert len(found) == 1, (fragment, found)
    return found[0]


def write_policy(directory: Path, model: str, **files: str) -> Path:
    """A policy directory with `model.conf` and the given `NAME_csv=text` files."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.conf").write_text(model)
    for name, text in files.items():
        (directory / name.replace("_csv", ".csv")).write_text(text)
    return directory
