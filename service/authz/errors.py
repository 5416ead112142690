"""Typed errors of the service; the gRPC layer maps each to one status code in one place."""

from __future__ import annotations

import os
from collections.abc import Sequence

from authz.findings import Finding, capped, listed, shortened


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

    `findings` locates each problem (file and line) so an operator can jump to it; without
    any, the message is the one unlocated finding. The text lists them as `FILE:LINE: message`.
    """

    def __init__(self, message: str, findings: Sequence[Finding] | None = None) -> None:
        message = shortened(message)
        self.message = message
        self.findings = capped(findings) if findings else [Finding.error("", 0, message)]
        # One finding that reads exactly as the message (see `at`) is not repeated under it.
        alone = [str(f) for f in self.findings] == [message]
        super().__init__(message if alone else listed(message, self.findings))

    @classmethod
    def at(cls, finding: Finding) -> PolicyLoadError:
        """The error of one located problem: its text is the finding's."""
        return cls(str(finding), [finding])


class ConfigError(AuthzError):
    """The service configuration is invalid; `problems` holds one message per mistake."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class Unavailable(AuthzError):
    """A dependency the decision needs (policies, keys) is not ready yet."""


class ListenError(OSError):
    """A listener cannot bind its address; names the setting (and flag) that moves it.

    An OSError, as a failed bind always was, so `authz serve` can print it as one line.
    """

    LISTENERS = {
        "listen": "the gRPC listener",
        "http_listen": "the HTTP listener",
        "metrics_listen": "the metrics listener",
        "dev_issuer_port": "the dev issuer",
    }

    def __init__(self, setting: str, address: str, reason: str) -> None:
        self.setting, self.address, self.reason = setting, address, reason
        super().__init__(
            f"cannot listen on {address} ({setting}): {reason}; {self.LISTENERS.get(setting, setting)} "
            f"moves with AUTHZ_{setting.upper()} or --{setting.replace('_', '-')}"
        )

    @classmethod
    def of(cls, setting: str, address: str, exc: OSError) -> ListenError:
        """The error of a bind that raised `exc`, told by its errno ("address already in use")."""
        # The errno's own text: socket.create_server adds the address to `strerror`.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        return cls(setting, address, reason[:1].lower() + reason[1:])
