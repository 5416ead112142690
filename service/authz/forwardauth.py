"""Forward auth: a reverse proxy asks authz about each request before passing it on.

nginx (`auth_request`, ingress-nginx `auth-url`), Traefik (`ForwardAuth`) and Caddy
(`forward_auth`) send a subrequest carrying the original request's method and URI in
headers and its `Authorization` header as it came; Envoy's HTTP `ext_authz` (with
`path_prefix: /forward-auth`) sends the original method and appends the original path.
authz answers with the status the proxy acts on: 200 (pass it on; `X-Authz-Subject` and
`X-Authz-Decision-Id` can travel to the upstream), 401 for a token problem, 403 for any
other deny. The decision is `Check` with the path as the resource and the method as the
action, so the policies that protect the API through the middlewares protect it here too,
with no code in the upstream. A proxy sends no resource attributes: rules that need them
deny (ATTRIBUTE_MISSING).

The path is checked before it is asked about. The upstream may resolve `.` and `..`
segments, `//`, `;` parameters, a backslash or an encoded slash differently from the
policy's patterns (a route pattern could match `/api/orders/../admin` while the upstream
serves `/api/admin`), so such paths are refused with 400, which every proxy turns into a
refusal.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from starlette.types import Receive, Scope, Send

from authz import tracing
from authz.convert import error_status, measured, reason_name
from authz.decision import Reason
from authz.errors import InvalidArgument
from authz.handlers import CheckItem, CheckOutcome, DecisionService
from authz.metrics import RpcMetrics

PATH = "/forward-auth"
RPC = "ForwardAuth"
# Traefik and Caddy, then the nginx convention (`proxy_set_header X-Original-URI $request_uri`),
# then ingress-nginx, which sends the whole URL.
METHOD_HEADERS = (b"x-forwarded-method", b"x-original-method")
URI_HEADERS = (b"x-forwarded-uri", b"x-original-uri", b"x-original-url")
_HTTP_STATUS = {"INVALID_ARGUMENT": 400, "UNAVAILABLE": 503}


@dataclass(frozen=True)
class ForwardedRequest:
    """The original request as the proxy described it."""

    method: str
    path: str


def _values(headers: Sequence[tuple[bytes, bytes]], names: tuple[bytes, ...]) -> list[str]:
    return [value.decode("latin-1") for name, value in headers if name in names]


def _one(values: list[str], what: str) -> str:
    # A proxy sets its own header, but passes on the client's others: nginx forwards a
    # client's X-Forwarded-Uri beside the X-Original-URI it sets. Only an answer that
    # every such header agrees on is asked about; a spoofed one that differs refuses.
    if len(set(values)) > 1:
        # The values stay out of the message: one of them may be a token.
        raise InvalidArgument(f"the forwarded {what} headers disagree")
    return values[0] if values else ""


def forwarded_request(
    headers: Sequence[tuple[bytes, bytes]], appended: tuple[str, str] | None = None
) -> ForwardedRequest:
    """The original method and path from the proxy's headers; InvalidArgument when unusable.

    `headers` are the raw (lower-case name, value) pairs, repeats included. `appended` is the
    subrequest's own method and the raw path the proxy appended to PATH (Envoy's HTTP
    `ext_authz` with `path_prefix`), one more description that must agree with the others.
    """
    methods, uris = _values(headers, METHOD_HEADERS), _values(headers, URI_HEADERS)
    if appended is not None:
        methods.append(appended[0])
        uris.append(appended[1])
    method = _one([m.upper() for m in methods], "method")
    if not method or not uris:
        raise InvalidArgument(
            "forward auth needs the original method and URI: X-Forwarded-Method and "
            "X-Forwarded-Uri (Traefik, Caddy) or X-Original-Method and X-Original-URI (nginx)"
        )
    raw = _one([urlsplit(uri).path for uri in uris], "path")
    if "%2f" in raw.lower() or "%5c" in raw.lower():
        raise InvalidArgument("the path has an encoded slash or backslash")
    path = unquote(raw)
    segments = path.split("/")
    if (
        not path.startswith("/")
        or not path.isprintable()
        or any(s in (".", "..") for s in segments)
        or "" in segments[1:-1]
        # Servlet containers drop `;params` from a segment (`/..;/` is `/../`), and some
        # servers read a backslash as a slash.
        or ";" in path
        or "\\" in path
    ):
        raise InvalidArgument(
            "the path is not in normal form (dot segments, '//', ';', a backslash or control characters)"
        )
    return ForwardedRequest(method, path)


class ForwardAuthApp:
    """The ASGI app of PATH on the HTTP listener; decisions run on `executor`."""

    def __init__(self, service: DecisionService, executor: Executor) -> None:
        self.service = service
        self.executor = executor
        self.rpcs: dict[str, RpcMetrics] = service.metrics.track((RPC,))

    @measured(RPC)
    def decide(self, request: ForwardedRequest, authorization: str | None) -> CheckOutcome:
        """Check the forwarded request with the forwarded token."""
        outcome = self.service.check(authorization or "", CheckItem(request.path, request.method))
        self.rpcs[RPC].decided(outcome.decision.reason)
        return outcome

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one proxy subrequest."""
        if scope["type"] != "http":
            return
        headers = list(scope.get("headers", ()))
        # `/forward-auth/api/orders/42`: the original path, appended by the proxy.
        raw_path = bytes(scope.get("raw_path") or scope["path"].encode())
        below = raw_path[len(PATH) :].decode("latin-1")
        appended = (str(scope["method"]), below) if below else None
        try:
            request = forwarded_request(headers, appended)
            token = _one(_values(headers, (b"authorization",)), "authorization")
            decide = tracing.continued(self.decide, lambda: headers, "forward-auth")
            outcome = await asyncio.get_running_loop().run_in_executor(self.executor, decide, request, token)
        except Exception as exc:
            # Fail closed: a proxy treats anything but 2xx, 401 and 403 as a refusal.
            status = error_status(exc, RPC)
            body = {"error": status.code.lower(), "message": status.message}
            await _answer(send, _HTTP_STATUS.get(status.code, 500), body)
            return
        decision = outcome.decision
        extra = [(b"x-authz-decision-id", outcome.decision_id.encode())]
        body = {"reason": reason_name(decision.reason), "decision_id": outcome.decision_id}
        if decision.allowed:
            extra.append((b"x-authz-subject", outcome.subject.encode()))
            await _answer(send, 200, {"allowed": True, **body}, extra)
        elif decision.reason.is_token_problem:
            missing = decision.reason is Reason.TOKEN_MISSING
            extra.append((b"www-authenticate", b"Bearer" if missing else b'Bearer error="invalid_token"'))
            await _answer(send, 401, {"error": "unauthenticated", **body}, extra)
        else:
            await _answer(send, 403, {"error": "forbidden", **body}, extra)


async def _answer(
    send: Send, status: int, body: Mapping[str, object], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": payload})
