"""Verifying an Auth0 access token: signature first, then claims, each fault a Reason."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.api_jws import PyJWS

from authz.decision import Reason
from authz.errors import Unavailable
from authz.principal import Principal, numeric_date, principal_from_claims
from authz.tokens import hints
from authz.tokens.cache import TokenCache
from authz.tokens.jwks import KeySet, SigningKey, shown

log = logging.getLogger("authz.tokens")

MAX_TOKEN_BYTES = 16 * 1024
REQUIRED_CLAIMS = ("exp", "iss", "aud", "sub")


@dataclass(frozen=True)
class TokenSettings:
    """What a token must satisfy to be trusted."""

    issuers: tuple[str, ...]
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...] = ("RS256",)
    leeway: float = 30.0
    roles_claim: str | None = None


class TokenRejected(Exception):
    """A token that cannot be trusted; `reason` is the public Reason, `hints` explain it."""

    def __init__(self, reason: Reason, message: str, hint_list: list[str] | None = None) -> None:
        self.reason = reason
        self.message = message
        self.hints = hint_list or []
        super().__init__(message)


def strip_bearer(raw: str) -> str:
    """Remove a `Bearer ` prefix (any case) and surrounding space; a bare `Bearer` is no token."""
    if raw[:6].lower() != "bearer" and not raw[:1].isspace():
        # The first word is not "bearer": no split, which would copy a token of a kilobyte
        # or so (and lose the hash the string has cached) on every lookup.
        return raw.strip()
    parts = raw.split(None, 1)
    if parts and parts[0].lower() == "bearer":
        return parts[1].strip() if len(parts) > 1 else ""
    return raw.strip()


class TokenVerifier:
    """Verifies tokens against one configuration and one key set. Thread-safe."""

    def __init__(
        self,
        settings: TokenSettings,
        keys: KeySet,
        *,
        cache: TokenCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.cache = cache if cache is not None else TokenCache(clock=clock)
        self._clock = clock
        self._jws = PyJWS(algorithms=list(settings.algorithms))
        keys.on_change(self.cache.clear)

    def verify(self, raw: str) -> Principal:
        """The principal of a valid access token; raises TokenRejected otherwise."""
        token = strip_bearer(raw)
        cached = self.cache.get(token)  # never holds "": a missing token is refused below
        if cached is not None:
            return cached
        return self.verify_uncached(token)

    def verify_uncached(self, token: str) -> Principal:
        """`verify` after a cache miss: `token` has no `Bearer ` prefix; cached once it verifies."""
        claims = self._verified_claims(token)
        principal = principal_from_claims(claims, self.settings.roles_claim)
        self.cache.put(token, principal, float(claims["exp"]) + self.settings.leeway)
        return principal

    def is_cached(self, raw: str) -> bool:
        """Whether `verify(raw)` would be a cache hit now: no key lookup, no JWKS fetch."""
        return self.cache.holds(strip_bearer(raw))

    def _verified_claims(self, token: str) -> dict[str, Any]:
        if not token:
            raise TokenRejected(Reason.TOKEN_MISSING, "no access token was sent")
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenRejected(Reason.TOKEN_MALFORMED, f"token is larger than {MAX_TOKEN_BYTES} bytes")
        dots = token.count(".")
        if dots == 4:
            raise TokenRejected(Reason.TOKEN_MALFORMED, "token is encrypted (JWE)", [hints.ENCRYPTED])
        if dots != 2:
            raise TokenRejected(Reason.TOKEN_MALFORMED, "token is not a JWT", [hints.OPAQUE])
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected(
                Reason.TOKEN_MALFORMED, "token header is not valid JWT", [hints.OPAQUE]
            ) from None
        alg = header.get("alg")
        if alg not in self.settings.algorithms:
            raise TokenRejected(
                Reason.TOKEN_ALGORITHM_NOT_ALLOWED,
                # The caller's header value, cut short: a 16 KiB token's message was all of it.
                f"algorithm {shown(alg)} is not allowed (allowed: {', '.join(self.settings.algorithms)})",
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected(Reason.TOKEN_KEY_UNKNOWN, "token header has no key id (kid)")
        key = self.keys.get(kid)
        if key is None:
            if not self.keys.ready:
                # Not the token's fault: no JWKS was ever fetched (a worker still starting behind
                # a shared port, an issuer down since start-up). Refused as not ready, so the
                # caller retries instead of reading a deny as the token's verdict.
                raise Unavailable("the issuer's signing keys (JWKS) are not loaded yet; retry shortly")
            raise TokenRejected(
                Reason.TOKEN_KEY_UNKNOWN, f"signing key {shown(kid)} is not in the issuer's JWKS"
            )
        if key.alg and _key_family(key.alg) != _key_family(alg):
            raise TokenRejected(
                Reason.TOKEN_ALGORITHM_NOT_ALLOWED, f"key {kid!r} is for {key.alg}, the token says {alg}"
            )
        if not _key_fits(alg, key):
            # A JWK without `alg` still has a type: an EC or OKP key named by an RS256 token (or
            # an RSA key by an ES256 one) made pyjwt raise TypeError, an INTERNAL on every call.
            kind = f"{key.kty} {key.crv}" if key.crv else key.kty
            raise TokenRejected(
                Reason.TOKEN_ALGORITHM_NOT_ALLOWED, f"key {kid!r} is an {kind} key, the token says {alg}"
            )
        try:
            decoded = self._jws.decode_complete(token, key=key.jwk.key, algorithms=[alg])
        except jwt.InvalidSignatureError:
            raise TokenRejected(Reason.TOKEN_SIGNATURE_INVALID, "token signature does not verify") from None
        except jwt.InvalidAlgorithmError:
            raise TokenRejected(
                Reason.TOKEN_ALGORITHM_NOT_ALLOWED, f"algorithm {alg!r} is not allowed"
            ) from None
        except jwt.PyJWTError as exc:
            raise TokenRejected(Reason.TOKEN_MALFORMED, f"token cannot be decoded: {exc}") from None
        except (TypeError, ValueError):
            # What a key pyjwt cannot use with this algorithm raises (a combination _key_fits
            # does not know); the token is not trusted, and no caller's input is a fault here.
            raise TokenRejected(
                Reason.TOKEN_ALGORITHM_NOT_ALLOWED, f"key {kid!r} cannot verify an {alg} token"
            ) from None
        try:
            claims = json.loads(decoded["payload"])
        except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
            claims = None
        if not isinstance(claims, dict):
            raise TokenRejected(Reason.TOKEN_MALFORMED, "token payload is not a JSON object")
        self._check_claims(claims)
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        missing = [name for name in REQUIRED_CLAIMS if name not in claims]
        if missing:
            raise TokenRejected(
                Reason.TOKEN_MALFORMED, f"token lacks required claim(s): {', '.join(missing)}"
            )
        exp, nbf = claims["exp"], claims.get("nbf")
        optional = (value for value in (nbf, claims.get("iat")) if value is not None)
        if numeric_date(exp) is None or any(numeric_date(value) is None for value in optional):
            # NaN compares false with everything and 1e999 is infinity: either would make
            # a token that never expires (or is never "not yet valid").
            raise TokenRejected(Reason.TOKEN_MALFORMED, "exp, nbf and iat must be finite numbers")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise TokenRejected(Reason.TOKEN_MALFORMED, "sub must be a non-empty string")
        now = self._clock()
        leeway = self.settings.leeway
        if now > exp + leeway:
            raise TokenRejected(Reason.TOKEN_EXPIRED, f"token expired {int(now - exp)} s ago")
        if nbf is not None and now < nbf - leeway:
            raise TokenRejected(Reason.TOKEN_NOT_YET_VALID, "token is not valid yet (nbf in the future)")
        iss = claims["iss"]
        if iss not in self.settings.issuers:
            shown = iss if isinstance(iss, str) else repr(iss)
            raise TokenRejected(
                Reason.TOKEN_ISSUER_MISMATCH,
                f"token issuer {shown!r} is not trusted",
                [hints.issuer_hint(str(iss), self.settings.issuers)],
            )
        auds = hints.audiences_of(claims)
        if not set(auds) & set(self.settings.audiences):
            if hints.looks_like_id_token(claims):
                raise TokenRejected(
                    Reason.TOKEN_NOT_ACCESS_TOKEN,
                    "an ID token was sent instead of an access token",
                    [hints.ID_TOKEN],
                )
            raise TokenRejected(
                Reason.TOKEN_AUDIENCE_MISMATCH,
                "token audience does not match",
                [hints.audience_hint(auds, self.settings.audiences)],
            )


# The curve each allowed ECDSA algorithm signs on (RFC 7518, 3.4).
_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


def _key_fits(alg: str, key: SigningKey) -> bool:
    """Whether `key`'s type (and curve) is the one `alg` (an allowed algorithm) verifies with."""
    if alg[:2] in ("RS", "PS"):
        return key.kty == "RSA"
    return key.kty == "EC" and key.crv == _CURVES.get(alg)


def _key_family(alg: str) -> str:
    # Auth0's JWKS declares its RSA keys "alg": "RS256" and signs PS256 tokens with the same
    # keys, so a JWK's alg binds the key to its family (RSA, EC ...), not to one algorithm.
    return "RSA" if alg[:2] in ("RS", "PS") else alg
