"""Servers for the RPC sections: a policy, tokens, and a server process to measure.

Servers and load generators run as separate processes (started with exec, never forked
from this one), so the bench process's own threads and gRPC objects touch neither.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ParamSpec

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
# Valid for the longest section (the peers at 100,000 lines take minutes per size).
TOKEN_LIFETIME_S = 3600

P = ParamSpec("P")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_ROUTE = re.compile(r"^(/api/c\d+)(?:/\d+)?(/history)?$")


def check_templates(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The route requests as templates whose `{n}` the load generator fills with a fresh id.

    A collection's own path (`/api/c5`) becomes an item path, so every call can name a
    resource no call named before; UI elements (a fixed set of names) are left out.
    """
    templates = []
    for resource, action in pairs:
        if match := _ROUTE.match(resource):
            templates.append((f"{match[1]}/{{n}}{match[2] or ''}", action))
    return templates


def write_payload(
    profile: Profile, issuer: Issuer, lines: int | None = None, name: str = "service"
) -> tuple[Path, Path]:
    """The service policy directory and the load generator's requests (tokens, items, elements)."""
    workload = build("service", lines or profile.rpc_policy_lines, CHECK_REQUESTS + BATCH_ITEMS)
    policy = workload.write(profile.workdir / f"{name}-policy")
    rng = random.Random(11)
    tokens = [
        issuer.mint(
            f"auth0|bench{i}",
            permissions=rng.sample(workload.permissions, PERMISSIONS_PER_TOKEN),
            exp_in=TOKEN_LIFETIME_S,
        )
        for i in range(TOKENS)
    ]
    pairs = [(r.obj, r.act) for r in workload.requests]
    collections = len(workload.permissions) // 3
    payload = {
        "tokens": tokens,
        "checks": pairs[:CHECK_REQUESTS],
        "check_templates": check_templates(pairs[:CHECK_REQUESTS]),
        "batch": pairs[CHECK_REQUESTS : CHECK_REQUESTS + BATCH_ITEMS],
        "elements": [element(rng.randrange(collections)) for _ in range(VISIBILITY_ELEMENTS)],
    }
    path = profile.workdir / f"{name}-payload.json"
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
def started_process(
    command: list[str], env: dict[str, str], port: int, log: Path, cpu: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run a server command until the block ends (SIGTERM, then SIGKILL after 20 s); yields its
    address and its process.

    With `cpu`, the server and every thread it starts run on that core only (taskset execs
    the command, so the process is the server's own).
    """
    address = f"127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            pinned(command, cpu), env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_serving(address, process, log)
        yield address, process
    finally:
        stop(process)


def pinned(command: list[str], cpu: int | None) -> list[str]:
    """`command` run on core `cpu` only (taskset), or as it is."""
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def authz_process(
    profile: Profile,
    issuer: Issuer,
    policy: Path,
    *,
    workers: int = 1,
    store: str = "",
    cpu: int | None = None,
    **settings: str,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`authz serve` (the real command) on a free port, from `policy` (or the `store` DSN), with extra
    AUTHZ_* `settings`; yields its address and its process."""
    port = free_port()
    command = [sys.executable, "-m", "authz.cli.main", "serve"]
    log = profile.workdir / f"authz-serve-{port}.log"
    env = {**server_env(issuer, policy, port, workers, store), **settings}
    with started_process(command, env, port, log, cpu) as started:
        yield started


def _address_only(
    start: Callable[P, AbstractContextManager[tuple[str, subprocess.Popen[bytes]]]],
) -> Callable[P, AbstractContextManager[str]]:
    """`start` (its arguments as they are), yielding the server's address without its process."""

    @contextmanager
    def address_only(*args: P.args, **kwargs: P.kwargs) -> Iterator[str]:
        with start(*args, **kwargs) as (address, _):
            yield address

    return address_only


# `started_process` and `authz_process` for callers that need only the address.
server_process = _address_only(started_process)
authz_serve = _address_only(authz_process)


def load(
    profile: Profile,
    address: str,
    kind: str,
    payload: Path,
    *,
    max_calls: int = 0,
    timeout: float = 10.0,
    rate: float = 0.0,
    warmup: float | None = None,
    cpu: int | None = None,
) -> dict[str, Any]:
    """Run the load generator (its own process) against `address`; its JSON result."""
    command = [
        sys.executable,
        "-m",
        "bench.loadgen",
        f"--target={address}",
        f"--kind={kind}",
        f"--payload={payload}",
        f"--seconds={profile.rpc_seconds}",
        f"--warmup={profile.rpc_warmup_s if warmup is None else warmup}",
        f"--threads={profile.rpc_threads}",
        f"--channels={profile.rpc_channels}",
        f"--max-calls={max_calls}",
        f"--timeout={timeout}",
        f"--rate={rate}",
    ]
    limit = 120 + profile.rpc_threads * timeout
    out = subprocess.run(
        pinned(command, cpu), cwd=REPO, capture_output=True, text=True, check=True, timeout=limit
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result
