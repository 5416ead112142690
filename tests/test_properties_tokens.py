"""Property tests for token headers and payloads through the real gRPC server.

Tokens are assembled by hand from random or forged headers (alg none, HS256 keyed with
the issuer's public key, unknown kid, jku / x5u / crit / b64=false, non-JSON, nested),
random payloads (extra claims, wrong types, exp / nbf / iat as raw JSON such as 1e999 or
NaN) and signatures (genuine RS256 by the issuer's key, HMAC, none, random, garbled).
Whatever comes in, Check and GetPrincipal answer without an RPC error, and allow only a
token the issuer really signed with RS256 under its published kid, whose claims hold.
HYPOTHESIS_PROFILE=fuzz runs many more examples (tests/conftest.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import event, given
from hypothesis import strategies as st

from authz.api.v1 import authz_pb2
from tests.issuer import AUDIENCE, Issuer

R = authz_pb2
RESOURCE, ACTION, PERMISSION = "/api/orders/1", "GET", "read:orders"
# Raw JSON texts for a time claim; the finite ones far from now in either direction.
RAW_TIMES = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1" + "0" * 400,
    "1e308",
    "0",
    '"soon"',
    "null",
]
SIGNATURES = ("genuine", "hs256-public-key", "none", "random", "garbled")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _is_finite_time(raw: str) -> bool:
    try:
        value = json.loads(raw)
    except ValueError:
        return False
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


extra_claims = st.dictionaries(
    st.text(min_size=1, max_size=10).map(lambda k: "x-" + k), json_values, max_size=3
)


@dataclass
class Forged:
    """A token's three parts as sent, and what a correct verifier may conclude from them."""

    token: str
    trusted_signature: bool  # the issuer's key signed exactly these bytes with RS256 under its kid
    plain: bool  # nothing forged: an unaltered valid token


@st.composite
def headers(draw: st.DrawFn, kid: str) -> tuple[str, bool, bool]:
    """A header segment; whether it names RS256 and the published kid; whether it is nothing more."""
    kind = draw(st.sampled_from(["object"] * 6 + ["non-json", "huge", "garbled", "nested"]))
    if kind == "non-json":
        return b64(draw(st.binary(max_size=40))), False, False
    if kind == "huge":
        return b64(b'{"alg":"RS256","kid":"' + b"k" * draw(st.integers(4_000, 20_000)) + b'"}'), False, False
    if kind == "garbled":
        return draw(st.text(alphabet="!@#$%^&*()=+/ \t\u00e9", min_size=1, max_size=30)), False, False
    if kind == "nested":
        inner = b64(json.dumps({"alg": "RS256", "kid": kid}).encode())
        return b64(json.dumps({"alg": "RS256", "kid": kid, "cty": "JWT", "jwt": inner}).encode()), True, False
    header: dict[str, Any] = {
        "alg": draw(
            st.sampled_from(["RS256"] * 6 + ["none", "None", "HS256", "RS384", "PS256", "ES256", ""])
        ),
        "kid": draw(st.sampled_from([kid] * 6 + ["unknown-kid", "", None, 7, ["x"]])),
    }
    if draw(st.booleans()):
        header["typ"] = draw(st.sampled_from(["JWT", "at+jwt", "JWE", None]))
    extras = (
        {}
        if draw(st.booleans())
        else draw(
            st.dictionaries(
                st.sampled_from(["jku", "x5u", "crit", "b64", "x5c", "jwk", "zip", "enc", "extra"]),
                st.sampled_from(
                    [
                        "http://127.0.0.1:1/jwks.json",
                        ["b64"],
                        ["exp"],
                        False,
                        ["MIIB"],
                        {"kty": "oct", "k": "c2VjcmV0"},
                        "DEF",
                        "A256GCM",
                    ]
                )
                | json_values,
                max_size=3,
            )
        )
    )
    header.update(extras)
    trusted = header["alg"] == "RS256" and header["kid"] == kid
    plain = trusted and not extras and header.get("typ", "JWT") == "JWT"
    return b64(json.dumps(header).encode()), trusted, plain


