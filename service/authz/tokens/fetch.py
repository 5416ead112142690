"""One bounded HTTP GET of the issuer's JWKS: a deadline on the whole fetch, a cap on the body.

A socket timeout bounds each wait for the endpoint, not the fetch: an endpoint (or anything
on the path to it) that sends its status line, its headers or a redirect chain a byte at a
time within each timeout held the fetch, and with it the key set's fetch lock, without end
(100,000 header bytes at one per 0.5 s, 14 hours' worth, were still being read 20 s into a
fetch with a 1 s timeout). Here a timer
shuts down every socket of the fetch once `timeout` seconds have passed since it began, so a
blocked read returns at once, whatever stage the fetch is in: connecting, the proxy tunnel,
the TLS handshake, the status line and headers, each redirect, the body. Name resolution,
which no socket timeout covers, is waited for until the same deadline (`_resolve`).

Redirects are followed only to URLs the configuration would accept (https, or plain http on a
loopback host), at most MAX_REDIRECTS of them.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from typing import IO, Any
from urllib.parse import urlsplit

from authz.config import is_loopback

MAX_JWKS_BYTES = 1 << 20
MAX_REDIRECTS = 3
_READ_CHUNK = 64 * 1024


class JwksFetchError(Exception):
    """A JWKS fetch that did not give keys; `kind` names the fault for logs and tests.

    Kinds: `unreachable` (no connection, or it closed unanswered), `status` (an HTTP
    error, or a redirect to a URL that is not allowed), `too-slow`, `too-large`,
    `malformed` (not a JWKS with a usable key), and `unexpected` for anything else.
    """

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {detail}")


def allowed_url(url: str) -> bool:
    """Whether the configuration would take `url` as a JWKS URL: https, or http on loopback."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and bool(parts.hostname) and is_loopback(parts.hostname or "")


class Deadline:
    """Shuts down every socket handed to `watch` once `seconds` have passed (until `finish`)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._ends = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False
        self._finished = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        """Seconds left (never below a small positive figure: a zero timeout means non-blocking)."""
        return max(self._ends - time.monotonic(), 0.001)

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down at the deadline (at once if it has passed)."""
        with self._lock:
            if not self.expired:
                self._sockets.append(sock)
                return
        _shut(sock)

    def finish(self) -> None:
        """The fetch is over: its sockets are closed or about to be, and are not touched again."""
        self._timer.cancel()
        with self._lock:
            self._finished = True
            self._sockets.clear()

    def _expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # A closed socket object has no descriptor any more (EBADF), so this never reaches a
    # descriptor the process has since reused for something else. The plain socket's shutdown,
    # also for a TLS socket: SSLSocket.shutdown drops its TLS object, which the reading thread
    # may be about to use.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


# The deadline of the fetch running on this thread: http.client connects, and ssl shakes
# hands, on the thread that opens the URL, through the module-level classes below.
_fetching = threading.local()
# Name lookups still running after their fetch gave up on them (a thread each, until the
# resolver answers): past this many, a fetch fails at once rather than start another.
MAX_PENDING_LOOKUPS = 4
_lookups = threading.BoundedSemaphore(MAX_PENDING_LOOKUPS)

AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


def _current() -> Deadline:
    deadline: Deadline = _fetching.deadline
    return deadline


def _resolve(host: str, port: int, deadline: Deadline) -> list[AddressInfo]:
    """`socket.getaddrinfo` for `host`, waited for until the deadline only.

    The resolver has no timeout of its own (resolv.conf's timeout times attempts times address
    families can be a minute), so it runs on a thread of its own, left to finish alone once
    the fetch has given up on it; at most MAX_PENDING_LOOKUPS such threads at a time.
    """
    if not _lookups.acquire(blocking=False):
        raise OSError(f"name resolution: {MAX_PENDING_LOOKUPS} earlier lookups are still running")
    done = threading.Event()
    found: list[AddressInfo] = []
    failed: list[OSError] = []

    def lookup() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except OSError as exc:  # socket.gaierror among them
            failed.append(exc)
        finally:
            _lookups.release()
            done.set()

    threading.Thread(target=lookup, name="authz-jwks-resolve", daemon=True).start()
    if not done.wait(deadline.remaining()):
        raise TimeoutError(f"name resolution took longer than {deadline.seconds:g} s")
    if failed:
        raise failed[0]
    return found


