"""Property: forward auth decides on the path the upstream is served, or refuses with 400.

For any request target a proxy may forward (`//`, `#`, `%xx`, tabs, absolute form ...), from
any of the three sources (X-Original-URI, X-Forwarded-Uri, Envoy's path below /forward-auth),
`/forward-auth` either answers 400, or its answer is the one a direct `Check` over gRPC gives
for the path nginx would serve. That path comes from `nginx_path` below, a reference written
from nginx's documented rules, independent of `authz.transports.forwardauth`.

`AUTHZ_FUZZ_EXAMPLES` raises the number of targets tried (100 by default, in `make test`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from authz.api.v1 import authz_pb2
from authz.decision import Reason
from authz.transports.connect import build_http_app
from tests.conftest import RunningServer
from tests.issuer import Issuer

EXAMPLES = int(os.environ.get("AUTHZ_FUZZ_EXAMPLES", "100"))
_ESCAPE = re.compile(rb"%(..)?", re.DOTALL)


def nginx_path(target: bytes) -> bytes | None:
    """The path nginx serves for a request target (its `$uri`), or None when nginx answers 400.

    nginx's rules (ngx_http_parse_request_line, then ngx_http_parse_complex_uri with
    `merge_slashes on`, the default; nginx >= 1.21.1):
    - a control character, a space or DEL in the target is a bad request line (400), and
      an origin-form target starts with '/' (`*` and authority form are refused for GET);
      bytes >= 0x80 are taken as they are;
    - the path ends at the first raw '?' (the query) or raw '#' (a fragment, dropped);
    - `%XX` is decoded; a malformed escape or `%00` is a 400. A decoded '%', '?' or '#' is a
      literal character; any other decoded byte acts as if sent raw: `%2F` separates
      segments and `%2E%2E` is a dot-dot segment;
    - runs of '/' are merged into one;
    - a '.' segment is dropped and '..' drops the segment before it; '..' above the root is
      a 400. A trailing '.' or '..' segment leaves the path ending in '/'.
    """
    if any(b < 0x21 or b == 0x7F for b in target) or not target.startswith(b"/"):
        return None
    raw = re.split(rb"[?#]", target, maxsplit=1)[0]
    decoded = bytearray()
    position = 0
    for escape in _ESCAPE.finditer(raw):
        decoded += raw[position : escape.start()]
        hex_digits = escape.group(1)
        if hex_digits is None or not re.fullmatch(rb"[0-9A-Fa-f]{2}", hex_digits):
            return None
        byte = int(hex_digits, 16)
        if byte == 0:
            return None
        decoded.append(byte)
        position = escape.end()
    decoded += raw[position:]
    segments = bytes(decoded).split(b"/")[1:]
    kept: list[bytes] = []
    for segment in segments:
        if segment == b"..":
            if not kept:
                return None
            kept.pop()
        elif segment not in (b"", b"."):
            kept.append(segment)
    trailing = segments[-1] in (b"", b".", b"..") and bool(kept)
    return b"/" + b"/".join(kept) + (b"/" if trailing else b"")


def test_the_reference_follows_nginx_on_known_targets():
    # A check of the reference itself, on targets whose nginx `$uri` is documented behaviour.
    assert nginx_path(b"//backoffice/api/orders/42") == b"/backoffice/api/orders/42"
    assert nginx_path(b"/api/orders/%2e%2e/admin/users?x") == b"/api/admin/users"
    assert nginx_path(b"/api/orders%2F..%2Fadmin") == b"/api/admin"
    assert nginx_path(b"/api/orders/42/.#top") == b"/api/orders/42/"
    assert nginx_path(b"/api/orders/4%32%3f") == b"/api/orders/42?"
    assert nginx_path(b"/api/../..") is None
    assert nginx_path(b"/api/orders/%zz") is None
    assert nginx_path(b"/api/orders/42%00") is None
    assert nginx_path(b"/api/orders/4\t2") is None
    assert nginx_path(b"http://backoffice/api/orders/42") is None


# Pieces of targets: policy-relevant segments, separators, and the characters and escapes
# that proxies and upstreams read differently.
SEGMENTS = [
    "api",
    "orders",
    "42",
    "backoffice",
    "admin",
    "users",
    "reports",
    "",
    ".",
    "..",
    "%2e%2e",
    "caf%C3%A9",
]
ATOMS = [
    *"/.%#?;\\\t :@",
    *("%2f", "%2F", "%2e", "%2E", "%5c", "%5C", "%00", "%25", "%3f", "%3F", "%23", "%3b"),
    *("%41", "%20", "%09", "%C3%A9", "%ff", "%zz", "%4", "é", "a", "42"),
]
SEPARATORS = ["/", "/", "/", "/", "//", "%2f", "\\", "\t/", "/ "]
HEADS = ["", "", "", "", "/", "//backoffice", "http://backoffice", "https://shop.example.com", "*"]
TAILS = ["", "", "", "?page=2", "?next=//x/../y", "#top", "?a#b", "%", "\t"]
# Paths the demo policies decide on, so that mutations of them land near a rule.
ROUTES = ["/api/orders/42", "/api/orders", "/api/admin/users", "/api/reports/q3", "/backoffice/api/orders/42"]


@st.composite
def mutated_route(draw: st.DrawFn) -> str:
    """A route with a few pieces inserted anywhere, and a head and tail around it."""
    target = draw(st.sampled_from(ROUTES))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        at = draw(st.integers(0, len(target)))
        target = target[:at] + draw(st.sampled_from(ATOMS + SEPARATORS + SEGMENTS)) + target[at:]
    # Mostly the bare route, so that about half the targets are in normal form.
    head = draw(st.one_of(st.just(""), st.sampled_from(HEADS)))
    return head + target + draw(st.one_of(st.just(""), st.sampled_from(TAILS)))


segment = st.one_of(st.sampled_from(SEGMENTS), st.lists(st.sampled_from(ATOMS), max_size=4).map("".join))
composed = st.builds(
    lambda head, parts, tail: head + "".join(sep + seg for sep, seg in parts) + tail,
    st.sampled_from(HEADS),
    st.lists(st.tuples(st.sampled_from(SEPARATORS), segment), max_size=6),
    st.sampled_from(TAILS),
)
targets = st.one_of(mutated_route(), composed)
SOURCES = ["X-Original-URI", "X-Forwarded-Uri", "Envoy"]


class Tokens(dict[str, str]):
    """Tokens by who holds them; a failure report names the holders, not the tokens."""

    def __repr__(self) -> str:
        return f"Tokens({', '.join(self)})"


@pytest.fixture(scope="module")
def tokens(issuer: Issuer) -> Tokens:
    return Tokens(
        reader=issuer.mint(sub="alice", permissions=["read:orders"]),
        admin=issuer.mint(sub="root", roles=["admin"]),
        none="",
    )


@pytest.fixture(scope="module")
def forward_auth(server: RunningServer) -> Iterator[Any]:
    """The HTTP listener's app with /forward-auth, on the session server's DecisionService."""
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield build_http_app(server.app.service, executor, forward_auth=True)


def ask(app: Any, source: str, method: str, target: str, token: str) -> tuple[int, dict[str, str]]:
    """One subrequest through the ASGI app, with the target's bytes exactly as a proxy sent them."""
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    path = b"/forward-auth"
    if source == "Envoy":
        # uvicorn splits the request target at its first '?' into raw_path and query_string.
        path += target.encode("latin-1").partition(b"?")[0]
    else:
        prefix = b"x-original" if source == "X-Original-URI" else b"x-forwarded"
        headers += [(prefix + b"-method", method.encode()), (prefix + b"-uri", target.encode("latin-1"))]
    scope = {
        "type": "http",
        "method": method,
        "path": path.decode("latin-1"),
        "raw_path": path,
        "query_string": b"",
        "headers": headers,
    }
    answer: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        else:
            answer["body"] = answer.get("body", b"") + message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return answer["status"], json.loads(answer["body"])


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    target=targets,
    source=st.sampled_from(SOURCES),
    method=st.sampled_from(["GET", "DELETE", "POST"]),
    who=st.sampled_from(["reader", "admin", "none"]),
)
@example(target="/api/orders/42", source="X-Original-URI", method="GET", who="reader")
@example(target="//backoffice/api/orders/42", source="X-Original-URI", method="GET", who="reader")
@example(target="//backoffice/api/orders/42", source="X-Forwarded-Uri", method="GET", who="reader")
@example(target="//x/api/orders/42", source="Envoy", method="GET", who="reader")
@example(target="/api/orders/%2e%2e/admin/users", source="Envoy", method="GET", who="admin")
@example(target="/api/orders/4%32?page=2", source="X-Forwarded-Uri", method="GET", who="reader")
@example(target="http://backoffice/api/orders/42", source="X-Original-URI", method="GET", who="reader")
@example(target="/api/orders/42\t", source="X-Original-URI", method="GET", who="reader")
@example(target="/api/orders/42#x", source="X-Forwarded-Uri", method="GET", who="reader")
def test_forward_auth_decides_on_the_path_nginx_serves_or_refuses(
    server, forward_auth, tokens, target, source, method, who
):
    if source == "Envoy" and not target.startswith("/"):
        # An appended path always starts with '/': `/forward-authhttp://...` is no endpoint.
        target = "/" + target
    status, body = ask(forward_auth, source, method, target, tokens[who])
    event(f"answered {status}")  # `--hypothesis-show-statistics`: how many targets were asked about
    if status == 400:
        assert body["error"] == "invalid_argument"
        return
    if source == "Envoy":
        # The HTTP server split the query off before authz saw it (and would refuse a tab there).
        target = target.partition("?")[0]
    served = nginx_path(target.encode("latin-1"))
    assert served is not None, f"{target!r} is asked about, while nginx refuses it"
    # With `proxy_pass` and no URI, nginx passes the target on as it came: an upstream that
    # only decodes it (no merging, no dot segments) must see the same path.
    assert unquote_to_bytes(target.partition("?")[0]) == served, target
    path = served.decode("utf-8")  # a path that is no UTF-8 cannot be asked about: it must 400
    reply = server.stub.Check(
        authz_pb2.CheckRequest(token=tokens[who], resource=path, action=method), timeout=10
    )
    reason = Reason(reply.reason)
    expected = 200 if reply.allowed else 401 if reason.is_token_problem else 403
    assert (status, body["reason"]) == (expected, authz_pb2.Reason.Name(reply.reason)), (target, path)
