"""The one exception type the client raises for failed RPCs."""

from __future__ import annotations

import grpc

__all__ = ["AuthzError"]

# Codes that mean "could not get an answer" rather than "the request was wrong".
_UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class AuthzError(Exception):
    """An RPC to authz failed: the server was unreachable, too slow, or rejected the request.

    A deny is never an ``AuthzError``: it is a result with ``allowed=False``. Callers should
    fail closed on this exception.
    """

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code = code
        self.details = details

    @classmethod
    def from_rpc_error(cls, exc: grpc.RpcError) -> AuthzError:
        """Build from a grpc (sync or aio) error."""
        # Not every RpcError subclass is also a grpc.Call (interceptors may raise bare ones).
        code_fn = getattr(exc, "code", None)
        details_fn = getattr(exc, "details", None)
        code = code_fn() if callable(code_fn) else None
        details = details_fn() if callable(details_fn) else None
        return cls(
            code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN,
            details if isinstance(details, str) else str(exc),
        )

    @property
    def unreachable(self) -> bool:
        """True when no answer arrived (UNAVAILABLE or DEADLINE_EXCEEDED): retrying may help."""
        return self.code in _UNREACHABLE

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details}"
