"""WSGI middleware that asks authz before every HTTP request reaches the app.

The WSGI twin of :mod:`authz_client.asgi`, for Flask, Django (WSGI), Pyramid, Bottle or any
WSGI server: the decision is ``Check(action=<HTTP method>, resource=<path>)`` with the
request's ``Authorization`` header as the token, asked with the blocking client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from types import TracebackType
from typing import Any, Protocol

from ._refusals import Refusal, refusal_for, refusal_for_error
from .client import AuthzClient
from .errors import AuthzError
from .results import CheckResult

__all__ = ["AuthzMiddleware", "Environ", "StartResponse", "WSGIApp"]

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


class StartResponse(Protocol):
    """PEP 3333's `start_response` callable."""

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = ..., /
    ) -> Callable[[bytes], object]: ...


WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

log = logging.getLogger(__name__)


class AuthzMiddleware:
    """Answer 401 / 403 / 400 / 503 for requests authz does not allow; pass the rest on.

    ``client_or_target`` is an :class:`AuthzClient` (yours to configure and close) or a
    ``host:port`` for a plaintext client the middleware owns (``close()`` it on shutdown).
    Hooks, each given the WSGI environ:

    - ``attributes``: the resource's attributes, e.g. an order's owner / org / status looked
      up by the id in the path; ``None`` sends none.
    - ``resource``: the resource string instead of the path (``SCRIPT_NAME`` + ``PATH_INFO``).
    - ``skip``: true for requests that need no decision (health checks, CORS preflight ...).

    ``enforce_context`` is Casbin's enforce context every check is decided with (``"2"``: the
    model's r2, p2, e2, m2; ``""``: r, p, e, m); one the model lacks is a 400 on every request.
    Allowed requests reach the app with ``environ["authz"]`` set to the :class:`CheckResult`.
    """

    def __init__(
        self,
        app: WSGIApp,
        client_or_target: AuthzClient | str,
        *,
        attributes: Callable[[Environ], Mapping[str, Any] | None] | None = None,
        resource: Callable[[Environ], str] | None = None,
        skip: Callable[[Environ], bool] | None = None,
        enforce_context: str = "",
    ) -> None:
        if isinstance(client_or_target, str):
            self._owned: AuthzClient | None = AuthzClient(client_or_target)
            self._client = self._owned
        elif isinstance(client_or_target, AuthzClient):
            self._owned = None
            self._client = client_or_target
        else:
            raise TypeError("client_or_target must be an AuthzClient or a 'host:port' string")
        self.app = app
        self._attributes = attributes
        self._resource = resource
        self._skip = skip
        self._enforce_context = enforce_context

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """Run as a WSGI application."""
        if self._skip is not None and self._skip(environ):
            return self.app(environ, start_response)
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = self._resource(environ) if self._resource is not None else request_path(environ)
        try:
            result = self._decide(environ, method, path)
        except AuthzError as exc:
            return _refuse(start_response, refusal_for_error(exc, log, method, path))
        refusal = refusal_for(result)
        if refusal is not None:
            return _refuse(start_response, refusal)
        environ["authz"] = result
        return self.app(environ, start_response)

    def _decide(self, environ: Environ, method: str, path: str) -> CheckResult:
        attributes = self._attributes(environ) if self._attributes is not None else None
        return self._client.check(
            path,
            method,
            # "" rather than None: a request without a header must not borrow a default token
            # the client may carry for the service's own calls.
            token=str(environ.get("HTTP_AUTHORIZATION", "")),
            attributes=attributes,
            enforce_context=self._enforce_context,
        )

    def close(self) -> None:
        """Close the client if the middleware created it."""
        if self._owned is not None:
            self._owned.close()


def _refuse(start_response: StartResponse, refusal: Refusal) -> list[bytes]:
    start_response(f"{refusal.status} {HTTPStatus(refusal.status).phrase}", refusal.headers())
    return [refusal.payload()]


def request_path(environ: Environ) -> str:
    """The request's path as the client sent it: the mount point and the path below it.

    PEP 3333 hands paths over as latin-1 text of the raw bytes; they are read back as UTF-8,
    as the ASGI middleware receives them.
    """
    raw = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    return raw.encode("latin-1").decode("utf-8", "replace") or "/"
