"""Pure ASGI middleware that asks authz before every HTTP request reaches the app.

No framework dependency: it works under Starlette, FastAPI, Quart, Django (ASGI) or any
ASGI server. The decision is ``Check(action=<HTTP method>, resource=<path>)`` with the
request's ``authorization`` header as the token.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from ._refusals import Refusal, refusal_for, refusal_for_error
from .client import AsyncAuthzClient
from .errors import AuthzError
from .results import CheckResult

__all__ = ["ASGIApp", "AttributesHook", "AuthzMiddleware", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
AttributesHook = Callable[[Scope], "Awaitable[Mapping[str, Any] | None] | Mapping[str, Any] | None"]

log = logging.getLogger(__name__)


class AuthzMiddleware:
    """Answer 401 / 403 / 400 / 503 for requests authz does not allow; pass the rest on.

    ``client_or_target`` is an :class:`AsyncAuthzClient` (yours to configure and close) or a
    ``host:port`` for a plaintext client the middleware owns. Hooks, each given the ASGI scope:

    - ``attributes``: the resource's attributes (sync or async), e.g. an order's owner / org /
      status looked up by the id in the path; ``None`` sends none.
    - ``resource``: the resource string instead of the path (e.g. to strip a mount prefix).
    - ``skip``: true for requests that need no decision (health checks, CORS preflight ...).

    ``enforce_context`` is Casbin's enforce context every check is decided with (``"2"``: the
    model's r2, p2, e2, m2; ``""``: r, p, e, m); one the model lacks is a 400 on every request.
    Allowed requests reach the app with ``scope["authz"]`` set to the :class:`CheckResult`.
    WebSocket handshakes are checked too (action ``GET``) and refused with a close before accept,
    which servers turn into HTTP 403.
    """

    def __init__(
        self,
        app: ASGIApp,
        client_or_target: AsyncAuthzClient | str,
        *,
        attributes: AttributesHook | None = None,
        resource: Callable[[Scope], str] | None = None,
        skip: Callable[[Scope], bool] | None = None,
        enforce_context: str = "",
    ) -> None:
        if isinstance(client_or_target, str):
            self._target: str | None = client_or_target
            # Created on first use: a grpc.aio channel belongs to the event loop that made it,
            # and the loop usually does not exist yet when middleware is constructed.
            self._client: AsyncAuthzClient | None = None
        elif isinstance(client_or_target, AsyncAuthzClient):
            self._target = None
            self._client = client_or_target
        else:
            # A blocking client would stall the event loop on every request.
            raise TypeError("client_or_target must be an AsyncAuthzClient or a 'host:port' string")
        self.app = app
        self._attributes = attributes
        self._resource = resource
        self._skip = skip
        self._enforce_context = enforce_context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run as an ASGI application."""
        kind = scope.get("type")
        if kind == "lifespan":
            await self.app(scope, self._closing_on_shutdown(receive), send)
            return
        if kind not in ("http", "websocket") or (self._skip is not None and self._skip(scope)):
            await self.app(scope, receive, send)
            return

        try:
            result = await self._decide(scope)
        except AuthzError as exc:
            await _deny(scope, send, refusal_for_error(exc, log, _method(scope), str(scope.get("path"))))
            return
        refusal = refusal_for(result)
        if refusal is None:
            await self.app({**scope, "authz": result}, receive, send)
            return
        await _deny(scope, send, refusal)

    async def _decide(self, scope: Scope) -> CheckResult:
        attributes: Mapping[str, Any] | None = None
        if self._attributes is not None:
            produced = self._attributes(scope)
            attributes = await produced if inspect.isawaitable(produced) else produced
        path = self._resource(scope) if self._resource is not None else str(scope.get("path", ""))
        return await self._get_client().check(
            path,
            _method(scope),
            # "" rather than None: a request without a header must not borrow a default token
            # the client may carry for the service's own calls.
            token=_header(scope, b"authorization") or "",
            attributes=attributes,
            enforce_context=self._enforce_context,
        )

    def _get_client(self) -> AsyncAuthzClient:
        if self._client is None:
            assert self._target is not None
            self._client = AsyncAuthzClient(self._target)
        return self._client

    def _closing_on_shutdown(self, receive: Receive) -> Receive:
        # Only a client the middleware created is closed; a passed-in one belongs to the caller.
        async def wrapped() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.shutdown" and self._target is not None:
                await self.aclose()
            return message

        return wrapped

    async def aclose(self) -> None:
        """Close the client if the middleware created it (also done on ASGI lifespan shutdown)."""
        if self._target is not None and self._client is not None:
            client, self._client = self._client, None
            await client.close()


def _method(scope: Scope) -> str:
    # A WebSocket handshake is an HTTP GET; policies for it read like any other route.
    return str(scope.get("method", "GET")).upper()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            # ASGI header values are bytes; latin-1 maps every byte, so nothing is dropped.
            return bytes(value).decode("latin-1")
    return None


async def _deny(scope: Scope, send: Send, refusal: Refusal) -> None:
    if scope.get("type") == "websocket":
        # Closing before accept is how ASGI refuses a handshake (the server answers 403).
        reason = refusal.body.get("reason", refusal.body["error"])
        await send({"type": "websocket.close", "code": 1008, "reason": reason})
        return
    headers = [(name.encode(), value.encode()) for name, value in refusal.headers()]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": refusal.payload()})
