"""Settings for `authz serve`: flags, then AUTHZ_* variables, then a TOML file, then defaults.

Every mistake is collected and reported together (one line each) before the server
starts, so an operator fixes a deployment in one round.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authz.decisionlog import MODES as DECISION_LOG_MODES
from authz.errors import ConfigError

ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
LIST_KEYS = ("issuer", "audience", "algorithms", "cors_origins")
# authz.tracing: off, or spans exported over OTLP (configured by the OTEL_* variables).
TRACING_MODES = ("off", "otlp")


@dataclass(frozen=True)
class Settings:
    """Validated service settings (names match AUTHZ_* without the prefix, lower case)."""

    listen: str = "127.0.0.1:50051"
    policy_dir: str = "policies"
    policy_store: str = ""
    policy_store_check_seconds: float = 10.0
    issuer: tuple[str, ...] = ()
    audience: tuple[str, ...] = ()
    jwks_url: str = ""
    algorithms: tuple[str, ...] = ("RS256",)
    leeway_seconds: float = 30.0
    roles_claim: str = ""
    batch_limit: int = 100
    max_concurrent_rpcs: int = 1000
    max_queue_seconds: float = 0.0
    max_pending_calls: int = 0
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    http_listen: str = ""
    cors_origins: tuple[str, ...] = ()
    forward_auth: bool = False
    http_header_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 30.0
    http_max_connections: int = 4096
    http_max_connections_per_client: int = 128
    metrics_listen: str = ""
    admin_enabled: bool = False
    reload_requires_tests: bool = False
    workers: int = 1
    decision_log: str = "all"
    tracing: str = "off"
    jwks_refresh_seconds: float = 600.0
    dev: bool = False
    dev_issuer_port: int = 50055
    warnings: tuple[str, ...] = field(default=(), compare=False)


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback address ranges."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_host_port(address: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) into its parts; raises ValueError."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(address)
    return host, int(port)


def with_port(address: str, port: int) -> str:
    """`address` (`host:port`) with `port`: a listener's address as bound (port 0 picks one)."""
    host, _ = split_host_port(address)
    return f"{host}:{port}"


