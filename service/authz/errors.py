"""Typed errors of the service; the gRPC layer maps each to one status code in one place."""

from __future__ import annotations


class AuthzError(Exception):
    """Base class of every error authz reports to a caller."""


class InvalidArgument(AuthzError):
    """The request itself is malformed (empty resource, oversized field, too many items)."""


class Unauthenticated(AuthzError):
    """The caller's token was not accepted by an RPC that needs a verified caller (the admin service)."""


class PermissionDenied(AuthzError):
    """The verified caller is not allowed to make this call."""


class Conflict(AuthzError):
    """The state changed since the caller read it (optimistic concurrency): read again, then retry."""


class AlreadyExists(AuthzError):
    """What the caller asked to create is already there."""


class NotFound(AuthzError):
    """What the caller named is not there."""


class FailedPrecondition(AuthzError):
    """The request is well-formed but the current state does not allow it (nothing was changed)."""


class PolicyLoadError(AuthzError):
    """A policy directory could not be turned into a serving snapshot.

    `findings` lists each problem as `FILE:LINE: message` so an operator can jump to it.
    """

    def __init__(self, message: str, findings: list[str] | None = None) -> None:
        self.findings = findings or [message]
        super().__init__(message if not findings else message + ":\n  " + "\n  ".join(findings))


class ConfigError(AuthzError):
    """The service configuration is invalid; `problems` holds one message per mistake."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class Unavailable(AuthzError):
    """A dependency the decision needs (policies, keys) is not ready yet."""
