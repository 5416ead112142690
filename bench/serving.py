"""Servers for the RPC sections: a policy, tokens, and a server process to measure.

Servers and load generators run as separate processes (started with exec, never forked
from this one), so the bench process's own threads and gRPC objects touch neither.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.profile import Profile
from bench.workloads import build, element
from tests.issuer import AUDIENCE, ROLES_CLAIM, Issuer

REPO = Path(__file__).resolve().parent.parent
TOKENS = 20
PERMISSIONS_PER_TOKEN = 12
BATCH_ITEMS = 100
VISIBILITY_ELEMENTS = 50
CHECK_REQUESTS = 500


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_payload(profile: Profile, issuer: Issuer) -> tuple[Path, Path]:
    """The service policy directory and the load generator's requests (tokens, items, elements)."""
    workload = build("service", profile.rpc_policy_lines, CHECK_REQUESTS + BATCH_ITEMS)
    policy = workload.write(profile.workdir / "service-policy")
    rng = random.Random(11)
    tokens = [
        issuer.mint(f"auth0|bench{i}", permissions=rng.sample(workload.permissions, PERMISSIONS_PER_TOKEN))
        for i in range(TOKENS)
    ]
    pairs = [(r.obj, r.act) for r in workload.requests]
    collections = len(workload.permissions) // 3
    payload = {
        "tokens": tokens,
        "checks": pairs[:CHECK_REQUESTS],
        "batch": pairs[CHECK_REQUESTS : CHECK_REQUESTS + BATCH_ITEMS],
        "elements": [element(rng.randrange(collections)) for _ in range(VISIBILITY_ELEMENTS)],
    }
    path = profile.workdir / "payload.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    return policy, path


def server_env(issuer: Issuer, policy: Path, port: int, workers: int = 1, store: str = "") -> dict[str, str]:
    """`authz serve` settings as AUTHZ_* variables (none inherited from the caller's environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    env.update(
        AUTHZ_LISTEN=f"127.0.0.1:{port}",
        AUTHZ_POLICY_DIR=str(policy),
        AUTHZ_ISSUER=issuer.url,
        AUTHZ_AUDIENCE=AUDIENCE,
        AUTHZ_JWKS_URL=issuer.jwks_url,
        AUTHZ_ROLES_CLAIM=ROLES_CLAIM,
        AUTHZ_WORKERS=str(workers),
    )
    if store:
        env["AUTHZ_POLICY_STORE"] = store
    return env


def wait_serving(address: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    """Until several fresh connections in a row report SERVING (with workers, each may reach another)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 8:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"server at {address} not SERVING after {timeout} s:\n{log.read_text()[-2000:]}"
            )
        with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            try:
                status = (
                    health_pb2_grpc.HealthStub(channel)
                    .Check(health_pb2.HealthCheckRequest(), timeout=1)
                    .status
                )
            except grpc.RpcError:
                status = health_pb2.HealthCheckResponse.UNKNOWN
        if status == health_pb2.HealthCheckResponse.SERVING:
            streak += 1
        else:
            streak = 0
            time.sleep(0.1)


@contextmanager
def server_process(command: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """Run a server command until the block ends (SIGTERM, then SIGKILL after 20 s); yields its address."""
    address = f"127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_serving(address, process, log)
        yield address
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def authz_serve(
    profile: Profile, issuer: Issuer, policy: Path, *, workers: int = 1, store: str = ""
) -> Iterator[str]:
    """`authz serve` (the real command) on a free port, from `policy` (or the `store` DSN); its address."""
    port = free_port()
    command = [sys.executable, "-m", "authz.cli.main", "serve"]
    log = profile.workdir / f"authz-serve-{port}.log"
    with server_process(command, server_env(issuer, policy, port, workers, store), port, log) as address:
        yield address


def load(profile: Profile, address: str, kind: str, payload: Path) -> dict[str, Any]:
    """Run the load generator (its own process) against `address`; its JSON result."""
    command = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--target",
        address,
        "--kind",
        kind,
        "--payload",
        str(payload),
        "--seconds",
        str(profile.rpc_seconds),
        "--warmup",
        str(profile.rpc_warmup_s),
        "--threads",
        str(profile.rpc_threads),
        "--channels",
        str(profile.rpc_channels),
    ]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True, timeout=120)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result
