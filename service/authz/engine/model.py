"""Parsing `model.conf` with pycasbin's own config reader into what authz evaluates."""

from __future__ import annotations

import ast
import enum
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from operator import itemgetter
from typing import Any

from casbin.model import Model

from authz.engine.bindings import REQUEST_FIELDS
from authz.engine.keymatch import matcher_functions
from authz.engine.matcher import parse_matcher
from authz.engine.policyfiles import MODEL_FILE, text_lines
from authz.errors import PolicyLoadError
from authz.findings import Finding, model_line

# pycasbin logs every decision through its own loggers; authz logs decisions itself.
logging.getLogger("casbin").propagate = False
logging.getLogger("casbin").addHandler(logging.NullHandler())


class Effect(enum.Enum):
    """The policy effects pycasbin supports, by their canonical expression."""

    ALLOW_OVERRIDE = "some(where(p_eft==allow))"
    DENY_OVERRIDE = "!some(where(p_eft==deny))"
    ALLOW_AND_DENY = "some(where(p_eft==allow))&&!some(where(p_eft==deny))"
    PRIORITY = "priority(p_eft)||deny"
    # Priority by the subject's depth in the `g` hierarchy: the most specific subject first.
    SUBJECT_PRIORITY = "subjectPriority(p_eft)||deny"


@dataclass(frozen=True)
class ModelSpec:
    """The parts of a Casbin model authz needs to evaluate requests."""

    request: tuple[str, ...]  # escaped names: r_sub, r_obj ...
    policy: tuple[str, ...]  # p_sub, p_obj ..., p_eft when present
    matcher: str  # escaped matcher text
    effect: Effect
    roles: dict[str, int]  # role definition -> arity (2, or 3 with a domain)
    # What each request position is bound to (r_sub, r_obj ...): `request` itself when the
    # model uses authz's names, else by position (`r = user, thing, action`).
    bind: tuple[str, ...] = ()
    # Role definition -> number of link-condition values after the names (`g = _, _, (_, _)`: 2).
    conditions: dict[str, int] = field(default_factory=dict)
    # Role definition -> (role-name matching function, domain matching function), from
    # `# authz: g matches roles with keyMatch2` directives (pycasbin: add_named_matching_func).
    matching: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    def request_values(self, bound: Mapping[str, Any]) -> tuple[Any, ...]:
        """The matcher's request arguments from the request bound by authz's names."""
        return self._request_getter(bound)

    def aliased(self, bound: dict[str, Any]) -> dict[str, Any]:
        """`bound` plus the model's own request names (`r_user` ...), for the policy index."""
        for own, canonical in self._aliases:
            bound[own] = bound[canonical]
        return bound

    @cached_property
    def _request_getter(self) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
        # Built once per model: every decision reads the request values through it.
        names = self.bind or self.request
        if len(names) == 1:
            (name,) = names
            return lambda bound: (bound[name],)
        return itemgetter(*names)

    @cached_property
    def _aliases(self) -> tuple[tuple[str, str], ...]:
        # The model's own names that differ from authz's (none when the model uses authz's).
        return tuple(
            (own, canonical)
            for own, canonical in zip(self.request, self.bind, strict=False)
            if own != canonical
        )

    def role_values(self, name: str) -> int:
        """How many values a line of role definition `name` carries (names, domain, condition)."""
        return self.roles[name] + self.conditions.get(name, 0)

    def field_index(self, name: str) -> int | None:
        """Position of `p_<name>` in the policy definition, if present."""
        token = f"p_{name}"
        return self.policy.index(token) if token in self.policy else None


# Line breaks to `str.splitlines` (and to editors) that Casbin's model reader does not break at,
# reading model text through a StringIO that ends lines at \n only: a matcher holding one would
# be one line to Casbin and two to a reader of the file.
_ODD_LINE_BREAK = re.compile("\r(?!\n)|[\v\f\x1c-\x1e\x85\u2028\u2029]")


