"""The soak (tests/soak.py) for a short while: 20 s, or 60 s when CI is set; `make soak` runs 10 minutes."""

from __future__ import annotations

import os

from tests.soak import run_soak


def test_soak_no_failed_rpc_and_flat_memory(tmp_path):
    seconds = 60 if os.environ.get("CI") else 20
    report = run_soak(seconds, tmp_path)
    print(report.table())
    assert report.passed, report.table()
    # The run really exercised what it claims to (a short run still has each fault once).
    assert report.rewrites >= seconds - 2
    assert report.key_rotations >= 1 and report.outages >= 1 and report.cert_rotations >= 1
    assert min(t.calls for t in report.tallies.values()) > 0
