"""The issuer's JSON Web Key Set: fetched over HTTP, cached, refreshed, rate-limited.

PyJWKClient blocks on urllib, caches per-kid keys forever and refetches an unknown
kid only after its own cooldown; authz needs different guarantees: a key removed
from the JWKS stops verifying after the next refresh, an unknown kid triggers at most
one fetch per cooldown, and while the endpoint is down the cached keys keep working.

A fetch is bounded (`authz.tokens.fetch`): `timeout` seconds in all, from the first
connection to the body's last byte, at most MAX_JWKS_BYTES read (a larger declared
`Content-Length` is refused before any of the body is read), redirects only to URLs the
configuration would accept. A document that is not a JWKS, or has no usable signing key, is
refused like an outage: the last good keys stay.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from authz.tokens.fetch import MAX_JWKS_BYTES, JwksFetchError, download

log = logging.getLogger("authz.jwks")

__all__ = ["MAX_JWKS_BYTES", "JwksFetchError", "KeySet", "SigningKey"]


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A verification key, the algorithm its JWK declares (None: any allowed one), its key type
    (`RSA`, `EC`, `OKP`) and, for an EC key, its curve."""

    jwk: jwt.PyJWK
    alg: str | None
    kty: str = "RSA"
    crv: str | None = None


class KeySet:
    """A cached JWKS for one URL; thread-safe."""

    def __init__(
        self,
        url: str,
        *,
        refresh_interval: float = 600.0,
        unknown_kid_cooldown: float = 30.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.refresh_interval = refresh_interval
        self.unknown_kid_cooldown = unknown_kid_cooldown
        self.timeout = timeout
        self._clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._fetch_lock = threading.Lock()
        self._last_attempt = float("-inf")
        self._ready = threading.Event()
        self._listeners: list[Callable[[], None]] = []
        # Fetch attempts by result, counted under the fetch lock (read by the metrics at scrape).
        self.fetches = {"ok": 0, "error": 0}
        # Why the latest fetch failed (None after a good one).
        self.last_error: JwksFetchError | None = None

    @property
    def ready(self) -> bool:
        """True once the key set has been fetched successfully at least once."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the first successful fetch (or the timeout)."""
        return self._ready.wait(timeout)

    def kids(self) -> frozenset[str]:
        """The key ids currently trusted."""
        return frozenset(self._keys)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever keys are removed (caches keyed on them must drop)."""
        self._listeners.append(listener)

    def get(self, kid: str) -> SigningKey | None:
        """The key for `kid`; an unknown kid triggers one rate-limited refetch."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._clock() - self._last_attempt >= self.unknown_kid_cooldown:
            self.refresh(min_age=self.unknown_kid_cooldown)
        return self._keys.get(kid)

    def refresh(self, min_age: float = 0.0) -> bool:
        """Fetch the JWKS now; on failure keep the cached keys. Returns success."""
        with self._fetch_lock:
            # Another thread may have fetched while this one waited for the lock.
            if self._clock() - self._last_attempt < min_age:
                return self.ready
            self._last_attempt = self._clock()
            try:
                keys = self._fetch()
            except Exception as exc:  # any failure keeps the last good keys
                self.fetches["error"] += 1
                self.last_error = (
                    exc if isinstance(exc, JwksFetchError) else JwksFetchError("unexpected", repr(exc))
                )
                log.warning(
                    "JWKS fetch from %s failed (%s); %d cached key(s) stay in use",
                    self.url,
                    self.last_error,
                    len(self._keys),
                )
                return False
            self.last_error = None
            self.fetches["ok"] += 1
            removed = set(self._keys) - set(keys)
            self._keys = keys
            self._ready.set()
        if removed:
            names = ", ".join(shown(kid) for kid in sorted(removed)[:10])
            log.info("JWKS keys removed: %s%s", names, " ..." if len(removed) > 10 else "")
            for listener in self._listeners:
                listener()
        return True

    def _fetch(self) -> dict[str, SigningKey]:
        data = _json_document(download(self.url, self.timeout))
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise JwksFetchError("malformed", "the document has no 'keys' list")
        keys: dict[str, SigningKey] = {}
        skipped: list[str] = []
        for entry in data["keys"]:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or "kid" not in entry:
                continue
            try:
                keys[str(entry["kid"])] = _signing_key(entry)
            except (jwt.PyJWTError, TypeError, ValueError) as exc:
                # One broken key is skipped, never the whole document: the others may be a rotation.
                skipped.append(f"{shown(entry['kid'])}: {exc}")
        if skipped:
            # One line per fetch, whatever the document holds (a 1 MiB one can hold 40,000 keys).
            more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
            log.warning("JWKS key(s) skipped: %s%s", "; ".join(skipped[:3]), more)
        if not keys:
            # Taking it would drop every key at once: a broken endpoint, not a real rotation.
            raise JwksFetchError("malformed", "the document has no usable signing key")
        return keys

    def run(self, stop: threading.Event) -> None:
        """Keep the key set fresh until `stop` is set: back off until the first fetch succeeds."""
        delay = 0.5
        while not stop.is_set():
            if self.refresh():
                delay = self.refresh_interval
            else:
                delay = min(delay * 2, 30.0) if not self.ready else min(self.refresh_interval, 30.0)
            stop.wait(delay)

    def start(self, stop: threading.Event) -> threading.Thread:
        """Run `run` in a daemon thread."""
        thread = threading.Thread(target=self.run, args=(stop,), name="authz-jwks", daemon=True)
        thread.start()
        return thread


# A JWK member that only a private (or symmetric) key has. A key set is public: a key published
# with one can be used by anyone who reads the document to sign tokens, so it verifies nothing.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class UnusableKey(ValueError):
    """A JWK that parses but must not verify anything."""


def _signing_key(entry: dict[str, Any]) -> SigningKey:
    """The verification key of one JWK; UnusableKey, PyJWTError, TypeError or ValueError if none."""
    private = sorted(PRIVATE_MEMBERS & entry.keys())
    if private:
        raise UnusableKey(
            f"it holds private key material ({', '.join(private)}): anyone who reads the JWKS could "
            "sign with it"
        )
    alg = entry.get("alg")
    if alg is not None and not isinstance(alg, str):
        raise UnusableKey("its alg is not a string")
    jwk = jwt.PyJWK.from_dict(entry)  # checks kty and crv: strings it knows
    crv = entry.get("crv")
    return SigningKey(jwk, alg, str(entry["kty"]), crv if isinstance(crv, str) else None)


def shown(value: object) -> str:
    """A key id (or another token header value) as a message or a log shows it: quoted, escaped,
    at most 64 characters of it."""
    return repr(str(value)[:64])


def _json_document(body: bytes) -> Any:
    """`body` parsed as JSON; anything else is a malformed JWKS."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise JwksFetchError("malformed", f"not JSON: {exc}") from exc
