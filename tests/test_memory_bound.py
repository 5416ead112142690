"""Resident memory of a real `authz serve` stays bounded under large-attribute Checks (issue 10).

Before the per-item bounds a valid token could grow the decision cache without limit: it
kept each request's attributes whole (1 MiB attributes: +400 MiB after 400 calls). Here a
subprocess server is warmed up, then gets 1,000 distinct Checks whose attributes sit just
under the per-item bounds and 160 with 1 MiB attributes (refused with INVALID_ARGUMENT).
Its VmRSS (from /proc) may grow by at most the decision cache's byte budget plus 48 MiB
of slack for the allocator and gRPC's buffers (measured: about 45 MiB in all on 3.11, 101.6
MiB once on 3.13, whose allocator keeps more; the same run grew 211 MiB before the bounds).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from authz.app import demo_policy_dir
from authz.engine.cache import MAX_BYTES as DECISION_CACHE_BYTES
from tests.issuer import AUDIENCE, Issuer
from tests.serveproc import free_port

R = authz_pb2
MiB = 1024 * 1024
RSS_GROWTH_BOUND = DECISION_CACHE_BYTES + 48 * MiB

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


@pytest.fixture
def served(tmp_path: Path, issuer: Issuer) -> Iterator[tuple[subprocess.Popen[bytes], Any]]:
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    env |= {
        "AUTHZ_ISSUER": issuer.url,
        "AUTHZ_AUDIENCE": AUDIENCE,
        "AUTHZ_POLICY_DIR": str(demo_policy_dir()),
    }
    with (tmp_path / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "authz.cli.main", "serve", "--listen", address],
            cwd=tmp_path,
            env=env,
            stderr=log,
        )
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 8 * MiB)])
    try:
        grpc.channel_ready_future(channel).result(timeout=60)
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while (
            health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            != health_pb2.HealthCheckResponse.SERVING
        ):
            assert time.monotonic() < deadline, "authz serve did not become SERVING"
            time.sleep(0.05)
        yield process, authz_pb2_grpc.AuthorizationServiceStub(channel)
    finally:
        channel.close()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _attributes(n: int) -> struct_pb2.Struct:
    """Distinct per n, just under the per-item bounds: a 16 KiB string, or 250 values."""
    out = struct_pb2.Struct()
    if n % 2:
        # "status" + "draft" + "note" = 15 bytes; the note fills the rest up to 16384.
        out.update({"status": "draft", "note": f"{n:08d}".ljust(16384 - 15, "n")})
    else:
        out.update({"status": "draft", **{f"k{i:03d}": float(n * 1000 + i) for i in range(249)}})
    return out


def test_large_attribute_checks_keep_resident_memory_bounded(served, issuer):
    process, stub = served
    token = issuer.mint(permissions=["delete:orders"])

    def check(n: int, attributes: struct_pb2.Struct) -> Any:
        return stub.Check(
            R.CheckRequest(token=token, resource=f"/api/orders/{n}", action="DELETE", attributes=attributes),
            timeout=30,
        )

    for n in range(50):
        assert check(n, _attributes(n)).allowed
    baseline = _rss(process.pid)

    for n in range(1_000, 2_000):
        assert check(n, _attributes(n)).allowed
    for n in range(160):
        huge = struct_pb2.Struct()
        huge.update({"status": "draft", "note": f"{n:08d}".ljust(MiB, "h")})
        with pytest.raises(grpc.RpcError) as refused:
            check(n, huge)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    grown = _rss(process.pid) - baseline

    assert grown < RSS_GROWTH_BOUND, (
        f"RSS grew {grown / MiB:.1f} MiB (bound {RSS_GROWTH_BOUND / MiB:.0f} MiB)"
    )
    assert process.poll() is None
