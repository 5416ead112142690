"""How many examples the property tests of untrusted policy text try.

Brief in `make test`; `AUTHZ_FUZZ_EXAMPLES=N` sets the count, and `HYPOTHESIS_PROFILE=fuzz`
without it runs a long campaign.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG_CAMPAIGN = 2000


def fuzz_examples(default: int = 60) -> int:
    """Examples per property: AUTHZ_FUZZ_EXAMPLES, else LONG_CAMPAIGN under the fuzz profile."""
    if given := os.environ.get("AUTHZ_FUZZ_EXAMPLES"):
        return int(given)
    return LONG_CAMPAIGN if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else default


FUZZ = settings(
    max_examples=fuzz_examples(),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
