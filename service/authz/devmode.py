"""Dev mode: a local signing key and JWKS on loopback, so authz runs with no Auth0 tenant.

The key lives in a dev directory (`.authz-dev/` under the working directory, or
AUTHZ_DEV_DIR) and is reused across restarts, so minted tokens keep working. The
issuer is always `http://127.0.0.1:<port>/`: tokens it signs can never be mistaken
for a real tenant's, and `authz serve --dev` refuses to start when a real issuer is
configured.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authz.errors import ListenError

DEV_AUDIENCE = "https://orders.example.com"
DEV_ROLES_CLAIM = "https://orders.example.com/roles"
KEY_FILE = "signing-key.pem"
STATE_FILE = "dev.json"


def dev_dir() -> Path:
    """Where the dev key and state live."""
    return Path(os.environ.get("AUTHZ_DEV_DIR", ".authz-dev"))


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def load_or_create_key(directory: Path) -> rsa.RSAPrivateKey:
    """The dev signing key, created (mode 0600) on first use."""
    path = directory / KEY_FILE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path} is not an RSA private key")
        return key
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The public half as a JWK whose kid is derived from the key itself."""
    numbers = key.public_key().public_numbers()
    n, e = _b64(numbers.n), _b64(numbers.e)
    kid = hashlib.sha256(f"{e}.{n}".encode()).hexdigest()[:16]
    return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}


class DevIssuer:
    """Serves the dev key's JWKS at `http://127.0.0.1:<port>/.well-known/jwks.json`."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.key = load_or_create_key(directory)
        self.jwk = public_jwk(self.key)
        body = json.dumps({"keys": [self.jwk]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/.well-known/jwks.json":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        try:
            self._http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise ListenError.of("dev_issuer_port", f"127.0.0.1:{port}", exc) from exc
        self.port = self._http.server_address[1]
        self.issuer = f"http://127.0.0.1:{self.port}/"
        self.jwks_url = f"{self.issuer}.well-known/jwks.json"

    def start(self) -> None:
        """Serve the JWKS in a daemon thread and record the issuer for `authz token`."""
        threading.Thread(target=self._http.serve_forever, name="authz-dev-jwks", daemon=True).start()
        state = {"issuer": self.issuer, "audience": DEV_AUDIENCE, "roles_claim": DEV_ROLES_CLAIM}
        (self.directory / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")

    def stop(self) -> None:
        """Stop serving."""
        self._http.shutdown()
        self._http.server_close()


def mint_token(
    directory: Path,
    *,
    sub: str,
    permissions: list[str] | None = None,
    roles: list[str] | None = None,
    org_id: str | None = None,
    scopes: list[str] | None = None,
    machine: bool = False,
    expires_in: int = 3600,
    audience: str | None = None,
) -> str:
    """A dev access token in Auth0's shape, signed with the dev key."""
    state_path = directory / STATE_FILE
    if not state_path.exists():
        raise FileNotFoundError(
            f"{state_path} not found: start the dev server first (`make run` or `authz serve --dev`)"
        )
    state = json.loads(state_path.read_text(encoding="utf-8"))
    key = load_or_create_key(directory)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": state["issuer"],
        "sub": sub,
        "aud": [audience or state["audience"], f"{state['issuer']}userinfo"],
        "iat": now,
        "exp": now + expires_in,
        "azp": "devclient0000000000000000000000",
        "scope": " ".join(scopes or ([] if machine else ["openid", "profile", "email"])),
        "jti": uuid.uuid4().hex,
    }
    if machine:
        claims["gty"] = "client-credentials"
        claims["aud"] = audience or state["audience"]
    if permissions is not None or not machine:
        claims["permissions"] = permissions or []
    if roles:
        claims[state["roles_claim"]] = roles
    if org_id:
        claims["org_id"] = org_id
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": public_jwk(key)["kid"]})
