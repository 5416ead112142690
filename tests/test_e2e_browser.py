"""End to end: the demo page in headless Chromium against a real authz over its HTTP listener.

The demo (clients/typescript/demo) is built once (cached by a stamp over its inputs) and
started exactly as `make demo` starts it: `authz serve --dev` with the Connect / gRPC-Web
listener and CORS for the page's origin, demo tokens minted into config.json, the page
served by Python's http.server. A small Node script (demo/e2e/drive.mjs) drives Debian's
chromium through playwright-core, picks each demo user and reports what the page shows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serveproc import free_port
from tests.typescript_pkg import AUTHZ_BIN, PKG, npm_ci, require_tool
from tests.waiting import wait_for

DEMO = PKG / "demo"
DIST = DEMO / "dist"
BUILD_STAMP = DIST / ".build-stamp"
# What the demo build reads: a change to any of them rebuilds it.
BUILD_INPUTS = (
    "package-lock.json",
    "tsconfig.json",
    "src",
    "demo/src",
    "demo/index.html",
    "demo/vite.config.ts",
    "demo/tsconfig.json",
)


def chromium_path() -> str:
    """Debian's chromium, or a skip naming the install step."""
    path = os.environ.get("AUTHZ_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.skip(
            "chromium is not installed and could not be: run `make e2e-deps` (apt-get install chromium)"
        )
    return path


def build_digest() -> str:
    """A digest of every file the demo build reads."""
    digest = hashlib.sha256()
    for name in BUILD_INPUTS:
        root = PKG / name
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            digest.update(str(path.relative_to(PKG)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_demo(npm: str) -> None:
    """`npm run demo:build` (type check + vite build) unless dist was built from these inputs."""
    digest = build_digest()
    if BUILD_STAMP.exists() and BUILD_STAMP.read_text() == digest and (DIST / "index.html").exists():
        return
    done = subprocess.run([npm, "run", "demo:build"], cwd=PKG, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"demo build failed:\n{done.stdout}\n{done.stderr}"
    BUILD_STAMP.write_text(digest)


@pytest.fixture(scope="module")
def node() -> str:
    """Node with the demo built; skips when Node or chromium is missing."""
    chromium_path()
    build_demo(npm_ci())
    return require_tool("node")


@pytest.fixture(scope="module")
def demo_url(node: str) -> Iterator[str]:
    """The demo as `make demo` runs it, on free ports with its own dev key directory."""
    page_port = free_port()
    with tempfile.TemporaryDirectory(prefix="authz-e2e-") as dev_dir:
        args = [node, str(DEMO / "scripts" / "serve-demo.mjs"), "--page-port", str(page_port)]
        for flag in ("--http-port", "--grpc-port", "--issuer-port", "--api-port"):
            args += [flag, str(free_port())]
        env = {**os.environ, "AUTHZ_BIN": str(AUTHZ_BIN)}
        log = Path(dev_dir) / "demo.log"
        with log.open("w") as out:
            demo = subprocess.Popen(
                [*args, "--dev-dir", dev_dir], stdout=out, stderr=subprocess.STDOUT, env=env
            )
            try:

                def ready() -> bool:
                    assert demo.poll() is None, f"the demo exited:\n{log.read_text()}"
                    return "demo ready:" in log.read_text()

                wait_for(ready, 120, "the demo ready")
                yield f"http://127.0.0.1:{page_port}/"
            finally:
                demo.send_signal(signal.SIGTERM)
                demo.wait(timeout=30)


@pytest.fixture(scope="module")
def seen(node: str, demo_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What each demo user sees in Chromium (screenshots kept in the test's temp directory)."""
    shots = tmp_path_factory.mktemp("screenshots")
    done = subprocess.run(
        [
            node,
            str(DEMO / "e2e" / "drive.mjs"),
            "--url",
            demo_url,
            "--chromium",
            chromium_path(),
            "--screenshots",
            str(shots),
        ],
        cwd=PKG,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"the browser run failed (screenshots in {shots}):\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_reader_sees_orders_and_reports_not_admin(seen: dict[str, Any]) -> None:
    alice = seen["users"]["alice"]
    assert alice["subject"] == "alice"
    assert alice["menu"] == ["Orders", "Reports"]
    assert alice["buttons"] == []
    assert not alice["signIn"]


def test_admin_sees_every_menu_item_and_button(seen: dict[str, Any]) -> None:
    admin = seen["users"]["admin"]
    assert admin["menu"] == ["Orders", "Reports", "Admin"]
    assert admin["buttons"] == ["Create order", "Delete order"]


def test_expired_token_is_asked_to_sign_in_again(seen: dict[str, Any]) -> None:
    expired = seen["users"]["expired"]
    assert expired["signIn"]
    assert expired["menu"] == [] and expired["buttons"] == []


# The demo's orders (demo/scripts/orders-api.mjs) by organisation and owner:
# acme: 1001 alice, 1002 bob, 1003 carol; globex: 1004 dave, 1005 bob, 1006 erin.
def test_the_orders_list_is_filtered_by_the_policies(seen: dict[str, Any]) -> None:
    users = seen["users"]
    # alice holds read:orders in acme: her organisation's orders.
    assert users["alice"]["orders"] == ["1001", "1002", "1003"]
    # bob holds no permission: only his own orders, in either organisation.
    assert users["viewer"]["subject"] == "bob"
    assert users["viewer"]["orders"] == ["1002", "1005"]
    assert users["viewer"]["menu"] == [] and users["viewer"]["buttons"] == []
    # The admin role lists every order.
    assert users["admin"]["orders"] == ["1001", "1002", "1003", "1004", "1005", "1006"]


def test_the_orders_api_refuses_a_refused_token_with_401(demo_url: str) -> None:
    with urllib.request.urlopen(f"{demo_url}config.json", timeout=10) as answer:
        config = json.load(answer)
    tokens = {user["id"]: user["token"] for user in config["users"]}
    for token, reason in ((tokens["expired"], "REASON_TOKEN_EXPIRED"), ("", "REASON_TOKEN_MISSING")):
        request = urllib.request.Request(f"{config['ordersUrl']}/api/orders")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        assert refused.value.headers["WWW-Authenticate"] == "Bearer"
        assert json.load(refused.value) == {"error": "unauthorized", "reason": reason}


def test_page_calls_authz_across_origins_without_errors(seen: dict[str, Any]) -> None:
    # The page and authz listen on different ports: every answer above went through a CORS
    # preflight; a refused one would show up here as a failed fetch.
    assert seen["consoleErrors"] == []


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_demo_that_cannot_start_leaves_no_authz_behind(node: str, tmp_path: Path) -> None:
    # The orders API's port is taken: the demo fails, and the dev authz it had started stops too.
    grpc_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        args = [node, str(DEMO / "scripts" / "serve-demo.mjs"), "--dev-dir", str(tmp_path)]
        for flag, port in (
            ("--page-port", free_port()),
            ("--http-port", free_port()),
            ("--grpc-port", grpc_port),
            ("--issuer-port", free_port()),
            ("--api-port", taken.getsockname()[1]),
        ):
            args += [flag, str(port)]
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=120, env={**os.environ, "AUTHZ_BIN": str(AUTHZ_BIN)}
        )
    assert done.returncode != 0 and "EADDRINUSE" in done.stderr, done.stderr
    wait_for(lambda: _bindable(grpc_port), 30, "the demo's authz gone from its gRPC port")