@st.composite
def payloads(draw: st.DrawFn, issuer: Issuer) -> tuple[str, bool]:
    """A payload segment and whether its claims are valid for the service."""
    kind = draw(st.sampled_from(["claims", "claims", "claims", "claims", "non-json", "array", "huge"]))
    if kind == "non-json":
        return b64(draw(st.binary(max_size=60))), False
    if kind == "array":
        return b64(b"[1, 2, 3]"), False
    if kind == "huge":
        return b64(b'{"sub":"' + b"s" * draw(st.integers(12_000, 30_000)) + b'"}'), False
    claims: dict[str, Any] = issuer.claims(permissions=[PERMISSION])
    valid = True
    raw_times: dict[str, str] = {}
    for name in ("exp", "nbf", "iat"):
        if draw(st.integers(0, 3)) == 0:
            raw = draw(st.sampled_from(RAW_TIMES))
            raw_times[name] = raw
            claims[name] = f"__{name}__"
            if name == "exp" and not (_is_finite_time(raw) and json.loads(raw) > time.time() + 60):
                valid = False
            if (
                name == "nbf"
                and raw != "null"
                and not (_is_finite_time(raw) and json.loads(raw) < time.time() - 60)
            ):
                valid = False
            if name == "iat" and raw != "null" and not _is_finite_time(raw):
                valid = False
    for name in draw(st.lists(st.sampled_from(["iss", "aud", "sub", "exp", "permissions"]), max_size=2)):
        claims[name] = draw(json_values)
        valid = False  # a replaced claim may still happen to be valid; only "no false allow" is checked
    claims.update(draw(extra_claims))
    text = json.dumps(claims)
    for name, raw in raw_times.items():
        text = text.replace(f'"__{name}__"', raw)
    return b64(text.encode()), valid


@st.composite
def forged_tokens(draw: st.DrawFn, issuer: Issuer) -> Forged:
    if draw(st.integers(0, 3)) == 0:
        # The control branch: a genuine token with harmless extra claims must be allowed.
        claims = {**draw(extra_claims), **issuer.claims(permissions=[PERMISSION])}
        return Forged(issuer.sign(claims), True, True)
    header, header_trusted, header_plain = draw(headers(issuer.active))
    payload, claims_valid = draw(payloads(issuer))
    signing_input = f"{header}.{payload}".encode()
    how = draw(st.sampled_from(("genuine",) * 4 + SIGNATURES))
    key = issuer.keys[issuer.active]
    if how == "genuine":
        signature = b64(key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256()))
    elif how == "hs256-public-key":
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        signature = b64(hmac.new(public, signing_input, hashlib.sha256).digest())
    elif how == "none":
        signature = ""
    elif how == "random":
        signature = b64(draw(st.binary(min_size=1, max_size=300)))
    else:
        signature = draw(st.text(alphabet="!*=+/\u00e9 ", min_size=1, max_size=20))
    parts = [header, payload, signature]
    reshaped = draw(st.integers(0, 9)) == 0
    if reshaped:
        parts = draw(st.sampled_from([parts[:2], [*parts, "extra"], [*parts, "a", "b"], ["", "", ""]]))
    trusted = how == "genuine" and header_trusted and not reshaped
    return Forged(".".join(parts), trusted, trusted and header_plain and claims_valid)


def _ask(server: Any, token: str) -> tuple[Any, Any]:
    try:
        check = server.stub.Check(R.CheckRequest(token=token, resource=RESOURCE, action=ACTION), timeout=20)
        principal = server.stub.GetPrincipal(R.GetPrincipalRequest(token=token), timeout=20)
    except grpc.RpcError as error:
        pytest.fail(f"RPC error {error.code()}: {error.details()}")
    return check, principal


