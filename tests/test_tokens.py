"""Token verification through the real gRPC server: every token Reason, rotation, outages, logging.

Tokens come from tests/issuer.py (real RSA keys, JWKS over loopback HTTP). Tests that
rotate or remove keys or take the JWKS down use their own Issuer and server so the
session-wide ones stay clean.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import struct_pb2
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from authz.api.v1 import authz_pb2
from tests.conftest import settings_for
from tests.issuer import AUDIENCE

R = authz_pb2
CLIENT_ID = "k3bKxCW2pTfR8n1JzQvYm4aD7sLhE9uG"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json_b64(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _struct(**values: Any) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


def _check(server: Any, token: str, resource: str = "/api/orders/1", action: str = "GET", **kw: Any) -> Any:
    return server.stub.Check(R.CheckRequest(token=token, resource=resource, action=action, **kw), timeout=10)


def _principal(server: Any, token: str) -> Any:
    return server.stub.GetPrincipal(R.GetPrincipalRequest(token=token), timeout=10)


def _assert_denied(server: Any, token: str, reason: int) -> None:
    reply = _check(server, token)
    assert not reply.allowed
    assert R.Reason.Name(reply.reason) == R.Reason.Name(reason)
    assert reply.subject == ""
    principal = _principal(server, token)
    assert not principal.authenticated
    assert principal.reason == reason


# --- every token Reason -------------------------------------------------------------------


def test_valid_token_is_allowed(server, issuer):
    reply = _check(server, issuer.mint(permissions=["read:orders"]))
    assert reply.allowed
    assert reply.reason == R.REASON_ALLOWED
    assert reply.subject == "alice"


def test_empty_token_without_metadata_is_missing(server):
    reply = _check(server, "")
    assert not reply.allowed
    assert reply.reason == R.REASON_TOKEN_MISSING
    assert _principal(server, "").reason == R.REASON_TOKEN_MISSING


def test_bearer_alone_is_missing(server):
    assert _check(server, "Bearer   ").reason == R.REASON_TOKEN_MISSING


@pytest.mark.parametrize("garbage", ["not.a.jwt", "a.b.c", "%%%.@@@.!!!", "eyJhbGciOiJSUzI1NiJ9.e30"])
def test_garbage_is_malformed(server, garbage):
    _assert_denied(server, garbage, R.REASON_TOKEN_MALFORMED)


def test_opaque_token_is_malformed_with_hint(server):
    opaque = "xq3vP9kLmN2rT8sW4yZ6aB1cD5eF7gH0"
    _assert_denied(server, opaque, R.REASON_TOKEN_MALFORMED)
    hints = " ".join(_principal(server, opaque).hints)
    assert "opaque" in hints
    assert "audience" in hints


def test_jwe_shaped_token_is_malformed_with_hint(server):
    header = _json_b64({"alg": "dir", "enc": "A256GCM", "iss": "https://tenant.auth0.com/"})
    jwe = f"{header}..{_b64(b'iv-bytes-123')}.{_b64(b'ciphertext' * 8)}.{_b64(b'tag-bytes-16')}"
    assert jwe.count(".") == 4
    _assert_denied(server, jwe, R.REASON_TOKEN_MALFORMED)
    hints = _principal(server, jwe).hints
    assert any("encrypted" in h and "JWE" in h for h in hints)


@pytest.mark.parametrize("claim", ["exp", "sub", "iss", "aud"])
def test_missing_required_claim_is_malformed(server, issuer, claim):
    claims = issuer.claims(permissions=["read:orders"])
    del claims[claim]
    token = issuer.sign(claims)
    _assert_denied(server, token, R.REASON_TOKEN_MALFORMED)
    assert claim in _check(server, token).message


def test_expired_beyond_leeway(server, issuer):
    token = issuer.mint(permissions=["read:orders"], exp_in=-120)
    _assert_denied(server, token, R.REASON_TOKEN_EXPIRED)


def test_expired_within_leeway_is_accepted(server, issuer):
    # The server's default leeway is 30 s.
    token = issuer.mint(permissions=["read:orders"], exp_in=-5)
    assert _check(server, token).allowed


def test_not_yet_valid(server, issuer):
    token = issuer.sign(issuer.claims(permissions=["read:orders"], nbf=int(time.time()) + 600))
    _assert_denied(server, token, R.REASON_TOKEN_NOT_YET_VALID)


def test_nbf_within_leeway_is_accepted(server, issuer):
    token = issuer.sign(issuer.claims(permissions=["read:orders"], nbf=int(time.time()) + 5))
    assert _check(server, token).allowed


def test_tampered_payload_keeps_original_signature(server, issuer):
    token = issuer.mint(permissions=["read:orders"])
    header, _, signature = token.split(".")
    forged = issuer.claims(permissions=["read:orders", "delete:orders"], roles=["admin"])
    tampered = f"{header}.{_json_b64(forged)}.{signature}"
    reply = _check(server, tampered, "/api/orders/1", "DELETE", attributes=_struct(status="draft"))
    assert not reply.allowed
    assert reply.reason == R.REASON_TOKEN_SIGNATURE_INVALID
    assert _principal(server, tampered).reason == R.REASON_TOKEN_SIGNATURE_INVALID


def test_signature_of_another_key_is_invalid(server, issuer):
    # Right kid in the header, signed by some other RSA key.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(issuer.claims(), other, algorithm="RS256", headers={"kid": issuer.active})
    _assert_denied(server, token, R.REASON_TOKEN_SIGNATURE_INVALID)


def test_audience_mismatch_with_hint(server, issuer):
    token = issuer.mint(permissions=["read:orders"], aud="https://billing.example.com")
    _assert_denied(server, token, R.REASON_TOKEN_AUDIENCE_MISMATCH)
    hints = " ".join(_principal(server, token).hints)
    assert "https://billing.example.com" in hints
    assert AUDIENCE in hints


def test_issuer_mismatch(server, issuer):
    token = issuer.mint(permissions=["read:orders"], iss="https://evil.example.com/")
    _assert_denied(server, token, R.REASON_TOKEN_ISSUER_MISMATCH)
    assert not any("trailing slash" in h for h in _principal(server, token).hints)


def test_issuer_missing_trailing_slash_has_hint(server, issuer):
    token = issuer.mint(permissions=["read:orders"], iss=issuer.url.rstrip("/"))
    _assert_denied(server, token, R.REASON_TOKEN_ISSUER_MISMATCH)
    hints = _principal(server, token).hints
    assert any("trailing slash" in h for h in hints)


def test_hs256_signed_with_the_public_key_is_not_allowed(server, issuer):
    # The classic algorithm confusion: HMAC keyed with the issuer's public key text.
    public_pem = (
        issuer.keys[issuer.active]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = _json_b64({"alg": "HS256", "typ": "JWT", "kid": issuer.active})
    payload = _json_b64(issuer.claims(permissions=["read:orders"]))
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    _assert_denied(server, f"{header}.{payload}.{_b64(mac)}", R.REASON_TOKEN_ALGORITHM_NOT_ALLOWED)


def test_alg_none_is_not_allowed(server, issuer):
    header = _json_b64({"alg": "none", "typ": "JWT", "kid": issuer.active})
    payload = _json_b64(issuer.claims(permissions=["read:orders"]))
    _assert_denied(server, f"{header}.{payload}.", R.REASON_TOKEN_ALGORITHM_NOT_ALLOWED)


def test_ps256_is_not_allowed_by_default(server, issuer):
    token = issuer.sign(issuer.claims(permissions=["read:orders"]), alg="PS256")
    _assert_denied(server, token, R.REASON_TOKEN_ALGORITHM_NOT_ALLOWED)


def test_ps256_accepted_when_allowed(make_server, issuer):
    # The issuer's JWKS declares its RSA keys "alg": "RS256", as Auth0's does; Auth0 signs
    # PS256 tokens with those same keys, so the key's RSA family must be enough.
    ps = make_server(settings_for(issuer, algorithms=("RS256", "PS256")))
    token = issuer.sign(issuer.claims(permissions=["read:orders"]), alg="PS256")
    reply = _check(ps, token)
    assert reply.allowed, reply.message
    assert _check(ps, issuer.mint(permissions=["read:orders"])).allowed


def test_algorithm_of_another_key_family_is_not_allowed(make_server, issuer):
    # ES256 is allowed here, but the kid names an RSA key published for RS256.
    es = make_server(settings_for(issuer, algorithms=("RS256", "ES256")))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(
        issuer.claims(permissions=["read:orders"]), ec_key, algorithm="ES256", headers={"kid": issuer.active}
    )
    _assert_denied(es, token, R.REASON_TOKEN_ALGORITHM_NOT_ALLOWED)


@pytest.mark.parametrize(
    ("algorithms", "alg", "kid"),
    [
        (("RS256",), "RS256", "ec"),
        (("RS256",), "RS256", "ed"),
        (("RS256", "ES256"), "ES256", "rsa"),
        (("ES256", "ES384"), "ES384", "ec"),
    ],
    ids=["RS256 on an EC key", "RS256 on an Ed25519 key", "ES256 on an RSA key", "ES384 on P-256"],
)
def test_a_key_without_alg_verifies_only_its_own_type(make_server, own_issuer, algorithms, alg, kid):
    # Many issuers' JWKS (not Auth0's) leave `alg` out. Before, such a key of another type than
    # the token's alg made pyjwt raise TypeError: INTERNAL, logged with a traceback, for any caller.
    rsa_jwk = {k: v for k, v in own_issuer.jwks()["keys"][0].items() if k != "alg"}
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    keys = {
        "rsa": {**rsa_jwk, "kid": "rsa"},
        "ec": {**json.loads(ECAlgorithm.to_jwk(ec_key)), "kid": "ec"},
        "ed": {**json.loads(OKPAlgorithm.to_jwk(Ed25519PrivateKey.generate().public_key())), "kid": "ed"},
    }
    own_issuer.body = json.dumps({"keys": list(keys.values())}).encode()
    srv = make_server(settings_for(own_issuer, algorithms=algorithms))
    header = _json_b64({"alg": alg, "kid": kid, "typ": "JWT"})
    token = f"{header}.{_json_b64(own_issuer.claims(permissions=['read:orders']))}.{_b64(b'x' * 64)}"
    reply = _check(srv, token)
    assert (reply.allowed, reply.reason) == (False, R.REASON_TOKEN_ALGORITHM_NOT_ALLOWED)
    assert f"key {kid!r} is an" in reply.message
    # The key still verifies tokens of its own type.
    signed = jwt.encode(
        own_issuer.claims(permissions=["read:orders"]),
        own_issuer.keys[own_issuer.active],
        algorithm="RS256",
        headers={"kid": "rsa"},
    )
    if "RS256" in algorithms:
        assert _check(srv, signed).allowed


def test_unknown_key_id(server, issuer):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        issuer.claims(permissions=["read:orders"]),
        stranger,
        algorithm="RS256",
        headers={"kid": "not-in-the-jwks"},
    )
    _assert_denied(server, token, R.REASON_TOKEN_KEY_UNKNOWN)


def test_no_key_id_is_unknown_key(server, issuer):
    token = jwt.encode(issuer.claims(), issuer.keys[issuer.active], algorithm="RS256")
    _assert_denied(server, token, R.REASON_TOKEN_KEY_UNKNOWN)


def test_id_token_is_not_an_access_token(server, issuer):
    claims = issuer.claims(permissions=None, aud=CLIENT_ID, nonce="n-0S6_WzA2Mj")
    del claims["scope"]
    claims.update(name="Alice", email="alice@example.com")
    token = issuer.sign(claims)
    _assert_denied(server, token, R.REASON_TOKEN_NOT_ACCESS_TOKEN)
    hints = " ".join(_principal(server, token).hints)
    assert "ID token" in hints
    assert "access token" in hints


# --- precedence among claim faults ---------------------------------------------------------


def test_expired_wins_over_wrong_issuer(server, issuer):
    token = issuer.mint(exp_in=-600, iss="https://evil.example.com/")
    _assert_denied(server, token, R.REASON_TOKEN_EXPIRED)


def test_issuer_wins_over_audience(server, issuer):
    token = issuer.mint(iss="https://evil.example.com/", aud="https://billing.example.com")
    _assert_denied(server, token, R.REASON_TOKEN_ISSUER_MISMATCH)


def test_signature_checked_before_claims(server, issuer):
    # An expired token from the wrong issuer with a broken signature: the signature decides.
    token = issuer.mint(exp_in=-600, iss="https://evil.example.com/")
    header, payload, signature = token.split(".")
    flipped = signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")
    _assert_denied(server, f"{header}.{payload}.{flipped}", R.REASON_TOKEN_SIGNATURE_INVALID)


# --- Auth0's token shapes ------------------------------------------------------------------


def test_audience_as_string(server, issuer):
    assert _check(server, issuer.mint(permissions=["read:orders"], aud=AUDIENCE)).allowed


def test_audience_as_list_with_userinfo(server, issuer):
    token = issuer.mint(permissions=["read:orders"], aud=[issuer.url + "userinfo", AUDIENCE])
    assert _check(server, token).allowed


def test_bearer_prefix_is_tolerated(server, issuer):
    token = issuer.mint(permissions=["read:orders"])
    assert _check(server, "Bearer " + token).allowed
    assert _check(server, "bearer " + token).allowed
    assert _principal(server, "Bearer " + token).authenticated


def test_token_from_authorization_metadata(server, issuer):
    token = issuer.mint(permissions=["read:orders"])
    metadata = (("authorization", "Bearer " + token),)
    reply = server.stub.Check(
        R.CheckRequest(resource="/api/orders/1", action="GET"), metadata=metadata, timeout=10
    )
    assert reply.allowed
    assert reply.subject == "alice"
    principal = server.stub.GetPrincipal(R.GetPrincipalRequest(), metadata=metadata, timeout=10)
    assert principal.authenticated


def test_request_token_wins_over_metadata(server, issuer):
    good = issuer.mint(permissions=["read:orders"])
    metadata = (("authorization", "Bearer " + good),)
    reply = server.stub.Check(
        R.CheckRequest(token="garbage", resource="/api/orders/1", action="GET"), metadata=metadata, timeout=10
    )
    assert reply.reason == R.REASON_TOKEN_MALFORMED


def test_machine_token_scope_grants_read(server, issuer):
    token = issuer.mint(machine=True, permissions=None, scope="read:orders")
    reply = _check(server, token, "/api/orders/1", "GET")
    assert reply.allowed
    assert reply.subject == f"{CLIENT_ID}@clients"
    assert not _check(server, token, "/api/orders", "POST").allowed
    principal = _principal(server, token)
    assert principal.machine
    assert list(principal.scopes) == ["read:orders"]
    assert principal.client_id == CLIENT_ID


def test_user_token_scope_grants_nothing(server, issuer):
    token = issuer.mint(permissions=[], scope="openid read:orders")
    reply = _check(server, token)
    assert not reply.allowed
    assert reply.reason == R.REASON_NO_MATCHING_RULE


def test_namespaced_roles_claim(server, issuer):
    token = issuer.mint(permissions=[], roles=["admin"])
    assert _check(server, token, "/api/reports/2024/q1", "GET").allowed
    assert _check(server, token, "/api/admin/users", "POST").allowed
    assert list(_principal(server, token).roles) == ["admin"]
    # The bare claim name is not the configured roles claim.
    plain = issuer.sign(issuer.claims(permissions=[]) | {"roles": ["admin"]})
    assert not _check(server, plain, "/api/admin/users", "POST").allowed


def test_org_id(server, issuer):
    token = issuer.mint(permissions=["update:orders"], org_id="org_1")
    assert _principal(server, token).org_id == "org_1"
    same = _check(server, token, "/api/orders/7", "PUT", attributes=_struct(org_id="org_1", owner="bob"))
    assert same.allowed
    other = _check(server, token, "/api/orders/7", "PUT", attributes=_struct(org_id="org_2", owner="bob"))
    assert not other.allowed


# --- key rotation and JWKS outages ---------------------------------------------------------


def _fast_refetch(app: Any) -> None:
    app.keys.unknown_kid_cooldown = 0.2


def test_rotated_key_verifies_via_unknown_kid_refetch(make_server, own_issuer):
    srv = make_server(settings_for(own_issuer), configure=_fast_refetch)
    old = own_issuer.active
    assert _check(srv, own_issuer.mint(permissions=["read:orders"])).allowed
    time.sleep(0.3)  # past the unknown-kid cooldown of the initial fetch
    new = own_issuer.rotate()
    assert new != old
    fetches = own_issuer.fetches
    assert _check(srv, own_issuer.mint(permissions=["read:orders"])).allowed
    assert own_issuer.fetches == fetches + 1
    assert new in srv.app.keys.kids()
    # The old key is still published, so its tokens keep verifying.
    assert _check(srv, own_issuer.mint(permissions=["read:orders"], kid=old)).allowed


def test_removed_key_stops_verifying_after_refresh(make_server, own_issuer):
    srv = make_server(settings_for(own_issuer))
    old = own_issuer.active
    token = own_issuer.mint(permissions=["read:orders"])
    assert _check(srv, token).allowed
    assert srv.app.verifier.cache.get(token) is not None
    own_issuer.rotate()
    own_issuer.remove_key(old)
    assert srv.app.keys.refresh()
    assert srv.app.verifier.cache.get(token) is None
    reply = _check(srv, token)
    assert not reply.allowed
    assert reply.reason == R.REASON_TOKEN_KEY_UNKNOWN
    assert _check(srv, own_issuer.mint(permissions=["read:orders"])).allowed


def test_jwks_outage_keeps_cached_keys(make_server, own_issuer):
    srv = make_server(settings_for(own_issuer), configure=_fast_refetch)
    cached = own_issuer.mint(permissions=["read:orders"])
    assert _check(srv, cached).allowed
    own_issuer.down = True
    assert not srv.app.keys.refresh()
    # A token seen before and a fresh one signed by a cached key both verify.
    assert _check(srv, cached).allowed
    assert _check(srv, own_issuer.mint(sub="bob", permissions=["read:orders"])).allowed
    # A key published during the outage cannot be fetched: deny, never an error.
    own_issuer.rotate()
    time.sleep(0.3)
    fetches = own_issuer.fetches
    reply = _check(srv, own_issuer.mint(permissions=["read:orders"]))
    assert not reply.allowed
    assert reply.reason == R.REASON_TOKEN_KEY_UNKNOWN
    assert own_issuer.fetches == fetches + 1  # it did try


def test_unknown_kid_refetch_is_rate_limited(make_server, own_issuer):
    srv = make_server(
        settings_for(own_issuer), configure=lambda app: setattr(app.keys, "unknown_kid_cooldown", 1.0)
    )
    time.sleep(1.1)  # past the cooldown of the initial fetch
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fetches = own_issuer.fetches
    started = time.monotonic()
    for n in range(10):
        token = jwt.encode(own_issuer.claims(), stranger, algorithm="RS256", headers={"kid": f"unknown-{n}"})
        assert _check(srv, token).reason == R.REASON_TOKEN_KEY_UNKNOWN
    cooldowns = int((time.monotonic() - started) / srv.app.keys.unknown_kid_cooldown)
    # Ten unknown kids in a burst: one fetch, not ten (one more per cooldown on a stalled machine).
    assert 1 <= own_issuer.fetches - fetches <= 1 + cooldowns < 10


# --- the token is never logged -------------------------------------------------------------


def test_token_never_logged(server, issuer, caplog):
    good = issuer.mint(permissions=["read:orders"], org_id="org_1")
    hs256_header = _json_b64({"alg": "HS256", "kid": issuer.active})
    tokens = {
        "good": good,
        "expired": issuer.mint(exp_in=-600),
        "wrong-aud": issuer.mint(aud="https://billing.example.com"),
        "tampered": good.rsplit(".", 1)[0] + "." + "A" * len(good.rsplit(".", 1)[1]),
        "hs256": f"{hs256_header}.{_json_b64(issuer.claims())}.c2lnbmF0dXJl",
        "not-json": "eyJub3QganNvbg.eyJub3QganNvbg.c2ln",
    }
    with caplog.at_level(logging.DEBUG):
        for token in tokens.values():
            _check(server, token, explain=True)
            _principal(server, token)
            server.stub.BatchCheck(
                R.BatchCheckRequest(
                    token=token, items=[R.BatchCheckItem(resource="/api/orders/1", action="GET")]
                ),
                timeout=10,
            )
            server.stub.GetVisibility(R.GetVisibilityRequest(token=token, prefix="ui:"), timeout=10)
        assert _check(server, good).allowed
        server.app.service.decision_log.flush()
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "decision id=" in logged  # the capture did see the server's log lines
    for name, token in tokens.items():
        signature = token.rsplit(".", 1)[1]
        assert token not in logged, name
        if len(signature) > 8:
            assert signature not in logged, name


def test_oversized_token_is_malformed(server):
    assert _check(server, "x" * 20_000).reason == R.REASON_TOKEN_MALFORMED


def test_a_refusal_repeats_at_most_64_characters_of_the_callers_header(server, issuer):
    # The message goes back to the caller and into logs: a 10,000-character kid or alg was all
    # of it, every call.
    long_kid = "k" * 10_000
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = issuer.claims(permissions=["read:orders"])
    unknown = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": long_kid})
    # No library signs with an unknown alg: the header is written by hand (the signature is never read).
    header = base64.urlsafe_b64encode(json.dumps({"alg": "X" * 10_000, "kid": "k"}).encode()).rstrip(b"=")
    odd_alg = header.decode() + "." + unknown.split(".", 1)[1]
    for token, reason in (
        (unknown, R.REASON_TOKEN_KEY_UNKNOWN),
        (odd_alg, R.REASON_TOKEN_ALGORITHM_NOT_ALLOWED),
    ):
        reply = _check(server, token)
        assert reply.reason == reason
        assert "k" * 64 in reply.message or "X" * 64 in reply.message
        assert "k" * 65 not in reply.message and "X" * 65 not in reply.message
        assert len(reply.message) < 200
