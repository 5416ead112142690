"""The decision and token caches are bounded by bytes as well as entries.

Entries alone bound nothing: one key keeps a request's attributes whole and one token's
principal keeps its claims whole. Each cache estimates what an entry holds (an
over-estimate, authz.sizing) and starts over (decisions) or evicts the oldest (tokens)
before the estimate passes its byte budget. The memory really held is measured with
tracemalloc against that budget.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

from authz.app import demo_policy_dir
from authz.engine import build_snapshot, load_snapshot
from authz.engine.cache import DecisionCache
from authz.engine.policyfiles import PolicySource
from authz.engine.reachmemo import MAX_MEMO_NAMES
from authz.principal import Principal, principal_from_claims
from authz.tokens.cache import TokenCache
from tests.policy_dirs import ALLOW, model

DELETER = Principal("alice", permissions=("delete:orders",), org_id="org_1")
BUDGET = 2 * 1024 * 1024


def _held(fill: Callable[[], Any]) -> int:
    """The bytes still allocated after `fill` returns (what the cache kept of what it built)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fill()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _large_attributes(n: int) -> dict[str, Any]:
    # Just under the per-item bounds: many values and a long string, unique per request.
    return {
        "status": "draft",
        "note": f"{n:06d}" + "n" * 8000,
        **{f"k{i}": float(n * 1000 + i) for i in range(200)},
    }


def test_decision_cache_stays_within_its_byte_budget() -> None:
    snapshot = load_snapshot(demo_policy_dir())
    cache = snapshot.cache = DecisionCache(max_entries=1_000_000, max_bytes=BUDGET)

    def fill() -> None:
        for n in range(400):
            decision = snapshot.decide(DELETER, f"/api/orders/{n}", "DELETE", _large_attributes(n))
            assert decision.allowed
            assert cache.approx_bytes <= BUDGET

    held = _held(fill)
    # 400 such keys hold about 16 MB; the budget keeps a fraction of them.
    assert held <= BUDGET * 1.1, held
    assert cache.stats.misses.value == 400


def test_a_request_at_the_attribute_bounds_is_cached_by_default() -> None:
    snapshot = load_snapshot(demo_policy_dir())
    cache = snapshot.cache = DecisionCache()
    first = snapshot.decide(DELETER, "/api/orders/1", "DELETE", _large_attributes(1))
    assert snapshot.decide(DELETER, "/api/orders/1", "DELETE", _large_attributes(1)) is first
    assert (cache.stats.hits.value, cache.stats.misses.value) == (1, 1)


def test_an_entry_larger_than_its_share_is_answered_but_not_kept() -> None:
    snapshot = load_snapshot(demo_policy_dir())
    cache = snapshot.cache = DecisionCache(max_bytes=256 * 1024)  # entries up to 4 KiB
    for _ in range(2):
        assert snapshot.decide(
            DELETER, "/api/orders/1", "DELETE", {"status": "draft", "n": "x" * 8192}
        ).allowed
    assert (cache.stats.hits.value, cache.stats.misses.value, cache.approx_bytes) == (0, 2, 0)
    snapshot.decide(DELETER, "/api/orders/1", "DELETE", {"status": "draft"})
    assert 0 < cache.approx_bytes <= 4096


def _principal(n: int) -> Principal:
    claims = {"sub": f"user{n}", "exp": 2_000_000_000, "permissions": [f"perm:{n}:{i}" for i in range(100)]}
    return principal_from_claims(claims)


def test_token_cache_evicts_the_oldest_to_stay_within_its_byte_budget() -> None:
    cache = TokenCache(max_entries=100_000, max_bytes=BUDGET, clock=lambda: 0.0)

    def fill() -> None:
        for n in range(300):
            cache.put(f"token-{n}-" + "t" * 4000, _principal(n), valid_until=1.0)
            assert cache.approx_bytes <= BUDGET

    held = _held(fill)
    assert held <= BUDGET * 1.1, held
    newest = cache.get("token-299-" + "t" * 4000)
    assert newest is not None and newest.id == "user299"
    assert cache.get("token-0-" + "t" * 4000) is None


def test_token_cache_accounts_for_replaced_expired_and_cleared_entries() -> None:
    now = [0.0]
    cache = TokenCache(max_bytes=BUDGET, clock=lambda: now[0])
    cache.put("a", _principal(1), valid_until=10.0)
    one = cache.approx_bytes
    cache.put("a", _principal(1), valid_until=10.0)
    assert cache.approx_bytes == one
    cache.put("b", _principal(2), valid_until=5.0)
    now[0] = 6.0
    assert cache.get("b") is None and cache.approx_bytes == one
    cache.clear()
    assert cache.approx_bytes == 0


RESOURCE_ROLES = model(
    "g(r.sub, p.sub) && g2(r.obj, p.obj) && r.act == p.act",
    ALLOW,
    policy="sub, obj, act",
    roles="g = _, _\ng2 = _, _",
)


def test_role_closures_of_names_requests_choose_stay_within_their_budget() -> None:
    # Casbin's resource-roles model: g2 reads r.obj, so callers choose whose closure is
    # memoised. 2,000 documents in one group that belongs to 2,000 others: each closure holds
    # 2,002 names, and the memo kept them all (4 million names, about 130 MB; the bound is
    # twice the budget of 1 million).
    documents, groups = 2000, 2000
    lines = [f"g2, doc{i}, shared" for i in range(documents)] + [
        f"g2, shared, group{j}" for j in range(groups)
    ]
    snapshot = build_snapshot(
        PolicySource(RESOURCE_ROLES, (("policy.csv", "p, reader, group7, read\n" + "\n".join(lines) + "\n"),))
    )
    snapshot.cache = None  # what the role graph keeps, not the decision cache
    reader = Principal("ann", permissions=("reader",))

    def fill() -> None:
        for i in range(documents):
            assert snapshot.decide(reader, f"doc{i}", "read").allowed

    held = _held(fill)
    assert held <= 2 * MAX_MEMO_NAMES * 32, held
