"""`authz serve --workers N`: pre-forked processes sharing one port, stopped together.

Each test runs the real command in a subprocess with the test issuer's settings as
AUTHZ_* variables and a temporary copy of the demo policies.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from authz.app import demo_policy_dir
from tests.conftest import REPO
from tests.issuer import AUDIENCE, ROLES_CLAIM, Issuer
from tests.serveproc import wait_address_serving

# Each worker drains on SIGTERM (gRPC and HTTP, up to 10 s each) before it exits: a stalled
# machine needs more than their sum. (30 s ran out once with two busy loops beside the suite.)
EXIT_SECONDS = 90
WORKERS_LINE = re.compile(r"authz: (\d+) workers on 127\.0\.0\.1:(\d+) \(pids ([\d ]+)\)")


class Serve:
    """A running `authz serve` process whose output goes to a file."""

    def __init__(self, process: subprocess.Popen[bytes], output: Path) -> None:
        self.process = process
        self.output = output

    def text(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def exit_status(self) -> int:
        """The process's exit status once it exits; its output in the failure if it does not."""
        try:
            return self.process.wait(timeout=EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {EXIT_SECONDS} s; output:\n{self.text()}") from None

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = pattern.search(self.text())
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{pattern.pattern!r} not printed; output:\n{self.text()}")


@pytest.fixture
def serve(tmp_path: Path, issuer: Issuer) -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(*args: str, policy_dir: Path | None = None) -> Serve:
        policies = policy_dir or Path(shutil.copytree(demo_policy_dir(), tmp_path / "policies"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
        env.update(
            AUTHZ_LISTEN="127.0.0.1:0",
            AUTHZ_POLICY_DIR=str(policies),
            AUTHZ_ISSUER=issuer.url,
            AUTHZ_AUDIENCE=AUDIENCE,
            AUTHZ_JWKS_URL=issuer.jwks_url,
            AUTHZ_ROLES_CLAIM=ROLES_CLAIM,
            AUTHZ_DEV_DIR=str(tmp_path / "dev"),
        )
        output = tmp_path / f"serve-{len(started)}.log"
        with output.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "authz.cli.main", "serve", *args],
                env=env,
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        running = Serve(process, output)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def _channel(address: str) -> grpc.Channel:
    # Its own connection, so with several workers different channels can reach different ones.
    return grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def _wait_every_worker_serving(run: Serve, address: str) -> None:
    # A health check reaches whichever worker the kernel picks: each says when it serves.
    wait_address_serving(address)
    run.wait_for(re.compile("health: SERVING(?s:.*)health: SERVING"), 90)


def _alive(pid: int) -> bool:
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _started_workers(run: Serve) -> tuple[str, list[int]]:
    found = run.wait_for(WORKERS_LINE)
    assert found.group(1) == "2"
    return f"127.0.0.1:{found.group(2)}", [int(p) for p in found.group(3).split()]


def test_two_workers_share_the_port_answer_checks_and_stop_on_sigterm(
    serve: Callable[..., Serve], issuer: Issuer
) -> None:
    run = serve("--workers", "2")
    address, pids = _started_workers(run)
    assert len(set(pids)) == 2 and run.process.pid not in pids
    _wait_every_worker_serving(run, address)
    # Both children bound the port the parent reserved (port 0 became one port for all).
    listening = re.escape(f"authz listening on {address}")
    run.wait_for(re.compile(f"{listening}(?s:.*){listening}"))

    reader = issuer.mint("alice", permissions=["read:orders"])
    channels = [_channel(address) for _ in range(8)]
    try:
        for channel in channels:
            stub = authz_pb2_grpc.AuthorizationServiceStub(channel)
            allowed = stub.Check(
                authz_pb2.CheckRequest(token=reader, resource="/api/orders/42", action="GET"), timeout=10
            )
            denied = stub.Check(
                authz_pb2.CheckRequest(token=reader, resource="/api/orders", action="POST"), timeout=10
            )
            assert allowed.allowed and allowed.subject == "alice"
            assert not denied.allowed and denied.reason == authz_pb2.REASON_NO_MATCHING_RULE
    finally:
        for channel in channels:
            channel.close()

    run.process.send_signal(signal.SIGTERM)
    assert run.exit_status() == 0, run.text()
    assert not any(_alive(pid) for pid in pids)


def test_sighup_reaches_every_worker_which_reloads_and_keeps_serving(
    serve: Callable[..., Serve], issuer: Issuer
) -> None:
    run = serve("--workers", "2")
    address, pids = _started_workers(run)
    _wait_every_worker_serving(run, address)
    run.process.send_signal(signal.SIGHUP)
    reloading = re.escape("reloading the policy (SIGHUP)")
    run.wait_for(re.compile(f"{reloading}(?s:.*){reloading}"))
    assert run.process.poll() is None and all(_alive(pid) for pid in pids)
    with _channel(address) as channel:
        response = authz_pb2_grpc.AuthorizationServiceStub(channel).Check(
            authz_pb2.CheckRequest(
                token=issuer.mint("alice", permissions=["read:orders"]), resource="/api/orders", action="GET"
            ),
            timeout=10,
        )
    assert response.allowed
    run.process.send_signal(signal.SIGTERM)
    assert run.exit_status() == 0, run.text()


def test_a_worker_that_cannot_start_stops_the_whole_server(
    serve: Callable[..., Serve], tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "policy.csv").write_text("p, read:orders, /api/orders, GET, True, allow\n")
    run = serve("--workers", "2", policy_dir=broken)
    assert run.exit_status() == 2, run.text()
    assert "model.conf is missing" in run.text()


def test_dev_mode_refuses_several_workers(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    env["AUTHZ_DEV_DIR"] = str(tmp_path / "dev")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "authz.cli.main",
            "serve",
            "--dev",
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--dev runs a single process" in result.stderr


def _tgkill(pid: int, tid: int, signum: int) -> None:
    # A signal to one thread of `pid` (tgkill(2)): which thread the kernel picks for a
    # process-directed signal is up to it, so the test picks one that is not the main thread.
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(234, pid, tid, signum) != 0:  # SYS_tgkill on x86-64
        raise OSError(ctypes.get_errno(), f"tgkill {pid} {tid}")


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="SYS_tgkill's number is x86-64's")
def test_a_sigterm_taken_by_another_thread_still_stops_the_server(serve: Callable[..., Serve]) -> None:
    # The main thread waited in one blocking Event.wait: a SIGTERM that the kernel gave to a
    # grpcio or reloader thread set Python's flag but never woke it, so the server ran on.
    run = serve()
    address = run.wait_for(re.compile(r"authz listening on (127\.0\.0\.1:\d+)"))[1]
    wait_address_serving(address)
    pid = run.process.pid
    others = sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid)
    assert others, "the server runs threads besides its main one"
    _tgkill(pid, others[-1], signal.SIGTERM)
    assert run.exit_status() == 0, run.text()
    assert "received SIGTERM: draining" in run.text()
