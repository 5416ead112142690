"""Shared fixtures: a real issuer (JWKS over HTTP) and a real authz gRPC server on loopback."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from authz.api.v1 import authz_pb2_grpc
from authz.app import App, demo_policy_dir
from authz.config import Settings
from tests.issuer import AUDIENCE, ROLES_CLAIM, Issuer
from tests.pgcluster import pg_dsn, postgres_server  # noqa: F401 - fixtures for the policy store and data filtering tests

REPO = Path(__file__).resolve().parent.parent
HTTP_ORIGIN = "http://localhost:5173"

# Property tests run briefly in the suite; HYPOTHESIS_PROFILE=fuzz runs them at length.
# Tests that set max_examples themselves keep their own count. On CI the examples are the
# same every run for the same code: a landing is never blocked by a case the search drew
# by chance; `make fuzz` (random, at length) is where new cases are found.
_PROPERTY_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]
hypothesis_settings.register_profile(
    "suite",
    max_examples=60,
    deadline=None,
    suppress_health_check=_PROPERTY_HEALTH,
    derandomize=os.environ.get("CI") == "true",
)
hypothesis_settings.register_profile(
    "fuzz", max_examples=3000, deadline=None, suppress_health_check=_PROPERTY_HEALTH
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

# `make test` runs the files on several pytest-xdist workers (`--dist loadfile`: a file's tests on
# one worker, so its module fixtures start once). The files that build, test or serve from
# clients/typescript share one worker: `tsc` writes its dist/ and vitest its cache in that tree,
# and two of them at once could read each other's half-written files.
SHARED_TREES = {
    "typescript": (
        "tests/test_client_typescript.py",
        "tests/test_typescript_plan.py",
        "tests/test_e2e_browser.py",
    ),
}
_TREE_OF = {path: tree for tree, paths in SHARED_TREES.items() for path in paths}


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, absent without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile`, with the files of one shared tree scheduled as one file.

    Not xdist's `xdist_group` marks: on pytest 9.2 `--dist loadgroup` silently ignores them
    (pytest-xdist issue 1386).
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedTreeScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return _TREE_OF.get(path, path)

    return SharedTreeScheduling(config, log)


class RunningServer:
    """A started App with a channel and stub for tests."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.address = f"127.0.0.1:{app.port}"
        scheme = "https" if app.settings.tls_cert else "http"
        self.http_url = f"{scheme}://127.0.0.1:{app.http_port}" if app.http is not None else ""
        self.channel = grpc.insecure_channel(self.address)
        self.stub = authz_pb2_grpc.AuthorizationServiceStub(self.channel)

    def wait_serving(self, timeout: float = 30.0) -> None:
        stub = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
            except grpc.RpcError:  # a stalled machine can miss one probe's deadline
                status = None
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.05)
        raise TimeoutError("server did not become SERVING")

    def close(self) -> None:
        self.channel.close()
        self.app.stop(grace=1)


def settings_for(issuer: Issuer, **overrides: Any) -> Settings:
    """Settings trusting `issuer` with the demo policies on a free loopback port."""
    base = Settings(
        listen="127.0.0.1:0",
        policy_dir=str(demo_policy_dir()),
        issuer=(issuer.url,),
        audience=(AUDIENCE,),
        jwks_url=issuer.jwks_url,
        roles_claim=ROLES_CLAIM,
    )
    return replace(base, **overrides)


@pytest.fixture(scope="session")
def issuer() -> Iterator[Issuer]:
    it = Issuer()
    yield it
    it.close()


@pytest.fixture
def own_issuer() -> Iterator[Issuer]:
    """An issuer of this test alone: it may rotate, remove keys, go down or hold its answers."""
    it = Issuer()
    yield it
    it.close()


@pytest.fixture(scope="session")
def server(issuer: Issuer) -> Iterator[RunningServer]:
    app = App(settings_for(issuer))
    app.start()
    running = RunningServer(app)
    running.wait_serving()
    yield running
    running.close()


@pytest.fixture(scope="session")
def http_server(issuer: Issuer) -> Iterator[RunningServer]:
    """A real authz with its HTTP listener (Connect, gRPC-Web) on; CORS allows HTTP_ORIGIN."""
    app = App(settings_for(issuer, http_listen="127.0.0.1:0", cors_origins=(HTTP_ORIGIN,)))
    app.start()
    running = RunningServer(app)
    running.wait_serving()
    yield running
    running.close()


@pytest.fixture
def make_server() -> Iterator[Callable[..., RunningServer]]:
    """Start extra servers with their own settings (closed after the test)."""
    started: list[RunningServer] = []

    def make(
        settings: Settings, *, wait: bool = True, configure: Callable[[App], None] | None = None
    ) -> RunningServer:
        app = App(settings)
        if configure:
            configure(app)
        app.start()
        running = RunningServer(app)
        started.append(running)
        if wait:
            running.wait_serving()
        return running

    yield make
    for running in started:
        running.close()
