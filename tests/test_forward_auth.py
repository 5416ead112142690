"""Forward auth (`/forward-auth`): the real server asked with a proxy's headers, and a real nginx
with `auth_request` in front of a real upstream."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from authz.errors import InvalidArgument
from authz.transports.forwardauth import ForwardedRequest, forwarded_request
from tests.conftest import RunningServer, settings_for
from tests.serveproc import free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def ask(base: str, headers: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any]]:
    """GET /forward-auth as a proxy sends it: status, headers (lower-case) and JSON body."""
    request = urllib.request.Request(f"{base}/forward-auth", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, got, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, got, body = error.code, error.headers, error.read()
    return status, {k.lower(): v for k, v in got.items()}, json.loads(body) if body else {}


def traefik(method: str, uri: str, token: str | None = None) -> dict[str, str]:
    headers = {"X-Forwarded-Method": method, "X-Forwarded-Uri": uri}
    return headers | ({"Authorization": f"Bearer {token}"} if token else {})


@pytest.fixture
def proxied(make_server: Any, issuer: Any) -> RunningServer:
    server: RunningServer = make_server(
        settings_for(issuer, http_listen="127.0.0.1:0", forward_auth=True, metrics_listen="127.0.0.1:0")
    )
    return server


# --- the original request from the proxy's headers -----------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {b"x-forwarded-method": b"get", b"x-forwarded-uri": b"/api/orders/42?x=1"},
            ("GET", "/api/orders/42"),
        ),
        ({b"x-original-method": b"DELETE", b"x-original-uri": b"/api/orders/7"}, ("DELETE", "/api/orders/7")),
        (
            {b"x-original-method": b"GET", b"x-original-url": b"https://shop.example.com/api/reports/q3?x"},
            ("GET", "/api/reports/q3"),
        ),
        (
            {b"x-original-method": b"GET", b"x-original-url": b"http://[::1]:8443/api/orders/a%20b"},
            ("GET", "/api/orders/a b"),
        ),
        (
            {b"x-forwarded-method": b"GET", b"x-forwarded-uri": b"/api/orders/caf%C3%A9"},
            ("GET", "/api/orders/café"),
        ),
    ],
)
def test_the_original_method_and_path_come_from_the_proxys_headers(headers, expected):
    assert forwarded_request(list(headers.items())) == ForwardedRequest(*expected)


# Targets that are not a path in normal form. Each is refused from every source.
NOT_NORMAL = {
    # `//` would be a URL's authority (the bug: `//backoffice/api/orders/42` was asked about as
    # `/api/orders/42` while nginx serves `/backoffice/api/orders/42`), or merged by the upstream.
    "authority-like //": "//backoffice/api/orders/42",
    "authority-like // with a query": "//backoffice/api/orders/42?page=2",
    "// inside": "/api//admin/users",
    "// at the end": "/api/orders/42//",
    "absolute form": "http://backoffice/api/orders/42",
    "absolute form https": "https://shop.example.com/api/orders/42",
    "authority form": "backoffice:443",
    "asterisk form": "*",
    "relative": "api/orders/42",
    "fragment": "/api/orders/42#top",
    "fragment after a query": "/api/orders/42?a=1#top",
    "dot-dot segment": "/api/orders/../admin/users",
    "trailing dot-dot": "/api/orders/42/..",
    "dot segment": "/api/orders/./42",
    "trailing dot": "/api/orders/42/.",
    "encoded dot-dot": "/api/orders/%2e%2e/admin/users",
    "encoded dot upper case": "/api/orders/%2E%2E/admin/users",
    "encoded dot in a name": "/api/orders/42%2ejson",
    "encoded slash": "/api/orders%2F..%2Fadmin",
    "encoded slash lower case": "/api/orders%2f42",
    "encoded backslash": "/api/orders/..%5cadmin",
    "encoded backslash upper case": "/api/orders/..%5Cadmin",
    "encoded NUL": "/api/orders/42%00.json",
    "encoded line feed": "/api/orders/42%0a",
    "encoded DEL": "/api/orders/42%7F",
    "encoded percent (double encoding)": "/api/orders/%252e%252e/admin",
    "encoded question mark": "/api/orders/42%3fx",
    "encoded hash": "/api/orders/42%23x",
    "encoded semicolon": "/api/orders/42%3bx",
    "malformed escape": "/api/orders/%zz",
    "truncated escape": "/api/orders/42%4",
    "lone percent": "/api/orders/42%",
    "escapes that are not UTF-8": "/api/orders/%ff",
    "tab": "/api/orders/42\tx",
    "leading tab": "\t/api/orders/42",
    "space": "/api/orders/4 2",
    "line feed": "/api/orders/42\n",
    "DEL": "/api/orders/42\x7f",
    "raw non-ASCII": "/api/orders/caf\xe9",
    # Compatibility forms of '/', '.', '\\', '%': NFKC and Windows' best-fit mapping make them ASCII.
    "fullwidth solidus and dots": "/api/orders/1%EF%BC%8F..%EF%BC%8F..%EF%BC%8Fadmin",
    "two dot leader segment": "/api/orders/%E2%80%A5/admin",
    "fullwidth reverse solidus": "/api/orders/1%EF%BC%BC..%EF%BC%BCadmin",
    "fullwidth percent": "/api/orders/x%EF%BC%85252e",
    "servlet path parameter": "/api/orders/..;/admin/users",
    "session id": "/api/orders/1;jsessionid=x",
    "backslashes": "/api/orders\\..\\admin",
    "empty": "",
}


def from_original_uri(target: str) -> ForwardedRequest:
    return forwarded_request([(b"x-original-method", b"GET"), (b"x-original-uri", target.encode("latin-1"))])


def from_forwarded_uri(target: str) -> ForwardedRequest:
    return forwarded_request(
        [(b"x-forwarded-method", b"GET"), (b"x-forwarded-uri", target.encode("latin-1"))]
    )


def from_envoy_path(target: str) -> ForwardedRequest:
    # What the ASGI app passes on from `GET /forward-auth<target>`.
    return forwarded_request([], ("GET", target))


SOURCES = {
    "X-Original-URI": from_original_uri,
    "X-Forwarded-Uri": from_forwarded_uri,
    "Envoy": from_envoy_path,
}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("target", NOT_NORMAL.values(), ids=NOT_NORMAL.keys())
def test_a_target_not_in_normal_form_is_refused_from_every_source(source, target):
    with pytest.raises(InvalidArgument):
        SOURCES[source](target)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("/api/orders/42", "/api/orders/42"),
        ("/api/orders/42?page=2&next=//x/../y#", None),
        ("/api/orders/42/", "/api/orders/42/"),
        ("/api/orders/caf%C3%A9", "/api/orders/café"),
        ("/api/orders/a%20b", "/api/orders/a b"),
        ("/api/orders/%41%7e", "/api/orders/A~"),
        ("/", "/"),
    ],
)
def test_a_target_in_normal_form_is_its_decoded_path(source, target, path):
    if path is None:  # a fragment is refused even inside the query
        with pytest.raises(InvalidArgument):
            SOURCES[source](target)
        return
    assert SOURCES[source](target) == ForwardedRequest("GET", path)


@pytest.mark.parametrize(
    "url",
    [
        "/api/orders/42",  # ingress-nginx sends the whole URL
        "https://shop.example.com",
        "https://user@shop.example.com/api/orders/42",
        "https://shop.example.com//backoffice/api/orders/42",
        "https://shop.example.com/api/orders/%2e%2e/admin",
        "ftp://shop.example.com/api/orders/42",
        "https:///api/orders/42",
    ],
)
def test_x_original_url_is_an_http_url_whose_target_is_in_normal_form(url):
    with pytest.raises(InvalidArgument):
        forwarded_request([(b"x-original-method", b"GET"), (b"x-original-url", url.encode())])


def test_without_the_original_method_or_uri_nothing_is_asked():
    with pytest.raises(InvalidArgument, match="X-Forwarded-Method"):
        forwarded_request([(b"x-forwarded-uri", b"/api/orders/1")])


@pytest.mark.parametrize(
    "headers",
    [
        # A client's own X-Forwarded-* passed on by nginx beside the X-Original-* it sets.
        [
            (b"x-forwarded-method", b"GET"),
            (b"x-forwarded-uri", b"/api/orders/1"),
            (b"x-original-method", b"DELETE"),
            (b"x-original-uri", b"/api/admin/users"),
        ],
        [(b"x-original-method", b"GET"), (b"x-original-uri", b"/a"), (b"x-original-url", b"https://h/b")],
        [(b"x-forwarded-method", b"GET"), (b"x-forwarded-uri", b"/a"), (b"x-forwarded-uri", b"/b")],
    ],
)
def test_forwarded_headers_that_disagree_are_refused(headers):
    with pytest.raises(InvalidArgument, match="disagree"):
        forwarded_request(headers)


def test_forwarded_headers_that_agree_are_one_request():
    headers = [
        (b"x-forwarded-method", b"get"),
        (b"x-original-method", b"GET"),
        (b"x-forwarded-uri", b"/api/orders/1?a=1"),
        (b"x-original-url", b"https://shop.example.com/api/orders/1"),
    ]
    assert forwarded_request(headers) == ForwardedRequest("GET", "/api/orders/1")


# --- the endpoint on a real server -----------------------------------------------------------


def test_allow_passes_the_subject_and_decision_id(proxied, issuer):
    token = issuer.mint(sub="alice", permissions=["read:orders"])
    status, headers, body = ask(proxied.http_url, traefik("GET", "/api/orders/42?page=2", token))
    assert status == 200
    assert headers["x-authz-subject"] == "alice"
    assert headers["x-authz-decision-id"] == body["decision_id"]
    assert body["reason"] == "REASON_ALLOWED"
    with urllib.request.urlopen(f"http://127.0.0.1:{proxied.app.metrics_port}/metrics", timeout=5) as scrape:
        metrics = scrape.read().decode()
    assert 'authz_decisions_total{outcome="ALLOWED",rpc="ForwardAuth"} 1.0' in metrics
    assert 'authz_rpc_duration_seconds_count{rpc="ForwardAuth"} 1.0' in metrics


def test_a_subject_no_header_can_carry_is_a_typed_refusal_not_a_dropped_connection(proxied, issuer, caplog):
    # An issuer may sign any `sub`; h11 refused "\r\n" or NUL in X-Authz-Subject, and the
    # proxy got a dropped connection (and the log a traceback) for an allowed request.
    for subject in ("evil\r\nx-authz-subject: admin", "a\x00b", " padded"):
        token = issuer.mint(sub=subject, permissions=["read:orders"])
        status, headers, body = ask(proxied.http_url, traefik("GET", "/api/orders/42", token))
        assert status == 500 and body["error"] == "internal", (subject, body)
        assert "x-authz-subject" not in headers and subject not in json.dumps(body)
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    # Beyond ASCII, a subject is sent as its UTF-8 bytes.
    token = issuer.mint(sub="café|42", permissions=["read:orders"])
    status, headers, _ = ask(proxied.http_url, traefik("GET", "/api/orders/42", token))
    assert status == 200 and headers["x-authz-subject"].encode("latin-1").decode() == "café|42"


def test_token_problems_are_401_and_other_denies_403(proxied, issuer):
    reader = issuer.mint(permissions=["read:orders"])
    status, headers, body = ask(proxied.http_url, traefik("GET", "/api/orders/42"))
    assert (status, headers["www-authenticate"], body["reason"]) == (401, "Bearer", "REASON_TOKEN_MISSING")
    expired = issuer.mint(permissions=["read:orders"], exp_in=-3600)
    status, headers, body = ask(proxied.http_url, traefik("GET", "/api/orders/42", expired))
    assert (status, body["reason"]) == (401, "REASON_TOKEN_EXPIRED")
    assert headers["www-authenticate"] == 'Bearer error="invalid_token"'

    status, headers, body = ask(proxied.http_url, traefik("POST", "/api/orders", reader))
    assert (status, body["reason"]) == (403, "REASON_NO_MATCHING_RULE")
    assert "x-authz-subject" not in headers
    # A proxy sends no resource attributes: a rule that needs them denies.
    deleter = issuer.mint(permissions=["delete:orders"])
    status, _, body = ask(proxied.http_url, traefik("DELETE", "/api/orders/7", deleter))
    assert (status, body["reason"]) == (403, "REASON_ATTRIBUTE_MISSING")


def test_a_malformed_forward_is_a_400_and_decides_nothing(proxied, issuer):
    admin = issuer.mint(roles=["admin"])
    status, _, body = ask(proxied.http_url, traefik("GET", "/api/orders/../admin/users", admin))
    assert (status, body["error"]) == (400, "invalid_argument")
    status, _, body = ask(proxied.http_url, {"Authorization": f"Bearer {admin}"})
    assert status == 400
    assert "X-Original-URI" in body["message"]


def raw_ask(base: str, target: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """`GET <target>` over a raw socket, so any request target and header value reach the server as given."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    lines = [f"GET {target} HTTP/1.1", "Host: authz", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body) if body.startswith(b"{") else {}


OVER_HTTP = [
    "//backoffice/api/orders/42",
    "//backoffice/api/orders/42?page=2",
    "/api//orders/42",
    "/api/orders/42#top",
    "/api/orders%2f42",
    "/api/orders/%2E%2E/admin/users",
    "/api/orders/./42",
    "/api/orders/42%00",
    "/api/orders/..;/admin/users",
    "/api/orders/1%EF%BC%8F..%EF%BC%8F..%EF%BC%8Fadmin",
]


@pytest.mark.parametrize("target", OVER_HTTP)
def test_the_endpoint_refuses_a_target_not_in_normal_form_from_every_source(proxied, issuer, target):
    reader = issuer.mint(sub="alice", permissions=["read:orders"])
    bearer = {"Authorization": f"Bearer {reader}"}
    # The same token is allowed the path in normal form: the refusal is the target's.
    assert raw_ask(proxied.http_url, "/forward-auth/api/orders/42", bearer)[0] == 200
    for method_header, uri_header in (
        ("X-Original-Method", "X-Original-URI"),
        ("X-Forwarded-Method", "X-Forwarded-Uri"),
    ):
        headers = {method_header: "GET", uri_header: target, **bearer}
        status, body = raw_ask(proxied.http_url, "/forward-auth", headers)
        assert (status, body.get("error")) == (400, "invalid_argument"), uri_header
    status, body = raw_ask(proxied.http_url, f"/forward-auth{target}", bearer)
    assert (status, body.get("error")) == (400, "invalid_argument"), "Envoy"


@pytest.mark.parametrize(
    "target",
    ["http://backoffice/api/orders/42", "backoffice:443", "*", "/api/orders/4 2", "/api/orders/4\t2"],
)
def test_the_endpoint_refuses_a_target_that_is_no_path(proxied, issuer, target):
    reader = issuer.mint(sub="alice", permissions=["read:orders"])
    for method_header, uri_header in (
        ("X-Original-Method", "X-Original-URI"),
        ("X-Forwarded-Method", "X-Forwarded-Uri"),
    ):
        headers = {method_header: "GET", uri_header: target, "Authorization": f"Bearer {reader}"}
        status, body = raw_ask(proxied.http_url, "/forward-auth", headers)
        assert (status, body.get("error")) == (400, "invalid_argument"), uri_header


def test_only_the_proxys_spelling_of_the_endpoint_takes_an_appended_path(proxied, issuer):
    reader = issuer.mint(sub="alice", permissions=["read:orders"])
    bearer = {"Authorization": f"Bearer {reader}"}
    # `//forward-auth/...` reaches the endpoint too, but `h/api/...` is no path a proxy appended.
    status, body = raw_ask(proxied.http_url, "//forward-auth/api/orders/42", bearer)
    assert (status, body.get("error")) == (400, "invalid_argument")


def envoy(base: str, method: str, path: str, token: str | None = None, **headers: str) -> tuple[int, Any]:
    """A check as Envoy's HTTP ext_authz sends it: the original method, the path appended."""
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{base}/forward-auth{path}", method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_an_appended_path_is_the_original_request(proxied, issuer):
    reader = issuer.mint(sub="alice", permissions=["read:orders"])
    assert envoy(proxied.http_url, "GET", "/api/orders/42?page=2", reader)[0] == 200
    status, body = envoy(proxied.http_url, "POST", "/api/orders", reader)
    assert (status, body["reason"]) == (403, "REASON_NO_MATCHING_RULE")
    deleter = issuer.mint(permissions=["delete:orders"])
    status, body = envoy(proxied.http_url, "DELETE", "/api/orders/7", deleter)
    assert (status, body["reason"]) == (403, "REASON_ATTRIBUTE_MISSING")
    # The raw path is checked: an encoded dot segment is refused, not decoded into a match.
    assert envoy(proxied.http_url, "GET", "/api/orders/%2e%2e/admin/users", reader)[0] == 400
    # A header that describes another request than the appended path refuses.
    status, body = envoy(
        proxied.http_url, "GET", "/api/admin/users", reader, **{"X-Forwarded-Uri": "/api/orders/1"}
    )
    assert (status, body["message"]) == (400, "the forwarded path headers disagree")


def test_two_different_tokens_refuse_without_echoing_either(proxied, issuer):
    first, second = issuer.mint(sub="a", permissions=["read:orders"]), issuer.mint(sub="b")
    # urllib keeps one value per header name: both Authorization headers go over a raw socket.
    host, port = proxied.http_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            (
                "GET /forward-auth HTTP/1.1\r\nHost: authz\r\nConnection: close\r\n"
                "X-Forwarded-Method: GET\r\nX-Forwarded-Uri: /api/orders/1\r\n"
                f"Authorization: Bearer {first}\r\nAuthorization: Bearer {second}\r\n\r\n"
            ).encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"authorization headers disagree" in answer
    assert first.encode() not in answer and second.encode() not in answer


def test_forward_auth_is_off_unless_enabled(http_server, issuer):
    token = issuer.mint(permissions=["read:orders"])
    status, _, _ = ask(http_server.http_url, traefik("GET", "/api/orders/42", token))
    assert status == 404


# --- through a real nginx ---------------------------------------------------------------------


class Upstream(BaseHTTPRequestHandler):
    """The protected app: echoes what reached it, and the subject nginx passed on."""

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "subject": self.headers.get("X-User", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.do_GET()

    def log_message(self, *args: Any) -> None:
        pass


NGINX_CONF = """
worker_processes 1;
error_log {tmp}/error.log;
pid {tmp}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_request /_authz;
            auth_request_set $authz_subject $upstream_http_x_authz_subject;
            proxy_set_header X-User $authz_subject;
            proxy_pass http://127.0.0.1:{upstream};
        }}
        location = /_authz {{
            internal;
            proxy_pass {authz}/forward-auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
        }}
    }}
}}
"""


@pytest.fixture
def nginx(proxied: RunningServer, tmp_path: Path) -> Iterator[str]:
    if NGINX is None:
        pytest.skip("nginx is not installed (make system-deps installs it)")
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            tmp=tmp_path, port=port, upstream=upstream.server_address[1], authz=proxied.http_url
        )
    )
    process = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        upstream.shutdown()


