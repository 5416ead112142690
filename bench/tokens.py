"""Token verification: the first sight of a token against the same token again (the verified-token cache)."""

from __future__ import annotations

from typing import Any

from authz.tokens import KeySet, TokenSettings, TokenVerifier
from bench.profile import Profile
from bench.report import Report
from bench.stats import ratio, summary_us, timed_calls
from tests.issuer import AUDIENCE, ROLES_CLAIM, Issuer

MIN_SPEEDUP = 10.0
PERMISSIONS = [f"{verb}:c{k}" for k in range(4) for verb in ("read", "write", "admin")]


def mint_tokens(issuer: Issuer, count: int) -> list[str]:
    """Distinct Auth0-shaped access tokens (one per user, a dozen permissions and a role each)."""
    return [issuer.mint(f"auth0|user{i}", permissions=PERMISSIONS, roles=["role1"]) for i in range(count)]


def run(profile: Profile, report: Report) -> None:
    """Median and p99 of TokenVerifier.verify on new tokens and on one repeated token."""
    issuer = Issuer()
    try:
        keys = KeySet(issuer.jwks_url)
        if not keys.refresh():
            raise RuntimeError(f"cannot fetch {issuer.jwks_url}")
        verifier = TokenVerifier(TokenSettings((issuer.url,), (AUDIENCE,), roles_claim=ROLES_CLAIM), keys)
        tokens = mint_tokens(issuer, profile.token_count + 1)
        budget = profile.authz_budget_s
        n = profile.token_count
        first = [ns for *_, ns in timed_calls(verifier.verify, tokens[:n], budget_s=budget, min_n=n, max_n=n)]
        repeated_token = tokens[n]
        verifier.verify(repeated_token)
        repeated = [
            ns
            for *_, ns in timed_calls(
                verifier.verify, [repeated_token] * (n * 10), budget_s=budget, min_n=n, max_n=n * 10
            )
        ]
    finally:
        issuer.close()
    data: dict[str, Any] = {"first": summary_us(first), "repeated": summary_us(repeated)}
    data["speedup"] = ratio(data["first"]["median_us"], data["repeated"]["median_us"])
    report.target("token: repeated vs first sight (median)", data["speedup"], MIN_SPEEDUP, at_least=True)
    report.section(
        "tokens",
        "Token verification (µs; RS256, JWKS from a local HTTP server)",
        ["token", "median", "p99", "samples"],
        [[k, v["median_us"], v["p99_us"], v["samples"]] for k, v in data.items() if isinstance(v, dict)],
        data,
    )
    report.note(f"repeated token: {data['speedup']:.1f}x faster than a new one")
