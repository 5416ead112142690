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

The target is checked before it is asked about (`request_path`). A request target is a
path (origin form), never parsed as a URL: `//backoffice/api/orders/42` would be a URL with
host `backoffice` and path `/api/orders/42`, while nginx serves `/backoffice/api/orders/42`.
The upstream may resolve `.` and `..` segments, `//`, `;` parameters, a backslash or an
encoded slash or dot differently from the policy's patterns (a route pattern could match
`/api/orders/../admin` while the upstream serves `/api/admin`), so a target that is not in
normal form is refused with 400, which every proxy turns into a refusal. Only a target that
every common normaliser leaves as it is (nginx's merge_slashes and dot-segment rules,
RFC 3986 remove_dot_segments, Unicode compatibility folding) is asked about.
"""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from starlette.types import Receive, Scope, Send

from authz import tracing
from authz.decision import Reason, reason_name
from authz.errors import InvalidArgument
from authz.handlers import CheckItem, CheckOutcome, DecisionService
from authz.metrics import RpcMetrics
from authz.transports.convert import error_status, measured

PATH = "/forward-auth"
RPC = "ForwardAuth"
# Traefik and Caddy, then the nginx convention (`proxy_set_header X-Original-URI $request_uri`),
# then ingress-nginx, which sends the whole URL.
METHOD_HEADERS = (b"x-forwarded-method", b"x-original-method")
URL_HEADER = b"x-original-url"
URI_HEADERS = (b"x-forwarded-uri", b"x-original-uri", URL_HEADER)
# ingress-nginx's X-Original-URL is `$scheme://$http_host$request_uri`: a scheme and a plain
# host[:port] (no userinfo), then the origin-form target it was asked for.
_URL_PREFIX = re.compile(
    r"https?://[A-Za-z0-9._\-]+(?::[0-9]+)?(?=/)|https?://\[[0-9A-Fa-f:.]+\](?::[0-9]+)?(?=/)"
)
# Escapes whose decoding would make a separator or a dot segment the upstream may or may not
# see (an encoded `/`, `.` or `\`), or end the string early (NUL).
_STRUCTURAL_ESCAPE = re.compile(r"%(?:2f|2e|5c|00)", re.IGNORECASE)
_MALFORMED_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# What a path's structure is made of: a Unicode character whose compatibility form holds one
# of these is refused, as its ASCII spelling would be.
_STRUCTURAL = frozenset("/.\\%;?#")
_HTTP_STATUS = {"INVALID_ARGUMENT": 400, "UNAVAILABLE": 503}
# An HTTP field value (RFC 9110): visible bytes, with spaces and tabs only between them. A
# subject with a control character (CR, LF, NUL) cannot travel in X-Authz-Subject.
_FIELD_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[\t \x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")


@dataclass(frozen=True)
class ForwardedRequest:
    """The original request as the proxy described it."""

    method: str
    path: str


def _values(headers: Sequence[tuple[bytes, bytes]], names: tuple[bytes, ...]) -> list[str]:
    return [value.decode("latin-1") for name, value in headers if name in names]


def _refuse(why: str) -> InvalidArgument:
    # The target stays out of the message: a client chose it, and it can be long.
    return InvalidArgument(f"the request target is not a path in normal form: {why}")


def request_path(target: str, *, url: bool = False) -> str:
    """The decoded path of an origin-form request target (`/path?query`); InvalidArgument otherwise.

    With `url`, `target` is an absolute URL (`https://host/path?query`, ingress-nginx's
    X-Original-URL) whose scheme and host are dropped first. The target must be in normal
    form, so that every proxy and upstream resolves it to the path returned here: printable
    ASCII only (a proxy sends anything else percent-encoded), no fragment, a single leading
    `/`, no `//`, `.` or `..` segment, `;`, backslash, malformed escape, or escape of `/`,
    `.`, `\\`, NUL, `%`, `?`, `#`, `;` or a control character, and valid UTF-8 once decoded
    with no character whose Unicode compatibility form (NFKC) holds one of those.
    """
    if url:
        prefix = _URL_PREFIX.match(target)
        if prefix is None:
            raise _refuse("X-Original-URL is not an http(s) URL with a plain host and a path")
        target = target[prefix.end() :]
    if not target:
        raise _refuse("it is empty")
    if not all("!" <= c <= "~" for c in target):
        raise _refuse("whitespace, a control character or a raw non-ASCII byte")
    if "#" in target:
        raise _refuse("a fragment ('#')")
    raw = target.partition("?")[0]
    if not raw.startswith("/"):
        # `http://h/p` (absolute form), `h:443` (authority form), `*` or a relative path.
        raise _refuse("it does not start with '/' (a URL, an authority, '*' or a relative path)")
    if "//" in raw:
        raise _refuse("'//' (read as a URL's authority by some, merged into one '/' by others)")
    if ";" in raw or "\\" in raw:
        # Servlet containers drop `;params` from a segment (`/..;/` is `/../`), and some
        # servers read a backslash as a slash.
        raise _refuse("a ';' or a backslash")
    if _STRUCTURAL_ESCAPE.search(raw) or _MALFORMED_ESCAPE.search(raw):
        raise _refuse("an encoded '/', '.', backslash or NUL, or a malformed escape")
    try:
        path = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse("escapes that do not decode as UTF-8") from None
    if not path.isprintable() or any(c in path for c in "%?#;"):
        # A decoded `%` would be decoded again by some upstreams (`%252e` into `.`), and a
        # decoded `;` read as a path parameter.
        raise _refuse("an encoded control character, '%', '?', '#' or ';'")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise _refuse("a '.' or '..' segment")
    if not path.isascii() and any(_folds_to_structure(c) for c in path if not c.isascii()):
        # An upstream that folds Unicode compatibility forms (NFKC, or Windows' best-fit
        # ANSI mapping) reads U+FF0F..U+FF0F (fullwidth solidus) as `/../`, segments the
        # policy never saw.
        raise _refuse("a character that Unicode folding turns into '/', '.', '\\', '%', ';', '?' or '#'")
    return path


def _folds_to_structure(char: str) -> bool:
    return any(c in _STRUCTURAL for c in unicodedata.normalize("NFKC", char))


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
    methods = _values(headers, METHOD_HEADERS)
    # (target, whether it is a whole URL): X-Original-URL is one, the others are paths.
    uris = [(value.decode("latin-1"), name == URL_HEADER) for name, value in headers if name in URI_HEADERS]
    if appended is not None:
        methods.append(appended[0])
        uris.append((appended[1], False))
    method = _one([m.upper() for m in methods], "method")
    if not method or not uris:
        raise InvalidArgument(
            "forward auth needs the original method and URI: X-Forwarded-Method and "
            "X-Forwarded-Uri (Traefik, Caddy) or X-Original-Method and X-Original-URI (nginx)"
        )
    path = _one([request_path(uri, url=url) for uri, url in uris], "path")
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
        try:
            request = forwarded_request(headers, _appended(scope))
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
            subject = outcome.subject.encode()
            if not _FIELD_VALUE.fullmatch(subject):
                # The issuer signed it, but h11 would refuse the header and drop the connection
                # (a traceback, and no answer). Fail closed, typed; the subject is not echoed.
                message = (
                    "the token's subject cannot be an X-Authz-Subject value "
                    "(a control character, or a space at an end)"
                )
                await _answer(
                    send,
                    500,
                    {"error": "internal", "message": message, "decision_id": outcome.decision_id},
                    extra,
                )
                return
            extra.append((b"x-authz-subject", subject))
            await _answer(send, 200, {"allowed": True, **body}, extra)
        elif decision.reason.is_token_problem:
            missing = decision.reason is Reason.TOKEN_MISSING
            extra.append((b"www-authenticate", b"Bearer" if missing else b'Bearer error="invalid_token"'))
            await _answer(send, 401, {"error": "unauthenticated", **body}, extra)
        else:
            await _answer(send, 403, {"error": "forbidden", **body}, extra)


def _appended(scope: Scope) -> tuple[str, str] | None:
    """The subrequest's method and the raw path below PATH (`/forward-auth/api/orders/42`), if any."""
    raw_path = bytes(scope.get("raw_path") or scope["path"].encode())
    if not raw_path.startswith(PATH.encode()):
        # The router matched another spelling of PATH (`//forward-auth`, `/forward%2Dauth`):
        # what follows it is not a path a proxy appended.
        raise InvalidArgument(f"the subrequest's path does not start with {PATH}")
    below = raw_path[len(PATH) :].decode("latin-1")
    return (str(scope["method"]), below) if below else None


async def _answer(
    send: Send, status: int, body: Mapping[str, object], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": payload})
