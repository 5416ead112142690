"""`authz serve` beside a process that holds one of its ports: one line naming the setting, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from authz.app import demo_policy_dir
from authz.errors import ListenError

AUTHZ = str(Path(sys.executable).with_name("authz"))


@pytest.fixture
def held() -> Iterator[int]:
    """A loopback port another process listens on."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield int(sock.getsockname()[1])


def serve(tmp_path: Path, *args: str, log_level: str = "WARNING") -> subprocess.CompletedProcess[str]:
    """Run `authz serve` in `tmp_path` with only these settings (none from this environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    env["AUTHZ_DEV_DIR"] = str(tmp_path / "dev")
    return subprocess.run(
        [AUTHZ, "--log-level", log_level, "serve", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # a bind that wrongly succeeds serves until killed here
        check=False,
    )


def _names_the_setting(line: str, port: int, setting: str) -> None:
    assert line.startswith(f"authz: cannot listen on 127.0.0.1:{port} ({setting}): address ")
    assert f"AUTHZ_{setting.upper()} or --{setting.replace('_', '-')}" in line


def test_a_held_dev_issuer_port_is_one_line(tmp_path, held):
    # `make run` beside another dev server: the case, at the default log level.
    done = serve(
        tmp_path, "--dev", "--dev-issuer-port", str(held), "--listen", "127.0.0.1:0", log_level="INFO"
    )
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1, done.stderr
    _names_the_setting(done.stderr.strip(), held, "dev_issuer_port")
    assert "the dev issuer moves with" in done.stderr


@pytest.mark.parametrize(
    ("setting", "flag"),
    [("http_listen", "--http-listen"), ("metrics_listen", "--metrics-listen"), ("listen", "--listen")],
)
def test_a_held_listener_port_is_one_line_naming_its_setting(tmp_path, held, setting, flag):
    args = ["--dev", "--dev-issuer-port", "0", "--listen", "127.0.0.1:0", flag, f"127.0.0.1:{held}"]
    done = serve(tmp_path, *args)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    if setting == "listen":
        # gRPC's core logs its own line about the port (E... add_port.cc) before authz's.
        lines = [line for line in lines if line.startswith("authz:")]
    assert len(lines) == 1, done.stderr
    _names_the_setting(lines[0], held, setting)


def test_a_held_port_with_workers_is_one_line(tmp_path, held):
    # The supervisor reserves the port before any worker starts.
    args = ["--listen", f"127.0.0.1:{held}", "--workers", "2", "--policy-dir", str(demo_policy_dir())]
    done = serve(tmp_path, *args, "--issuer", "http://127.0.0.1:9/", "--audience", "https://api")
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1, done.stderr
    _names_the_setting(done.stderr.strip(), held, "listen")


def test_the_error_carries_the_setting_and_address():
    error = ListenError.of("metrics_listen", "[::1]:9100", OSError(98, "Address already in use (while ...)"))
    assert (error.setting, error.address, error.reason) == (
        "metrics_listen",
        "[::1]:9100",
        "address already in use",
    )
    assert isinstance(error, OSError)
