"""Sync and asyncio clients for the authz ``AuthorizationService``.

Both clients build their requests with the same helpers (``_convert``); they differ only in
how they wait for the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from grpc import aio

from authz_client._api import authz_pb2_grpc

from . import _convert
from ._convert import Call, Metadata
from .errors import AuthzError
from .plan import PlanResult, plan_request, plan_result
from .results import BatchResult, CheckItem, CheckResult, Principal, Visibility

__all__ = ["AsyncAuthzClient", "AuthzClient"]

T = TypeVar("T")


def _valid_timeout(timeout: float) -> float:
    # No "no deadline" option on purpose: a call without one hangs a request forever when authz stalls.
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return timeout


class _ClientBase:
    """Token and deadline defaults plus request building; no I/O."""

    def __init__(self, target: str, *, timeout: float, token: str | None) -> None:
        _valid_timeout(timeout)
        self.target = target
        self.timeout = timeout
        self._token = token

    def _token_for(self, token: str | None) -> str:
        # An explicit "" means "send no token" even when the client has a default: callers that
        # forward an end user's (absent) token must never fall back to the service's own.
        if token is not None:
            return token
        return self._token or ""

    def _call(
        self,
        method: str,
        request: Any,
        convert: Callable[[Any], T],
        timeout: float | None,
        metadata: Metadata | None,
    ) -> Call[T]:
        return Call(
            method=method,
            request=request,
            timeout=self.timeout if timeout is None else _valid_timeout(timeout),
            metadata=tuple(metadata) if metadata is not None else None,
            convert=convert,
        )

    def _check_call(
        self,
        resource: str,
        action: str,
        token: str | None,
        attributes: Mapping[str, Any] | None,
        context: Mapping[str, Any] | None,
        explain: bool,
        timeout: float | None,
        metadata: Metadata | None,
        enforce_context: str,
    ) -> Call[CheckResult]:
        request = _convert.check_request(
            self._token_for(token), resource, action, attributes, context, explain, enforce_context
        )
        return self._call("Check", request, _convert.check_result, timeout, metadata)

    def _batch_call(
        self,
        items: Iterable[CheckItem | tuple[str, str]],
        token: str | None,
        explain: bool,
        timeout: float | None,
        metadata: Metadata | None,
    ) -> Call[BatchResult]:
        request = _convert.batch_request(self._token_for(token), items, explain)
        return self._call("BatchCheck", request, _convert.batch_result, timeout, metadata)

    def _visibility_call(
        self,
        elements: Iterable[str] | None,
        prefix: str | None,
        action: str,
        token: str | None,
        timeout: float | None,
        metadata: Metadata | None,
        enforce_context: str,
    ) -> Call[Visibility]:
        request = _convert.visibility_request(
            self._token_for(token), elements, prefix, action, enforce_context
        )
        return self._call("GetVisibility", request, _convert.visibility_result, timeout, metadata)

    def _principal_call(
        self, token: str | None, timeout: float | None, metadata: Metadata | None
    ) -> Call[Principal]:
        request = _convert.principal_request(self._token_for(token))
        return self._call("GetPrincipal", request, _convert.principal_result, timeout, metadata)

    def _plan_call(
        self,
        action: str,
        resource: str,
        token: str | None,
        attributes: Mapping[str, Any] | None,
        context: Mapping[str, Any] | None,
        explain: bool,
        timeout: float | None,
        metadata: Metadata | None,
        enforce_context: str,
    ) -> Call[PlanResult]:
        request = plan_request(
            self._token_for(token), action, resource, attributes, context, explain, enforce_context
        )
        return self._call("PlanResources", request, plan_result, timeout, metadata)


class AuthzClient(_ClientBase):
    """Blocking client; thread-safe (one channel, shared by all calls).

    ``target`` is ``host:port``. Without ``credentials`` the channel is plaintext, which suits
    loopback or a service mesh; pass ``grpc.ssl_channel_credentials(...)`` for TLS / mTLS.
    ``timeout`` is the default deadline of every call in seconds. ``token`` is a default access
    token for calls that do not pass one (a service calling with its own machine token).
    """

    def __init__(
        self,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = 2.0,
        token: str | None = None,
    ) -> None:
        super().__init__(target, timeout=timeout, token=token)
        self._channel = (
            grpc.insecure_channel(target) if credentials is None else grpc.secure_channel(target, credentials)
        )
        self._stub: Any = authz_pb2_grpc.AuthorizationServiceStub(self._channel)

    def _run(self, call: Call[T]) -> T:
        try:
            response = getattr(self._stub, call.method)(
                call.request, timeout=call.timeout, metadata=call.metadata
            )
        except grpc.RpcError as exc:
            raise AuthzError.from_rpc_error(exc) from None
        return call.convert(response)

    def check(
        self,
        resource: str,
        action: str,
        *,
        token: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        explain: bool = False,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        enforce_context: str = "",
    ) -> CheckResult:
        """Ask whether the token's principal may perform ``action`` on ``resource``.

        ``attributes`` describe the resource (owner, org_id, status ...), ``context`` the
        environment; both are JSON-like dicts. ``explain`` asks for ``matched_rules``. A deny,
        including a bad or missing token, is a result with ``allowed=False``; only a failed RPC
        raises :class:`AuthzError`. With no token here or on the client, the server reads the
        ``authorization`` entry of ``metadata``. ``enforce_context`` selects Casbin's section set:
        ``"2"`` decides with the model's r2, p2, e2 and m2 (a context the model lacks raises
        :class:`AuthzError` with code ``INVALID_ARGUMENT``).
        """
        return self._run(
            self._check_call(
                resource, action, token, attributes, context, explain, timeout, metadata, enforce_context
            )
        )

    def batch_check(
        self,
        items: Iterable[CheckItem | tuple[str, str]],
        *,
        token: str | None = None,
        explain: bool = False,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> BatchResult:
        """Ask several questions for one token, verified once.

        ``items`` are :class:`CheckItem` or ``(resource, action)`` pairs; results come back with
        the items' correlation ids (their position when not given).
        """
        return self._run(self._batch_call(items, token, explain, timeout, metadata))

    def visibility(
        self,
        *,
        elements: Iterable[str] | None = None,
        prefix: str | None = None,
        action: str = "view",
        token: str | None = None,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        enforce_context: str = "",
    ) -> Visibility:
        """List which UI elements the principal may see: give exactly one of ``elements`` or ``prefix``."""
        return self._run(
            self._visibility_call(elements, prefix, action, token, timeout, metadata, enforce_context)
        )

    def plan_resources(
        self,
        action: str,
        resource: str,
        *,
        token: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        explain: bool = False,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        enforce_context: str = "",
    ) -> PlanResult:
        """Ask which rows of ``resource`` (a template such as ``/api/orders/:id``) the principal
        may ``action``, as a plan for a query adapter (``authz_client.sqlalchemy``).

        ``attributes`` are the ones every row shares. A condition the server cannot plan raises
        :class:`AuthzError` with code ``FAILED_PRECONDITION`` naming the policy line.
        """
        return self._run(
            self._plan_call(
                action, resource, token, attributes, context, explain, timeout, metadata, enforce_context
            )
        )

    def principal(
        self,
        *,
        token: str | None = None,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Principal:
        """Return the verified principal behind the token, with hints about Auth0 set-up mistakes."""
        return self._run(self._principal_call(token, timeout, metadata))

    def close(self) -> None:
        """Close the channel; calls made afterwards fail."""
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncAuthzClient(_ClientBase):
    """asyncio client (``grpc.aio``) with the same methods and results as :class:`AuthzClient`.

    Create it inside the event loop that will use it: a ``grpc.aio`` channel belongs to one loop.
    """

    def __init__(
        self,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = 2.0,
        token: str | None = None,
    ) -> None:
        super().__init__(target, timeout=timeout, token=token)
        self._channel = (
            aio.insecure_channel(target) if credentials is None else aio.secure_channel(target, credentials)
        )
        self._stub: Any = authz_pb2_grpc.AuthorizationServiceStub(self._channel)

    async def _run(self, call: Call[T]) -> T:
        try:
            response = await getattr(self._stub, call.method)(
                call.request, timeout=call.timeout, metadata=call.metadata
            )
        except grpc.RpcError as exc:
            raise AuthzError.from_rpc_error(exc) from None
        return call.convert(response)

    async def check(
        self,
        resource: str,
        action: str,
        *,
        token: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        explain: bool = False,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        enforce_context: str = "",
    ) -> CheckResult:
        """Async :meth:`AuthzClient.check`."""
        return await self._run(
            self._check_call(
                resource, action, token, attributes, context, explain, timeout, metadata, enforce_context
            )
        )

    async def batch_check(
        self,
        items: Iterable[CheckItem | tuple[str, str]],
        *,
        token: str | None = None,
        explain: bool = False,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> BatchResult:
        """Async :meth:`AuthzClient.batch_check`."""
        return await self._run(self._batch_call(items, token, explain, timeout, metadata))

    async def visibility(
        self,
        *,
        elements: Iterable[str] | None = None,
        prefix: str | None = None,
        action: str = "view",
        token: str | None = None,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        enforce_context: str = "",
    ) -> Visibility:
        """Async :meth:`AuthzClient.visibility`."""
        return await self._run(
            self._visibility_call(elements, prefix, action, token, timeout, metadata, enforce_context)
        )

    async def plan_resources(
        self,
        action: str,
        resource: str,
        *,
        token: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        explain: bool = False,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        enforce_context: str = "",
    ) -> PlanResult:
        """Async :meth:`AuthzClient.plan_resources`."""
        return await self._run(
            self._plan_call(
                action, resource, token, attributes, context, explain, timeout, metadata, enforce_context
            )
        )

    async def principal(
        self,
        *,
        token: str | None = None,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Principal:
        """Async :meth:`AuthzClient.principal`."""
        return await self._run(self._principal_call(token, timeout, metadata))

    async def close(self) -> None:
        """Close the channel; calls made afterwards fail."""
        await self._channel.close(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
