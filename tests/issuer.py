"""A real local token issuer for tests: RSA keys, a JWKS over HTTP on loopback, Auth0-shaped tokens.

Written independently of authz's dev mode so the tests do not verify authz with authz.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "https://orders.example.com"
ROLES_CLAIM = "https://orders.example.com/roles"
_KEYS: list[rsa.RSAPrivateKey] = []


_TOKEN_AGE = re.compile(r"token expired \d+ s ago")


def without_token_age(text: str) -> str:
    """`text` with the age in "token expired N s ago" masked.

    Two answers about the same expired token, computed a moment apart, can straddle a
    second boundary; comparisons across transports must not depend on that.
    """
    return _TOKEN_AGE.sub("token expired N s ago", text)


def _fresh_key() -> rsa.RSAPrivateKey:
    # RSA generation is slow; a small pool shared by the whole session is enough.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


class Issuer:
    """An Auth0-like issuer: `mint` tokens, `rotate` keys, take the JWKS `down`."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.active = self.add_key()
        self.down: bool | str = False  # True: 503; "close": the connection closes unanswered
        self.fetches = 0
        self.served = 0  # documents sent in full (fetches counts every request, refused ones too)
        # While set to an unset Event, every JWKS request waits for it: a slow endpoint.
        self.hold: threading.Event | None = None
        # When set, served instead of the key set (garbage, a huge document), with or without
        # a Content-Length.
        self.body: bytes | None = None
        self.declare_length = True
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches += 1
                if issuer.hold is not None:
                    issuer.hold.wait(30)
                if issuer.down:
                    if issuer.down == "close":
                        self.close_connection = True  # no answer at all: the connection just ends
                    else:
                        self.send_error(503)
                    return
                if self.path != "/.well-known/jwks.json":
                    self.send_error(404)
                    return
                body = issuer.body if issuer.body is not None else json.dumps(issuer.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if issuer.declare_length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.close_connection = True  # the end of the body is the end of the connection
                self.end_headers()
                try:
                    for at in range(0, len(body), 65536):
                        self.wfile.write(body[at : at + 65536])
                except (BrokenPipeError, ConnectionResetError):
                    return  # the reader stopped reading: what a size cap does
                issuer.served += 1

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/"
        self.jwks_url = self.url + ".well-known/jwks.json"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def add_key(self) -> str:
        kid = uuid.uuid4().hex[:12]
        self.keys[kid] = _fresh_key()
        return kid

    def rotate(self) -> str:
        """Publish a new key and sign with it from now on (the old one stays published)."""
        self.active = self.add_key()
        return self.active

    def remove_key(self, kid: str) -> None:
        del self.keys[kid]

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys.items():
            numbers = key.public_key().public_numbers()
            keys.append(
                {
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": kid,
                    "n": _b64(numbers.n),
                    "e": _b64(numbers.e),
                }
            )
        return {"keys": keys}

    def claims(
        self,
        sub: str = "alice",
        permissions: tuple[str, ...] | list[str] | None = (),
        roles: tuple[str, ...] | list[str] = (),
        org_id: str | None = None,
        scope: str | None = None,
        machine: bool = False,
        exp_in: int = 300,
        aud: str | list[str] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": sub,
            "aud": aud if aud is not None else [AUDIENCE, self.url + "userinfo"],
            "iat": now,
            "exp": now + exp_in,
            "azp": "k3bKxCW2pTfR8n1JzQvYm4aD7sLhE9uG",
            "scope": scope if scope is not None else "openid profile email",
        }
        if machine:
            claims["gty"] = "client-credentials"
            claims["sub"] = sub if sub != "alice" else "k3bKxCW2pTfR8n1JzQvYm4aD7sLhE9uG@clients"
        if permissions is not None:
            claims["permissions"] = list(permissions)
        if roles:
            claims[ROLES_CLAIM] = list(roles)
        if org_id:
            claims["org_id"] = org_id
        claims.update(extra)
        return claims

    def sign(
        self,
        claims: dict[str, Any],
        *,
        kid: str | None = None,
        alg: str = "RS256",
        headers: dict[str, Any] | None = None,
    ) -> str:
        kid = kid or self.active
        return jwt.encode(claims, self.keys[kid], algorithm=alg, headers={"kid": kid, **(headers or {})})

    def mint(self, sub: str = "alice", *, kid: str | None = None, **kwargs: Any) -> str:
        """An RS256 access token in Auth0's shape for the demo API."""
        return self.sign(self.claims(sub, **kwargs), kid=kid)

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
