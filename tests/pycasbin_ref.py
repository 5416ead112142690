"""pycasbin as the reference authz is compared with: enforcers over the same files, ABAC objects.

Only tests import this; authz's own engine never sees these helpers.
"""

from __future__ import annotations

import copy
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import casbin
from casbin.model.function import FunctionMap
from casbin.util.builtin_operators import time_match_func

from authz.engine.policyfiles import MODEL_FILE


class AttrStr(str):
    """A string carrying attributes, the way pycasbin's ABAC examples pass `r.obj.owner`.

    pycasbin reads request attributes with plain attribute access, so its side of a
    comparison needs objects like this; authz's side gets the same values as `attributes`.
    """

    def __new__(cls, value: str, **attributes: Any) -> AttrStr:
        obj = super().__new__(cls, value)
        obj.__dict__.update(attributes)
        return obj


def enforcer(directory: Path) -> casbin.Enforcer:
    """pycasbin's own Enforcer over `directory`'s model.conf and its one policy.csv.

    Where a role definition has link conditions (`g = _, _, (_, _)`), every link gets
    Casbin's timeMatch as its condition: the registration in code pycasbin needs for what
    authz does from the files alone.
    """
    reference = casbin.Enforcer(str(directory / MODEL_FILE), str(directory / "policy.csv"))
    register_time_conditions(reference)
    register_matching(reference, (directory / MODEL_FILE).read_text(encoding="utf-8"))
    return reference


_MATCHING = re.compile(r"^\s*#\s*authz:\s*(g\d*) matches (roles|domains) with (\w+)\s*$", re.MULTILINE)


def register_matching(reference: casbin.Enforcer, model_text: str) -> None:
    """What authz's `# authz: g matches roles|domains with F` says, as pycasbin's calls in code."""
    functions = FunctionMap.load_function_map().get_functions()
    for ptype, what, name in _MATCHING.findall(model_text):
        if what == "roles":
            reference.add_named_matching_func(ptype, functions[name])
        else:
            reference.add_named_domain_matching_func(ptype, functions[name])


def forget_asked_names(reference: casbin.Enforcer) -> None:
    """Answer every `g()` call on a copy of the role graph as loaded.

    pycasbin's role manager adds each name a `g()` call asks about to a pattern-matched
    graph, so an answer depends on the calls before it, even on earlier lines of the same
    request. authz answers each call as the graph the policy built would (docs/policies.md,
    deliberate differences): this is that reference.
    """
    for assertion in reference.model.model.get("g", {}).values():
        manager = assertion.rm
        if manager is None:
            continue
        loaded = copy.deepcopy(manager)

        def has_link(*args: str, loaded: Any = loaded) -> bool:
            return bool(copy.deepcopy(loaded).has_link(*args))

        manager.has_link = has_link


def register_time_conditions(reference: casbin.Enforcer) -> None:
    """`add_named_(domain_)link_condition_func(..., time_match_func)` for every conditional link."""
    for ptype, assertion in reference.model.model.get("g", {}).items():
        if not assertion.params_tokens:
            continue
        names = len(assertion.tokens)
        for link in assertion.policy:
            if names == 2:
                reference.add_named_link_condition_func(ptype, link[0], link[1], time_match_func)
            else:
                reference.add_named_domain_link_condition_func(
                    ptype, link[0], link[1], link[2], time_match_func
                )


def write_policy(directory: Path, model_text: str, lines: Iterable[str]) -> Path:
    """Write a one-file policy directory (model.conf + policy.csv) and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).write_text(model_text, encoding="utf-8")
    (directory / "policy.csv").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return directory


def line_matches(model_text: str, p_line: str, g_lines: Iterable[str], request: tuple[Any, ...]) -> bool:
    """pycasbin's matcher on one `p` line alone (with the role lines): does it match `request`?

    `enforce_ex` names the line whose matcher was true whatever its effect, so a
    one-line policy tells whether that line matches, for allow and deny lines alike.
    """
    with tempfile.TemporaryDirectory() as tmp:
        directory = write_policy(Path(tmp), model_text, [p_line, *g_lines])
        _, explained = enforcer(directory).enforce_ex(*request)
    return bool(explained)
