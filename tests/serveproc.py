"""A real `authz serve` process on loopback for the fault tests and the soak.

Its stderr goes to a pipe read by a thread (not a regular file: a process under
RLIMIT_FSIZE could not write its log there), kept in memory for assertions.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.issuer import AUDIENCE, ROLES_CLAIM, Issuer
from tests.waiting import wait_for


def free_port() -> int:
    """A loopback port free at the time of asking."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_address_serving(address: str, timeout: float = 60.0) -> None:
    """Wait until health at `address` reports SERVING.

    A fresh connection per try: with several worker processes behind one port, any may answer.
    """

    def serving() -> bool:
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(address, options=options) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            except grpc.RpcError:
                return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    wait_for(serving, timeout, f"{address} SERVING")


# Sets the limit and execs the command. This replaces subprocess's preexec_fn, which forks the
# test process with its gRPC threads and runs grpc's fork handlers in the child: under load that
# child aborted in the event engine ("epoll_wait error: Bad file descriptor") before the exec.
_LIMIT_THEN_EXEC = (
    "import os, resource, signal, sys\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "limit = int(sys.argv[1])\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def with_file_size_limit(command: Sequence[str], limit: int | None) -> list[str]:
    """`command` run with RLIMIT_FSIZE at `limit` bytes and SIGXFSZ ignored, so a write fails with EFBIG."""
    if limit is None:
        return list(command)
    return [sys.executable, "-c", _LIMIT_THEN_EXEC, str(limit), *command]


class ServeProcess:
    """`python -m authz.cli.main serve` trusting `issuer`, serving `policy_dir`; stop with `terminate`."""

    def __init__(
        self,
        issuer: Issuer,
        policy_dir: Path,
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        file_size_limit: int | None = None,
    ) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
        environment |= {
            "AUTHZ_LISTEN": self.address,
            "AUTHZ_ISSUER": issuer.url,
            "AUTHZ_AUDIENCE": AUDIENCE,
            "AUTHZ_ROLES_CLAIM": ROLES_CLAIM,
            "AUTHZ_JWKS_URL": issuer.jwks_url,
            "AUTHZ_POLICY_DIR": str(policy_dir),
            # The decision log would make the stderr pipe the bottleneck of a load test.
            "AUTHZ_DECISION_LOG": "off",
        }
        environment |= dict(env or {})
        # The latest lines only: a long soak logs more than a test should keep in memory.
        self._lines: deque[str] = deque(maxlen=20_000)
        self._lines_lock = threading.Lock()
        self.process = subprocess.Popen(
            with_file_size_limit([sys.executable, "-m", "authz.cli.main", "serve"], file_size_limit),
            cwd=cwd,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._drain, name="serve-stderr", daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lines_lock:
                self._lines.append(line)

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def output(self) -> str:
        """What the server logged so far (the latest 20,000 lines)."""
        with self._lines_lock:
            return "".join(self._lines)

    def wait_logged(self, fragment: str, timeout: float = 30.0) -> None:
        """Wait until the log contains `fragment`."""
        wait_for(lambda: fragment in self.output(), timeout, f"log line {fragment!r}")

    def wait_serving(self, channel: grpc.Channel, timeout: float = 60.0) -> None:
        """Wait until health reports SERVING through `channel` (failing early if the process died)."""
        health = health_pb2_grpc.HealthStub(channel)

        def serving() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"authz serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            except grpc.RpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        wait_for(serving, timeout, "authz serve SERVING")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for the exit status (SIGKILL if it does not exit in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        """SIGKILL it if it still runs (cleanup)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
