"""Starting the peer services: the pycasbin service (two enforcers) and the node-casbin service.

Each runs as its own process on a free loopback port with the same policy directory, the
same JWKS URL, issuer, audience and roles claim as `authz serve`. The Node service's
packages are installed here, by the bench's own set-up (`npm ci`), never by `make test`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from bench import serving
from bench.profile import Profile
from tests.issuer import AUDIENCE, ROLES_CLAIM, Issuer

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
# Name shown in the tables -> how the service is started.
PEERS = {
    "pycasbin Enforcer": ("python", "Enforcer"),
    "pycasbin SyncedEnforcer": ("python", "SyncedEnforcer"),
    "node-casbin": ("node", ""),
}


def node_setup() -> str | None:
    """Install the Node service's packages when missing or older than the lock file; None, or why not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node/npm not installed"
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if installed.is_file() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return None
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        return f"npm ci failed: {done.stderr.strip()[-500:]}"
    return None


def _command(peer: str, issuer: Issuer, policy: Path, port: int) -> list[str]:
    runtime, enforcer = PEERS[peer]
    common = [
        f"--port={port}",
        f"--policy={policy}",
        f"--jwks-url={issuer.jwks_url}",
        f"--issuer={issuer.url}",
        f"--audience={AUDIENCE}",
        f"--roles-claim={ROLES_CLAIM}",
    ]
    if runtime == "node":
        return ["node", str(NODE_DIR / "server.mjs"), *common]
    return [sys.executable, str(HERE / "pycasbin_service.py"), *common, f"--enforcer={enforcer}"]


def wait_ready(address: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 300.0) -> None:
    """Until a Check (with no token) gets an answer: the peers serve no health service.

    A large policy takes the peers a while to load before they listen.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"peer exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"peer at {address} not answering after {timeout} s:\n{log.read_text()[-2000:]}"
            )
        with grpc.insecure_channel(address) as channel:
            try:
                authz_pb2_grpc.AuthorizationServiceStub(channel).Check(authz_pb2.CheckRequest(), timeout=2)
                return
            except grpc.RpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    return
        time.sleep(0.2)


@contextmanager
def peer_serve(profile: Profile, peer: str, issuer: Issuer, policy: Path) -> Iterator[str]:
    """Run one peer service until the block ends; yields its address."""
    port = serving.free_port()
    log = profile.workdir / f"peer-{PEERS[peer][0]}-{PEERS[peer][1] or 'casbin'}-{port}.log"
    address = f"127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            _command(peer, issuer, policy, port), cwd=serving.REPO, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_ready(address, process, log)
        yield address
    finally:
        serving.stop(process)