def parse_model(text: str) -> ModelSpec:
    """Parse model text; raises PolicyLoadError naming what is wrong."""
    odd = _ODD_LINE_BREAK.search(text)
    if odd is not None:
        number = text.count("\n", 0, odd.start()) + 1
        raise PolicyLoadError.at(
            Finding.error(
                MODEL_FILE,
                number,
                f"holds U+{ord(odd.group()):04X}, a line break to some readers and not to Casbin's: "
                "end lines with \\n or \\r\\n only",
            )
        )
    model = Model()
    try:
        model.load_model_from_text(text)
    except Exception as exc:  # pycasbin raises bare Exceptions and RuntimeErrors
        raise PolicyLoadError.at(Finding.error(MODEL_FILE, 0, str(exc))) from exc
    sections: dict[str, Any] = model.model
    problems = [
        Finding.error(MODEL_FILE, 0, f"missing [{title}] section with '{key} = ...'")
        for key, title in (
            ("r", "request_definition"),
            ("p", "policy_definition"),
            ("e", "policy_effect"),
            ("m", "matchers"),
        )
        if key not in sections or key not in sections[key]
    ]
    if problems:
        raise PolicyLoadError("invalid model", problems)
    # r2, p2, e2, m2 ... are enforce contexts, each parsed as a model of its own (`engine/contexts.py`).
    request = tuple(sections["r"]["r"].tokens)
    bind = _binding(text, request)
    effect_text = "".join(sections["e"]["e"].value.split())
    try:
        effect = Effect(effect_text)
    except ValueError:
        message = f"unsupported policy effect {sections['e']['e'].value!r}"
        raise PolicyLoadError.at(model_error(text, "e", message)) from None
    roles: dict[str, int] = {}
    conditions: dict[str, int] = {}
    for key, definition in sections.get("g", {}).items():
        roles[key], count = _role_shape(text, key, definition.value)
        if count:
            conditions[key] = count
    if effect is Effect.SUBJECT_PRIORITY and ("g" not in roles or "g" in conditions):
        why = (
            "which has link conditions (pycasbin would read their start time as a domain)"
            if "g" in roles
            else "which the model lacks"
        )
        message = f"subjectPriority(p.eft) ranks subjects by role definition g, {why}"
        raise PolicyLoadError.at(model_error(text, "e", message))
    matcher = sections["m"]["m"].value
    for name, count in _calls(matcher):
        if name in conditions and count != roles[name]:
            # pycasbin looks a link's condition up under the domain it is given: with a domain
            # the definition does not have (or without one it does) every window is skipped.
            message = (
                f"{name}() is called with {count} arguments but role definition {name} has link "
                f"conditions and {roles[name]} names: Casbin would skip the conditions"
            )
            raise PolicyLoadError.at(model_error(text, "m", message))
        expected = (2, 3) if name in roles else (2,) if name in _BUILTINS else None
        if expected is not None and count not in expected:
            # pycasbin drops extra arguments of its functions (and fails on too few).
            shown = " or ".join(str(n) for n in expected)
            message = f"{name}() is called with {count} argument(s); it takes {shown}"
            raise PolicyLoadError.at(model_error(text, "m", message))
    matching = _directives(text, roles, conditions)
    return ModelSpec(
        matching=matching,
        request=request,
        bind=bind,
        policy=tuple(sections["p"]["p"].tokens),
        matcher=matcher,
        effect=effect,
        roles=roles,
        conditions=conditions,
    )


# `_, _`, `_, _, _` and with link conditions `_, _, (_, _)` / `_, _, _, (_, _)`.
_ROLE_SHAPE = re.compile(r"\s*_\s*(?:,\s*_\s*)*(?:,\s*\(\s*_\s*(?:,\s*_\s*)*\)\s*)?")
# The one link condition authz implements: Casbin's timeMatch over a (start, end) window.
LINK_CONDITION_VALUES = 2


def _role_shape(text: str, key: str, value: str) -> tuple[int, int]:
    """(names incl. domain, link-condition values) of a role definition; refuses other shapes."""
    if not _ROLE_SHAPE.fullmatch(value):
        raise PolicyLoadError.at(
            model_error(
                text,
                key,
                f"role definition {key} = {value!r} is not `_, _` or `_, _, _`, "
                "optionally followed by link-condition values `(_, _)`",
            )
        )
    names, _, params = value.partition("(")
    arity = names.count("_")
    count = params.count("_")
    if arity > 3:
        message = f"role definition {key} has {arity - 2} domains; Casbin's role managers take at most one"
        raise PolicyLoadError.at(model_error(text, key, message))
    if params and count != LINK_CONDITION_VALUES:
        message = (
            f"role definition {key} has {count} link-condition value(s); authz implements the time "
            "window condition (start, end), `(_, _)`, only"
        )
        raise PolicyLoadError.at(model_error(text, key, message))
    return arity, count


