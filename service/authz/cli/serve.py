"""`authz serve`: run the service until SIGTERM / SIGINT, then drain."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from authz.app import App
from authz.config import Settings, load_settings
from authz.errors import ListenError
from authz.workers import serve_workers

log = logging.getLogger("authz")

FLAG_HELP = {
    "listen": "gRPC host:port (AUTHZ_LISTEN, default 127.0.0.1:50051)",
    "policy_dir": "policy directory (AUTHZ_POLICY_DIR, default ./policies)",
    "issuer": "trusted issuer(s), comma-separated, with Auth0's trailing slash (AUTHZ_ISSUER)",
    "audience": "accepted audience(s), comma-separated: your API identifier (AUTHZ_AUDIENCE)",
    "jwks_url": "JWKS URL (AUTHZ_JWKS_URL, default ISSUER/.well-known/jwks.json)",
    "algorithms": "allowed signing algorithms (AUTHZ_ALGORITHMS, default RS256)",
    "leeway_seconds": "clock leeway for exp/nbf (AUTHZ_LEEWAY_SECONDS, default 30)",
    "roles_claim": "claim holding the user's roles (AUTHZ_ROLES_CLAIM)",
    "batch_limit": "max BatchCheck items (AUTHZ_BATCH_LIMIT, default 100)",
    "max_concurrent_rpcs": "gRPC calls being answered before RESOURCE_EXHAUSTED, and HTTP "
    "requests being answered before 503 (AUTHZ_MAX_CONCURRENT_RPCS, default 1000)",
    "max_queue_seconds": "refuse gRPC calls with RESOURCE_EXHAUSTED while calls wait longer than this "
    "for the server, 0 for no limit (AUTHZ_MAX_QUEUE_SECONDS, default 0: off)",
    "max_pending_calls": "calls grpcio's core holds for the server before it refuses new ones at once "
    "(CANCELLED), 0 for grpcio's own limit of 3000 (AUTHZ_MAX_PENDING_CALLS, default 0)",
    "tls_cert": "TLS certificate PEM (AUTHZ_TLS_CERT)",
    "tls_key": "TLS private key PEM (AUTHZ_TLS_KEY)",
    "tls_client_ca": "require client certificates signed by this CA: mTLS (AUTHZ_TLS_CLIENT_CA)",
    "http_listen": "Connect / gRPC-Web host:port (AUTHZ_HTTP_LISTEN, off when unset)",
    "cors_origins": "browser origins allowed to call the HTTP listener, comma-separated (AUTHZ_CORS_ORIGINS)",
    "metrics_listen": "Prometheus /metrics host:port, plain HTTP (AUTHZ_METRICS_LISTEN, off when unset)",
    "workers": "processes (AUTHZ_WORKERS, default 1)",
    "decision_log": "decision log lines: all, deny (denials only) or off (AUTHZ_DECISION_LOG, default all)",
    "tracing": "OpenTelemetry spans: off, or otlp to the collector the OTEL_* variables name "
    "(AUTHZ_TRACING, default off)",
}


def add_serve_args(parser: argparse.ArgumentParser) -> None:
    """The serve command's flags (each overrides its AUTHZ_* variable)."""
    parser.add_argument("--config", help="TOML settings file (AUTHZ_CONFIG)")
    for name, text in FLAG_HELP.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, help=text)
    parser.add_argument(
        "--dev",
        action="store_true",
        help="local dev issuer and demo policies; refuses to start next to a real issuer",
    )
    parser.add_argument("--dev-issuer-port", dest="dev_issuer_port", help="dev JWKS port (default 50055)")


def settings_from_args(ns: argparse.Namespace) -> Settings:
    """Settings from flags, environment and config file."""
    flags = {name: getattr(ns, name) for name in (*FLAG_HELP, "config", "dev_issuer_port")}
    if ns.dev:
        flags["dev"] = True
    return load_settings(flags)


def run_serve(ns: argparse.Namespace) -> int:
    """Serve in this process, or in `--workers` pre-forked processes sharing the port.

    A listener that cannot bind (`make run` beside another server) ends in one line that
    names the address and the setting that moves it, and exit code 1.
    """
    settings = settings_from_args(ns)
    try:
        if settings.workers > 1:
            return serve_workers(settings, serve_process)
        return serve_process(settings)
    except ListenError as exc:
        print(f"authz: {exc}", file=sys.stderr)
        return 1


# How long a signal handled by another thread may wait for the main thread to run it.
SIGNAL_POLL_SECONDS = 0.5


def serve_process(settings: Settings) -> int:
    """Start, print how to try it in dev mode, and block until a stop signal; SIGHUP reloads the policy."""
    app = App(settings)
    stopped = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: draining", signal.Signals(signum).name)
        stopped.set()

    def on_hangup(_signum: int, _frame: FrameType | None) -> None:
        app.reloader.request("SIGHUP")

    # Before starting: a SIGHUP that arrives while the policy loads is a reload once the
    # reloader runs, not lost (a `--workers` child ignores SIGHUP until this point).
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    app.start()
    if app.dev_issuer is not None:
        print_dev_banner(app)
    # Woken now and then, not blocked for good: the kernel may hand a SIGTERM to any thread
    # (grpcio's, the reloader's), and Python runs its handler only once the main thread runs
    # again. Blocked in one wait, a `--workers` child given SIGTERM after a reload never drained.
    while not stopped.wait(SIGNAL_POLL_SECONDS):
        pass
    app.stop()
    return 0


def print_dev_banner(app: App) -> None:
    """How to try the dev server, printed once at start."""
    address = app.settings.listen
    print(
        f"""
authz is running in DEV mode on {address} (issuer {app.dev_issuer.issuer if app.dev_issuer else ""})
policies: {app.policy_dir}

Try it (in another terminal, from this directory):
  TOKEN=$(.venv/bin/authz token --sub alice --permission read:orders)
  .venv/bin/authz check --token "$TOKEN" GET /api/orders/42
  .venv/bin/authz check --token "$TOKEN" DELETE /api/orders/42 --attr status=shipped
  .venv/bin/authz principal --token "$TOKEN"
{_http_banner(app)}""",
        flush=True,
    )


def _http_banner(app: App) -> str:
    if app.http is None:
        return ""
    scheme = "https" if app.settings.tls_cert else "http"
    url = f"{scheme}://{app.settings.http_listen}/authz.api.v1.AuthorizationService/Check"
    return f"""
Over HTTP (Connect JSON):
  curl -s {url} -H 'content-type: application/json' -H "authorization: Bearer $TOKEN" \\
    -d '{{"resource": "/api/orders/42", "action": "GET"}}'
"""