def _create_connection(
    address: tuple[str, int], timeout: float | None = None, source_address: Any = None
) -> socket.socket:
    """socket.create_connection's loop over the host's addresses, with the lookup, every
    connect and the connected socket within the fetch's deadline."""
    deadline = _current()
    host, port = address
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, target in _resolve(host, port, deadline):
        sock = socket.socket(family, kind, proto)
        # http.client passes its own timeout (a float here: urllib's, set by _download).
        wait = deadline.remaining()
        if isinstance(timeout, int | float):
            wait = min(timeout, wait)
        try:
            sock.settimeout(wait)
            if source_address:
                sock.bind(source_address)
            sock.connect(target)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        deadline.watch(sock)
        return sock
    raise error


class _Plain(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _create_connection


class _Tls(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _create_connection


class _WatchedTls(ssl.SSLSocket):
    # The TLS socket takes the TCP socket's descriptor before its handshake: watched from
    # here on, so a handshake dripped a byte at a time is cut off too.
    def do_handshake(self, block: bool = False) -> None:
        _current().watch(self)
        super().do_handshake(block)


class _HttpHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_Plain, req)


class _HttpsHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        # Built here, for https only: loading the system's CAs takes about 20 ms, which a
        # plain-http fetch (a loopback issuer) has no use for.
        tls = ssl.create_default_context()
        tls.sslsocket_class = _WatchedTls
        return self.do_open(_Tls, req, context=tls)


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Redirects only to URLs the configuration allows, and few of them."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if not allowed_url(newurl):
            fp.close()
            # The target is not echoed: it is the endpoint's text, bound for a log line.
            raise JwksFetchError(
                "status", f"HTTP {code}: a redirect to a URL that is not https (plain http only on loopback)"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def download(url: str, timeout: float) -> bytes:
    """The body at `url`, within `timeout` seconds in all and MAX_JWKS_BYTES; JwksFetchError otherwise."""
    deadline = Deadline(timeout)
    _fetching.deadline = deadline
    try:
        return _download(url, deadline)
    except JwksFetchError:
        raise
    except urllib.error.HTTPError as exc:
        raise JwksFetchError("status", f"HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        # TimeoutError is an OSError; so is what a read cut off by the deadline raises.
        if (
            deadline.expired
            or isinstance(exc, TimeoutError)
            or isinstance(getattr(exc, "reason", None), TimeoutError)
        ):
            raise JwksFetchError("too-slow", f"no answer within {timeout:g} s") from exc
        raise JwksFetchError("unreachable", str(exc)) from exc
    finally:
        deadline.finish()
        _fetching.deadline = None


def _download(url: str, deadline: Deadline) -> bytes:
    # The URL's scheme was validated by config: https, or http on loopback only.
    headers = {"Accept": "application/json", "User-Agent": "authz"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    # urllib's opener: proxies from the environment included, every socket watched.
    opener = urllib.request.build_opener(_HttpHandler(), _HttpsHandler(), _Redirects())
    with opener.open(request, timeout=deadline.seconds) as response:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
            raise JwksFetchError("too-large", f"{declared} bytes declared, the limit is {MAX_JWKS_BYTES}")
        body = bytearray()
        while chunk := response.read1(_READ_CHUNK):
            body += chunk
            if len(body) > MAX_JWKS_BYTES:
                raise JwksFetchError("too-large", f"more than {MAX_JWKS_BYTES} bytes")
            if deadline.expired:
                break
    if deadline.expired:
        # A read the deadline cut off ends like a short body: not a document to parse.
        raise JwksFetchError("too-slow", f"the answer took longer than {deadline.seconds:g} s")
    return bytes(body)
