"""Plain-language diagnoses of the Auth0 mistakes teams make most often."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from authz.principal import MACHINE_GRANT_TYPE

OPAQUE = (
    "this is not a JWT but an opaque token: Auth0 issues these when the login did not ask for "
    "an API audience. Pass authorizationParams.audience (your API identifier) to the Auth0 SDK."
)
ENCRYPTED = (
    "this is an encrypted token (JWE): authz needs a signed RS256 access token. Ask for the API's "
    "audience at login and turn off token encryption on the API in Auth0."
)
# A hint text, not a secret (S105 flags the name).
ID_TOKEN = (
    "this looks like an ID token (its audience is a client id / it carries a nonce): ID tokens "  # noqa: S105
    "prove the login to the SPA and must never be sent to an API. Send the access token instead "
    "(getAccessTokenSilently() in @auth0/auth0-react)."
)
NO_PERMISSIONS = (
    "the token has no 'permissions' claim: in Auth0, open the API's settings and turn on "
    "'Enable RBAC' and 'Add Permissions in the Access Token'."
)

_CLIENT_ID = re.compile(r"^[A-Za-z0-9]{32}$")


def audiences_of(claims: Mapping[str, Any]) -> list[str]:
    """The `aud` claim as a list (Auth0 sends a string, or a list with /userinfo)."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


def looks_like_id_token(claims: Mapping[str, Any]) -> bool:
    """A verified token that is an OIDC ID token rather than an access token."""
    if "nonce" in claims or "at_hash" in claims:
        return True
    auds = audiences_of(claims)
    client = claims.get("azp") or claims.get("client_id")
    if len(auds) == 1 and (auds[0] == client or _CLIENT_ID.match(auds[0])):
        return "permissions" not in claims and "scope" not in claims
    return False


def audience_hint(actual: Sequence[str], expected: Sequence[str]) -> str:
    """Explain an audience mismatch."""
    return (
        f"the token's audience is {', '.join(actual) or '(none)'} but authz expects "
        f"{', '.join(expected)}: request that API identifier as the audience at login."
    )


def issuer_hint(actual: str, expected: Sequence[str]) -> str:
    """Explain an issuer mismatch, spotting the missing trailing slash."""
    for issuer in expected:
        if issuer.rstrip("/") == actual.rstrip("/") and issuer != actual:
            return (
                f"issuer {actual!r} differs from configured {issuer!r} only by the trailing slash: "
                "Auth0 issuers end with '/', so configure AUTHZ_ISSUER with it."
            )
    return f"the token was issued by {actual!r}; authz trusts {', '.join(expected)}."


def principal_hints(claims: Mapping[str, Any], roles_claim: str | None) -> list[str]:
    """Hints for a token that verified but may not carry what the policies need."""
    hints: list[str] = []
    machine = claims.get("gty") == MACHINE_GRANT_TYPE
    if not machine and "permissions" not in claims:
        hints.append(NO_PERMISSIONS)
    if roles_claim and not machine and roles_claim not in claims:
        hints.append(
            f"the token has no roles claim {roles_claim!r}: add a post-login Action that sets it "
            "(api.accessToken.setCustomClaim) and deploy it in the Login flow."
        )
    return hints