def through(base: str, method: str, path: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(base + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_nginx_auth_request_protects_an_upstream_with_the_policies(nginx, issuer):
    reader = issuer.mint(sub="alice", permissions=["read:orders"])
    status, body = through(nginx, "GET", "/api/orders/42?page=2", reader)
    assert status == 200
    assert json.loads(body) == {"path": "/api/orders/42?page=2", "subject": "alice"}

    assert through(nginx, "GET", "/api/orders/42")[0] == 401
    assert through(nginx, "POST", "/api/orders", reader)[0] == 403
    assert through(nginx, "GET", "/api/admin/users", reader)[0] == 403
    admin = issuer.mint(sub="root", roles=["admin"])
    assert through(nginx, "GET", "/api/admin/users", admin)[0] == 200
    # authz's 400 for a path in no normal form is a refusal to nginx too (it answers 500).
    status, _ = through(nginx, "GET", "/api/orders/%2e%2e/admin/users", reader)
    assert status not in (200, 401, 403)
    # nginx passes a client's own X-Forwarded-* on to the subrequest: it cannot choose what is asked.
    spoofed = urllib.request.Request(
        nginx + "/api/admin/users",
        headers={
            "Authorization": f"Bearer {reader}",
            "X-Forwarded-Method": "GET",
            "X-Forwarded-Uri": "/api/orders/1",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(spoofed, timeout=10)
    assert refused.value.code not in (200, 401, 403)


def test_nginx_never_passes_on_a_target_authz_would_check_as_another_path(nginx, issuer):
    reader = issuer.mint(sub="alice", permissions=["read:orders"])
    bearer = {"Authorization": f"Bearer {reader}"}
    status, body = raw_ask(nginx, "/api/orders/42", bearer)
    assert (status, body) == (200, {"path": "/api/orders/42", "subject": "alice"})
    # nginx merges the slashes to pick its location but passes the target on as it came
    # (`proxy_pass` without a URI): the upstream would serve `//backoffice/...`, while a URL
    # parser reads `backoffice` as a host and `/api/orders/42` as the path.
    for target in ("//backoffice/api/orders/42", "//backoffice/api/orders/42?page=2", "/api//orders/42"):
        status, body = raw_ask(nginx, target, bearer)
        assert status not in (200, 401, 403), target
        assert body == {}, f"{target} reached the upstream"