def _as_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list | tuple):
        return tuple(str(v).strip() for v in value if str(v).strip())
    raise TypeError(f"expected a list or comma-separated string, got {value!r}")


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _coerce(name: str, value: Any, default: Any) -> Any:
    if name in LIST_KEYS:
        return _as_list(value)
    if isinstance(default, bool):
        return _as_bool(value)
    # TOML gives typed values: a bool or a fractional number is a mistake, not 1 or a truncation.
    if isinstance(default, int | float) and isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected a whole number, got {value!r}")
        return int(value)
    if isinstance(default, float):
        return float(value)
    return str(value)


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Settings:
    """Merge the sources (flags win) and validate; raises ConfigError listing every problem."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = os.environ if env is None else env
    problems: list[str] = []
    names = _setting_names()
    raw = _file_and_env(env, config_file or flags.pop("config", None), problems)
    for key, value in flags.items():
        if key in names:
            raw[key] = (f"--{key.replace('_', '-')}", value)

    values: dict[str, Any] = {}
    for key, (source, value) in raw.items():
        try:
            values[key] = _coerce(key, value, names[key])
        except (TypeError, ValueError) as exc:
            problems.append(f"{source}: {exc}")
    settings = Settings(**values)
    return _validate(settings, problems)


def _setting_names() -> dict[str, Any]:
    return {f.name: f.default for f in fields(Settings) if f.name != "warnings"}


def _file_and_env(
    env: Mapping[str, str], config_file: str | None, problems: list[str]
) -> dict[str, tuple[str, Any]]:
    """Raw values by setting name, each with where it came from: the TOML file, then AUTHZ_* over it."""
    names = _setting_names()
    raw: dict[str, tuple[str, Any]] = {}
    path = config_file or env.get("AUTHZ_CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError([f"config file {path}: {exc}"]) from exc
        for key, value in data.items():
            if key not in names or key == "dev":
                problems.append(f"config file {path}: unknown key {key!r}")
            else:
                raw[key] = (f"config file key {key!r}", value)
    for key in names:
        var = f"AUTHZ_{key.upper()}"
        if var in env and key != "dev":
            raw[key] = (var, env[var])
    return raw


def configured(key: str, env: Mapping[str, str] | None = None) -> Any:
    """One setting as AUTHZ_* or the config file (AUTHZ_CONFIG) gives it, else its default.

    Coerced but not validated as a whole: for tools (`policy lint`, `auth0 plan`) that need
    this one setting, not a configuration the server could start with.
    """
    names = _setting_names()
    found = _file_and_env(os.environ if env is None else env, None, []).get(key)
    if found is None:
        return names[key]
    source, value = found
    try:
        return _coerce(key, value, names[key])
    except (TypeError, ValueError) as exc:
        raise ConfigError([f"{source}: {exc}"]) from exc


def _check_url(kind: str, url: str, problems: list[str]) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    if parts.scheme == "http":
        problems.append(f"{kind} {url!r}: plain http is accepted only on loopback hosts; use https")
    else:
        problems.append(f"{kind} {url!r} is not an https URL")


def _dev_exposure(s: Settings) -> list[str]:
    # Warned, not refused: a dev container must listen on 0.0.0.0 to be reached at all.
    exposed = []
    for kind, address in (("listen", s.listen), ("http_listen", s.http_listen)):
        try:
            host, _ = split_host_port(address)
        except ValueError:
            continue  # absent, or already reported as malformed
        if not is_loopback(host):
            exposed.append(
                f"dev mode {kind} {address!r} is not a loopback address: anyone who can reach it "
                "gets decisions for tokens signed by the local dev key; dev mode is for one machine"
            )
    return exposed


def _validate(s: Settings, problems: list[str]) -> Settings:
    warnings: list[str] = []
    for kind, address in (
        ("listen", s.listen),
        ("http_listen", s.http_listen),
        ("metrics_listen", s.metrics_listen),
    ):
        if address:
            try:
                split_host_port(address)
            except ValueError:
                problems.append(f"{kind} {address!r} is not host:port (for example 127.0.0.1:50051)")
    if s.dev:
        if s.issuer or s.jwks_url:
            problems.append(
                "--dev refuses to start next to a real issuer: unset AUTHZ_ISSUER / AUTHZ_JWKS_URL "
                "(or the config file's issuer / jwks_url), or drop --dev"
            )
        warnings.extend(_dev_exposure(s))
    else:
        if not s.issuer:
            problems.append("issuer is required (AUTHZ_ISSUER=https://YOUR_TENANT.auth0.com/), or use --dev")
        if not s.audience:
            problems.append("audience is required (AUTHZ_AUDIENCE=your API identifier), or use --dev")
    for issuer in s.issuer:
        _check_url("issuer", issuer, problems)
        if not issuer.endswith("/"):
            warnings.append(
                f"issuer {issuer!r} has no trailing slash; "
                "Auth0 issuers end with '/' and are compared exactly"
            )
    jwks_url = s.jwks_url
    if not jwks_url and s.issuer:
        jwks_url = s.issuer[0].rstrip("/") + "/.well-known/jwks.json"
    if s.jwks_url:
        _check_url("jwks_url", s.jwks_url, problems)
    bad = [a for a in s.algorithms if a not in ALLOWED_ALGORITHMS]
    if bad or not s.algorithms:
        problems.append(
            f"algorithms {', '.join(bad) or '(empty)'} not allowed; "
            f"choose from {', '.join(ALLOWED_ALGORITHMS)}"
        )
    if not 0 <= s.leeway_seconds <= 300:
        problems.append(f"leeway_seconds {s.leeway_seconds} must be between 0 and 300")
    if not 1 <= s.batch_limit <= 10_000:
        problems.append(f"batch_limit {s.batch_limit} must be between 1 and 10000")
    if not 1 <= s.max_concurrent_rpcs <= 1_000_000:
        problems.append(f"max_concurrent_rpcs {s.max_concurrent_rpcs} must be between 1 and 1000000")
    if not 0 <= s.max_queue_seconds <= 60:
        problems.append(f"max_queue_seconds {s.max_queue_seconds} must be between 0 (no limit) and 60")
    if not 0 <= s.max_pending_calls <= 100_000:
        problems.append(
            f"max_pending_calls {s.max_pending_calls} must be between 0 (grpcio's own limits) and 100000"
        )
    if s.max_pending_calls and s.max_queue_seconds:
        # The calls grpcio's core refuses count as started in channelz and never reach the
        # gate: the queue-time estimate would read every one of them as a backlog.
        problems.append("set max_pending_calls or max_queue_seconds, not both: two ways to shed load")
    for name in ("http_header_timeout_seconds", "http_body_timeout_seconds"):
        if not 0 < getattr(s, name) <= 3600:
            problems.append(f"{name} {getattr(s, name)} must be above 0 and at most 3600")
    for name in ("http_max_connections", "http_max_connections_per_client"):
        if not 1 <= getattr(s, name) <= 1_000_000:
            problems.append(f"{name} {getattr(s, name)} must be between 1 and 1000000")
    if s.decision_log not in DECISION_LOG_MODES:
        problems.append(f"decision_log {s.decision_log!r} must be one of {', '.join(DECISION_LOG_MODES)}")
    if s.tracing not in TRACING_MODES:
        problems.append(f"tracing {s.tracing!r} must be one of {', '.join(TRACING_MODES)}")
    if not 1 <= s.workers <= 64:
        problems.append(f"workers {s.workers} must be between 1 and 64")
    if s.policy_store and s.policy_store.partition("://")[0] not in ("postgresql", "postgres"):
        # Never echo the value: it may hold a password.
        problems.append(
            "policy_store is not a postgresql://USER@HOST:PORT/DATABASE URI; "
            "leave it unset to serve the policy directory"
        )
    if not 1 <= s.policy_store_check_seconds <= 3600:
        problems.append(
            f"policy_store_check_seconds {s.policy_store_check_seconds} must be between 1 and 3600"
        )
    if s.forward_auth and not s.http_listen:
        problems.append("forward_auth is served on the HTTP listener: set http_listen too")
    if s.metrics_listen and s.workers > 1:
        # Each worker counts only its own requests and could not bind the one port besides.
        problems.append(
            f"metrics_listen serves one process's metrics and cannot be combined with workers {s.workers}: "
            "run one process per container and scale with replicas, or unset metrics_listen"
        )
    if bool(s.tls_cert) != bool(s.tls_key):
        problems.append("tls_cert and tls_key go together: set both or neither")
    if s.tls_client_ca and not s.tls_cert:
        problems.append("tls_client_ca (mTLS) needs tls_cert and tls_key")
    for kind, file in (("tls_cert", s.tls_cert), ("tls_key", s.tls_key), ("tls_client_ca", s.tls_client_ca)):
        if file and not Path(file).is_file():
            problems.append(f"{kind} {file!r} does not exist")
    if problems:
        raise ConfigError(problems)
    return Settings(
        **{
            **{f.name: getattr(s, f.name) for f in fields(s)},
            "jwks_url": jwks_url,
            "warnings": tuple(warnings),
        }
    )
