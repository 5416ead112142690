"""Parsing `model.conf` with pycasbin's own config reader into what authz evaluates."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from casbin.model import Model

from authz.engine.bindings import REQUEST_FIELDS
from authz.engine.keymatch import matcher_functions
from authz.engine.policyfiles import MODEL_FILE
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


@dataclass(frozen=True)
class ModelSpec:
    """The parts of a Casbin model authz needs to evaluate requests."""

    request: tuple[str, ...]  # escaped names: r_sub, r_obj ...
    policy: tuple[str, ...]  # p_sub, p_obj ..., p_eft when present
    matcher: str  # escaped matcher text
    effect: Effect
    roles: dict[str, int]  # role definition -> arity (2, or 3 with a domain)

    def field_index(self, name: str) -> int | None:
        """Position of `p_<name>` in the policy definition, if present."""
        token = f"p_{name}"
        return self.policy.index(token) if token in self.policy else None


def parse_model(text: str) -> ModelSpec:
    """Parse model text; raises PolicyLoadError naming what is wrong."""
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
    request = tuple(sections["r"]["r"].tokens)
    unknown = [t for t in request if t.removeprefix("r_") not in REQUEST_FIELDS]
    if unknown:
        fields = ", ".join(t.removeprefix("r_") for t in unknown)
        raise PolicyLoadError.at(
            model_error(
                text, "r", f"unsupported request field(s) {fields} (authz binds {', '.join(REQUEST_FIELDS)})"
            )
        )
    effect_text = "".join(sections["e"]["e"].value.split())
    try:
        effect = Effect(effect_text)
    except ValueError:
        message = f"unsupported policy effect {sections['e']['e'].value!r}"
        raise PolicyLoadError.at(model_error(text, "e", message)) from None
    roles = {key: len(ast.value.split(",")) for key, ast in sections.get("g", {}).items()}
    return ModelSpec(
        request=request,
        policy=tuple(sections["p"]["p"].tokens),
        matcher=sections["m"]["m"].value,
        effect=effect,
        roles=roles,
    )


def model_error(model_text: str, key: str, message: str) -> Finding:
    """An error about the definition `key` (r, p, e, m ...) of model.conf, located on its line."""
    return Finding.error(MODEL_FILE, model_line(model_text, key), message)


def builtin_functions() -> dict[str, Callable[..., Any]]:
    """pycasbin's matcher functions (keyMatch2, regexMatch ...) by matcher name, the
    regular-expression ones running in linear time (`authz.engine.keymatch`)."""
    return matcher_functions()