@given(data=st.data())
def test_no_allow_without_a_valid_signature_and_no_rpc_error(server, issuer, data):
    forged = data.draw(forged_tokens(issuer))
    check, principal = _ask(server, forged.token)
    event(f"allowed={check.allowed} trusted={forged.trusted_signature} plain={forged.plain}")
    if check.allowed or principal.authenticated:
        assert forged.trusted_signature, (R.Reason.Name(check.reason), check.message)
    if check.allowed:
        assert principal.authenticated
    else:
        assert check.reason != R.REASON_ALLOWED
    if forged.plain:
        assert check.allowed, (R.Reason.Name(check.reason), check.message)


def _signed_with_raw_times(issuer: Issuer, **raw: str) -> str:
    claims = issuer.claims(permissions=[PERMISSION])
    for name in raw:
        claims[name] = f"__{name}__"
    text = json.dumps(claims)
    for name, value in raw.items():
        text = text.replace(f'"__{name}__"', value)
    header = b64(json.dumps({"alg": "RS256", "kid": issuer.active, "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(text.encode())}".encode()
    signature = issuer.keys[issuer.active].sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode()}.{b64(signature)}"


@pytest.mark.parametrize(
    "raw",
    [
        {"exp": "NaN"},
        {"exp": "Infinity"},
        {"exp": "1e999"},
        {"exp": "1" + "0" * 400},
        {"nbf": "NaN"},
        {"nbf": "-1e999"},
        {"iat": "1e999"},
        {"iat": '"yesterday"'},
    ],
    ids=lambda raw: ",".join(f"{k}={v[:8]}" for k, v in raw.items()),
)
def test_a_signed_token_with_a_non_finite_time_claim_is_malformed(server, issuer, raw):
    # NaN compares false with every time, so `now > exp` never held: the token never expired.
    check, principal = _ask(server, _signed_with_raw_times(issuer, **raw))
    assert not check.allowed
    assert check.reason == R.REASON_TOKEN_MALFORMED
    assert "finite numbers" in check.message
    assert (principal.authenticated, principal.reason) == (False, R.REASON_TOKEN_MALFORMED)


def test_the_same_token_with_finite_times_is_allowed(server, issuer):
    # The control: the hand-built token is accepted once its times are ordinary numbers.
    now = int(time.time())
    token = _signed_with_raw_times(issuer, exp=str(now + 300), nbf=str(now - 5), iat=f"{now}.5")
    check, principal = _ask(server, token)
    assert check.allowed and principal.authenticated
    assert AUDIENCE in issuer.claims()["aud"]


def test_a_far_future_exp_is_reported_as_the_latest_timestamp(server, issuer):
    # 1e308 is finite: the token is valid; its expiry cannot be a Timestamp as such.
    check, principal = _ask(server, _signed_with_raw_times(issuer, exp="1e308"))
    assert check.allowed and principal.authenticated
    assert principal.expires_at.ToJsonString() == "9999-12-31T23:59:59Z"
    visibility = server.stub.GetVisibility(
        R.GetVisibilityRequest(token=_signed_with_raw_times(issuer, exp="1e308"), prefix="ui:"), timeout=20
    )
    assert visibility.valid_until.ToJsonString() == "9999-12-31T23:59:59Z"


def test_a_signed_payload_nested_thousands_deep_is_malformed(server, issuer):
    # json.loads raises RecursionError, not ValueError, for arrays nested this deep.
    header = b64(json.dumps({"alg": "RS256", "kid": issuer.active}).encode())
    signing_input = f"{header}.{b64(b'[' * 5000 + b']' * 5000)}".encode()
    signature = issuer.keys[issuer.active].sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    check, principal = _ask(server, f"{signing_input.decode()}.{b64(signature)}")
    assert (check.allowed, check.reason) == (False, R.REASON_TOKEN_MALFORMED)
    assert check.message == "token payload is not a JSON object"
    assert principal.reason == R.REASON_TOKEN_MALFORMED
