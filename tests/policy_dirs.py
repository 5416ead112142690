"""Policy directories for the policy tooling tests: real files in tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

from authz.app import demo_policy_dir

# Deny rules that read top-level, nested, list and context attributes, and an allow rule
# comparing a token claim with an attribute (tests/test_attributes.py, test_properties_attrs.py).
ATTRIBUTE_MODEL = """\
[request_definition]
r = sub, obj, act, ctx

[policy_definition]
p = sub, obj, act, cond, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = (p.sub == "*" || g(r.sub, p.sub)) && r.obj == p.obj && r.act == p.act && eval(p.cond)
"""
ATTRIBUTE_POLICY = """\
p, *, doc, delete, True, allow
p, *, doc, delete, r.obj.status == 'shipped', deny
p, *, doc, delete, r.obj.meta.lock == 'held', deny
p, *, doc, delete, r.obj.tags[0] == 'frozen', deny
p, *, doc, delete, r.ctx.risk == 'high', deny
p, *, doc, share, r.sub.claims.tenant == r.obj.tenant, allow
"""

# Allow lines combined with deny lines, the effect most tests of several sections use.
BOTH = "some(where (p.eft == allow)) && !some(where (p.eft == deny))"


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
