"""Proto-free decision types shared by the engine, the handlers and the transports."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Reason(enum.IntEnum):
    """Why a decision came out as it did; numbers equal the public API's `Reason`."""

    UNSPECIFIED = 0
    ALLOWED = 1
    NO_MATCHING_RULE = 2
    EXPLICIT_DENY = 3
    TOKEN_MISSING = 4
    TOKEN_MALFORMED = 5
    TOKEN_EXPIRED = 6
    TOKEN_NOT_YET_VALID = 7
    TOKEN_SIGNATURE_INVALID = 8
    TOKEN_AUDIENCE_MISMATCH = 9
    TOKEN_ISSUER_MISMATCH = 10
    TOKEN_ALGORITHM_NOT_ALLOWED = 11
    TOKEN_KEY_UNKNOWN = 12
    TOKEN_NOT_ACCESS_TOKEN = 13
    POLICY_ERROR = 14
    ATTRIBUTE_MISSING = 15

    @property
    def is_token_problem(self) -> bool:
        """True for the reasons a backend maps to HTTP 401 rather than 403."""
        return Reason.TOKEN_MISSING <= self <= Reason.TOKEN_NOT_ACCESS_TOKEN


_REASON_NAMES = {reason: f"REASON_{reason.name}" for reason in Reason}


def reason_name(reason: Reason) -> str:
    """The public enum name of a Reason (`REASON_ALLOWED`), as protobuf constructors accept it."""
    return _REASON_NAMES[reason]


@dataclass(frozen=True, slots=True)
class Decision:
    """One allow/deny answer with the policy lines that decided it."""

    allowed: bool
    reason: Reason
    message: str = ""
    matched_rules: tuple[str, ...] = field(default=())