_DIRECTIVE = re.compile(r"\s*#\s*authz\s*:\s*(?P<body>.*?)\s*")
_MATCHING = re.compile(r"(?P<role>g\d*) matches (?P<what>roles|domains) with (?P<fn>\w+)")
# pycasbin's functions that compare a name with a pattern (patterns.SPECIAL).
MATCHING_FUNCTIONS = (
    "keyMatch",
    "keyMatch2",
    "keyMatch3",
    "keyMatch4",
    "keyMatch5",
    "globMatch",
    "regexMatch",
)


def _directives(
    text: str, roles: dict[str, int], conditions: dict[str, int]
) -> dict[str, tuple[str | None, str | None]]:
    """The `# authz: g matches roles|domains with FUNCTION` comments of model.conf.

    What pycasbin sets in code (`add_named_matching_func`, `add_named_domain_matching_func`)
    is declared beside the role definition; any other `# authz:` comment is an error, so a
    typo never silently turns matching off.
    """
    found: dict[str, tuple[str | None, str | None]] = {}
    for number, raw in enumerate(text_lines(text), start=1):
        directive = _DIRECTIVE.fullmatch(raw)
        if directive is None:
            continue
        body = directive.group("body")
        parsed = _MATCHING.fullmatch(body)
        problem = None
        if parsed is None:
            problem = f"unknown directive {body!r} (expected `g matches roles|domains with FUNCTION`)"
        else:
            role, what, fn = parsed.group("role", "what", "fn")
            if role not in roles:
                problem = f"role definition {role} is not in the model"
            elif fn not in MATCHING_FUNCTIONS:
                problem = f"{fn} is not a matching function ({', '.join(MATCHING_FUNCTIONS)})"
            elif what == "domains" and roles[role] != 3:
                problem = f"role definition {role} has no domain to match"
            elif role in conditions:
                problem = (
                    f"role definition {role} has link conditions, which authz does not combine with matching"
                )
            else:
                roles_fn, domains_fn = found.get(role, (None, None))
                if (roles_fn if what == "roles" else domains_fn) is not None:
                    problem = f"{role} already matches {what} with a function"
                else:
                    found[role] = (fn, domains_fn) if what == "roles" else (roles_fn, fn)
        if problem is not None:
            raise PolicyLoadError.at(Finding.error(MODEL_FILE, number, f"authz directive: {problem}"))
    return found


# Casbin's request definitions by position when the names are not authz's own.
_POSITIONAL = {3: ("sub", "obj", "act"), 4: ("sub", "dom", "obj", "act")}


def _binding(text: str, request: tuple[str, ...]) -> tuple[str, ...]:
    """What each request position binds to; refuses definitions authz cannot bind."""
    names = [token.removeprefix("r_") for token in request]
    if all(name in REQUEST_FIELDS for name in names):
        return request
    by_position = _POSITIONAL.get(len(names))
    clash = by_position is not None and any(
        name in REQUEST_FIELDS and name != role for name, role in zip(names, by_position, strict=True)
    )
    if by_position is None or clash:
        message = (
            f"request definition r = {', '.join(names)}: authz binds the names {', '.join(REQUEST_FIELDS)}, "
            "or other names by position as `sub, obj, act` or `sub, dom, obj, act`"
        )
        raise PolicyLoadError.at(model_error(text, "r", message))
    return tuple(f"r_{role}" for role in by_position)


def _calls(matcher: str) -> Iterator[tuple[str, int]]:
    """(function name, argument count) of every call in the matcher that parses."""
    tree = parse_matcher(matcher)
    if tree is None:
        return  # reported when the matcher is compiled
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            yield node.func.id, len(node.args)


def model_error(model_text: str, key: str, message: str) -> Finding:
    """An error about the definition `key` (r, p, e, m ...) of model.conf, located on its line."""
    return Finding.error(MODEL_FILE, model_line(model_text, key), message)


def builtin_functions() -> dict[str, Callable[..., Any]]:
    """pycasbin's matcher functions (keyMatch2, regexMatch ...) by matcher name, the
    regular-expression ones running in linear time (`authz.engine.keymatch`)."""
    return matcher_functions()


# Every one of them compares two values (keyMatch2(key, pattern), timeMatch(start, end) ...).
_BUILTINS = frozenset(builtin_functions())
