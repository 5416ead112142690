"""Settings for `authz serve`: sources and their precedence, lists, validation messages, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from authz.config import load_settings
from authz.errors import ConfigError

ISSUER = "https://tenant.eu.auth0.com/"
AUDIENCE = "https://orders.example.com"
REQUIRED = {"AUTHZ_ISSUER": ISSUER, "AUTHZ_AUDIENCE": AUDIENCE}


def _problems(
    flags: dict[str, Any] | None = None, env: dict[str, str] | None = None, config: str | None = None
):
    with pytest.raises(ConfigError) as caught:
        load_settings(flags, env if env is not None else {}, config)
    assert str(caught.value).startswith("invalid configuration:")
    return caught.value.problems


def _one_problem(**kwargs: Any) -> str:
    problems = _problems(**kwargs)
    assert len(problems) == 1, problems
    return problems[0]


def _toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "authz.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- sources and precedence ----------------------------------------------------------------


def test_defaults():
    s = load_settings({}, REQUIRED)
    assert s.listen == "127.0.0.1:50051"
    assert s.policy_dir == "policies"
    assert s.algorithms == ("RS256",)
    assert s.leeway_seconds == 30
    assert s.batch_limit == 100
    assert s.workers == 1
    assert not s.admin_enabled
    assert not s.reload_requires_tests
    assert (s.tls_cert, s.tls_key, s.tls_client_ca, s.http_listen) == ("", "", "", "")
    assert s.jwks_url == ISSUER + ".well-known/jwks.json"
    assert s.warnings == ()


def test_flags_beat_env_beat_toml_beat_defaults(tmp_path):
    config = _toml(
        tmp_path,
        f'issuer = ["{ISSUER}"]\naudience = "{AUDIENCE}"\n'
        'listen = "127.0.0.1:1111"\npolicy_dir = "from-toml"\nroles_claim = "toml-roles"\nbatch_limit = 7\n',
    )
    env = {"AUTHZ_LISTEN": "127.0.0.1:2222", "AUTHZ_POLICY_DIR": "from-env"}
    flags = {"listen": "127.0.0.1:3333", "policy_dir": None}  # None: the flag was not given
    s = load_settings(flags, env, config)
    assert s.listen == "127.0.0.1:3333"  # flag
    assert s.policy_dir == "from-env"  # env over TOML
    assert s.roles_claim == "toml-roles"  # TOML over default
    assert s.batch_limit == 7
    assert s.leeway_seconds == 30  # default
    assert s.issuer == (ISSUER,)


def test_config_file_from_env_or_flag(tmp_path):
    config = _toml(tmp_path, f'issuer = "{ISSUER}"\naudience = ["{AUDIENCE}"]\nleeway_seconds = 5\n')
    assert load_settings({}, {"AUTHZ_CONFIG": config}).leeway_seconds == 5
    assert load_settings({"config": config}, {}).leeway_seconds == 5


def test_lists_from_comma_strings_and_toml_arrays(tmp_path):
    env = {
        "AUTHZ_ISSUER": f" {ISSUER} , https://login.example.com/,",
        "AUTHZ_AUDIENCE": AUDIENCE,
        "AUTHZ_ALGORITHMS": "RS256,PS256",
        "AUTHZ_CORS_ORIGINS": "https://app.example.com,http://localhost:5173",
    }
    s = load_settings({}, env)
    assert s.issuer == (ISSUER, "https://login.example.com/")
    assert s.algorithms == ("RS256", "PS256")
    assert s.cors_origins == ("https://app.example.com", "http://localhost:5173")
    # The JWKS comes from the first issuer unless given.
    assert s.jwks_url == ISSUER + ".well-known/jwks.json"
    config = _toml(
        tmp_path,
        f'issuer = ["{ISSUER}", "https://login.example.com/"]\n'
        f'audience = ["{AUDIENCE}", "https://api2.example.com"]\nalgorithms = ["PS256"]\n',
    )
    s = load_settings({}, {}, config)
    assert s.issuer == (ISSUER, "https://login.example.com/")
    assert s.audience == (AUDIENCE, "https://api2.example.com")
    assert s.algorithms == ("PS256",)


def test_typed_values_from_strings():
    env = {
        **REQUIRED,
        "AUTHZ_LEEWAY_SECONDS": "12.5",
        "AUTHZ_BATCH_LIMIT": "250",
        "AUTHZ_ADMIN_ENABLED": "yes",
        "AUTHZ_RELOAD_REQUIRES_TESTS": "true",
        "AUTHZ_WORKERS": "2",
        "AUTHZ_JWKS_URL": "https://keys.example.com/jwks.json",
    }
    s = load_settings({}, env)
    assert s.leeway_seconds == 12.5
    assert s.batch_limit == 250
    assert s.admin_enabled is True
    assert s.reload_requires_tests is True
    assert s.workers == 2
    assert s.jwks_url == "https://keys.example.com/jwks.json"


def test_unparseable_values_name_their_source(tmp_path):
    problems = _problems(env={**REQUIRED, "AUTHZ_BATCH_LIMIT": "lots", "AUTHZ_ADMIN_ENABLED": "maybe"})
    assert any(p.startswith("AUTHZ_BATCH_LIMIT:") for p in problems)
    assert any(p.startswith("AUTHZ_ADMIN_ENABLED:") and "true or false" in p for p in problems)
    problem = _one_problem(flags={"leeway_seconds": "soon"}, env=REQUIRED)
    assert problem.startswith("--leeway-seconds:")


def test_unknown_or_broken_config_file(tmp_path):
    config = _toml(tmp_path, f'issuer = "{ISSUER}"\naudience = "{AUDIENCE}"\nlisten_addr = "x"\ndev = true\n')
    problems = _problems(config=config)
    assert any("unknown key 'listen_addr'" in p for p in problems)
    assert any("unknown key 'dev'" in p for p in problems)
    broken = _toml(tmp_path, "issuer = [unclosed\n")
    assert broken in _one_problem(config=broken)
    missing = str(tmp_path / "nope.toml")
    assert missing in _one_problem(config=missing)


# --- validation ----------------------------------------------------------------------------


def test_issuer_and_audience_required_without_dev():
    problems = _problems()
    assert len(problems) == 2
    assert "issuer is required" in problems[0]
    assert "AUTHZ_ISSUER" in problems[0]
    assert "audience is required" in problems[1]
    assert "AUTHZ_AUDIENCE" in problems[1]


def test_dev_needs_no_issuer_or_audience():
    s = load_settings({"dev": True}, {})
    assert s.dev
    assert s.issuer == ()


def test_dev_next_to_a_real_issuer_is_refused():
    assert "--dev refuses" in _one_problem(flags={"dev": True}, env={"AUTHZ_ISSUER": ISSUER})
    assert "--dev refuses" in _one_problem(flags={"dev": True}, env={"AUTHZ_JWKS_URL": ISSUER + "jwks"})


def test_dev_on_a_non_loopback_address_is_warned_about():
    assert load_settings({"dev": True}, {}).warnings == ()
    assert load_settings({"dev": True, "listen": "[::1]:50051"}, {}).warnings == ()
    s = load_settings({"dev": True, "listen": "0.0.0.0:50051", "http_listen": "127.0.0.1:8080"}, {})
    assert len(s.warnings) == 1
    assert "0.0.0.0:50051" in s.warnings[0]
    assert "dev key" in s.warnings[0]
    # Outside dev mode a public address is the normal case.
    assert load_settings({"listen": "0.0.0.0:50051"}, REQUIRED).warnings == ()


def test_forward_auth_needs_the_http_listener():
    assert "set http_listen" in _one_problem(env={**REQUIRED, "AUTHZ_FORWARD_AUTH": "true"})
    assert load_settings(
        {}, {**REQUIRED, "AUTHZ_FORWARD_AUTH": "true", "AUTHZ_HTTP_LISTEN": "127.0.0.1:8080"}
    ).forward_auth


def test_dev_cannot_come_from_the_environment():
    # Dev mode is a deliberate flag, never a leftover variable in a deployment.
    assert not load_settings({}, {**REQUIRED, "AUTHZ_DEV": "1"}).dev


@pytest.mark.parametrize(
    "issuer",
    ["http://tenant.auth0.com/", "http://10.0.0.5:8080/", "http://127.0.0.1.evil.example/"],
)
def test_http_issuer_on_a_non_loopback_host_is_rejected(issuer):
    problem = _one_problem(env={"AUTHZ_ISSUER": issuer, "AUTHZ_AUDIENCE": AUDIENCE})
    assert issuer in problem
    assert "loopback" in problem


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:8080/", "http://localhost:3000/", "http://[::1]:9000/"])
def test_http_issuer_on_loopback_is_accepted(issuer):
    s = load_settings({}, {"AUTHZ_ISSUER": issuer, "AUTHZ_AUDIENCE": AUDIENCE})
    assert s.issuer == (issuer,)
    assert s.jwks_url == issuer + ".well-known/jwks.json"


def test_non_http_issuer_and_plain_http_jwks_are_rejected():
    problems = _problems(
        env={
            "AUTHZ_ISSUER": "tenant.auth0.com",
            "AUTHZ_AUDIENCE": AUDIENCE,
            "AUTHZ_JWKS_URL": "http://keys.example/",
        }
    )
    assert any("issuer 'tenant.auth0.com' is not an https URL" in p for p in problems)
    assert any(p.startswith("jwks_url 'http://keys.example/'") and "loopback" in p for p in problems)


def test_issuer_without_trailing_slash_warns():
    s = load_settings({}, {"AUTHZ_ISSUER": "https://tenant.eu.auth0.com", "AUTHZ_AUDIENCE": AUDIENCE})
    assert len(s.warnings) == 1
    assert "trailing slash" in s.warnings[0]
    assert "https://tenant.eu.auth0.com" in s.warnings[0]
    # Compared exactly: the issuer is not silently "fixed".
    assert s.issuer == ("https://tenant.eu.auth0.com",)
    assert s.jwks_url == "https://tenant.eu.auth0.com/.well-known/jwks.json"


@pytest.mark.parametrize("algorithms", ["HS256", "none", "RS256,HS256", "rs256", ""])
def test_bad_algorithms_are_rejected(algorithms):
    problem = _one_problem(env={**REQUIRED, "AUTHZ_ALGORITHMS": algorithms})
    assert problem.startswith("algorithms ")
    assert "not allowed" in problem
    assert "RS256" in problem  # names the choices


def test_tls_cert_without_key(tmp_path):
    cert = tmp_path / "server.pem"
    cert.write_text("not checked here")
    problem = _one_problem(env={**REQUIRED, "AUTHZ_TLS_CERT": str(cert)})
    assert "tls_cert and tls_key go together" in problem


def test_tls_key_without_cert(tmp_path):
    key = tmp_path / "server.key"
    key.write_text("not checked here")
    assert "tls_cert and tls_key go together" in _one_problem(env={**REQUIRED, "AUTHZ_TLS_KEY": str(key)})


def test_client_ca_without_cert(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    problem = _one_problem(env={**REQUIRED, "AUTHZ_TLS_CLIENT_CA": str(ca)})
    assert "tls_client_ca (mTLS) needs tls_cert and tls_key" in problem


def test_tls_files_must_exist(tmp_path):
    env = {
        **REQUIRED,
        "AUTHZ_TLS_CERT": str(tmp_path / "missing.pem"),
        "AUTHZ_TLS_KEY": str(tmp_path / "k.pem"),
    }
    problems = _problems(env=env)
    assert len(problems) == 2
    assert all("does not exist" in p for p in problems)


def test_ranges_and_addresses():
    env = {
        **REQUIRED,
        "AUTHZ_LEEWAY_SECONDS": "-1",
        "AUTHZ_BATCH_LIMIT": "0",
        "AUTHZ_WORKERS": "100",
        "AUTHZ_MAX_CONCURRENT_RPCS": "0",
        "AUTHZ_LISTEN": "50051",
        "AUTHZ_HTTP_LISTEN": "localhost:http",
    }
    problems = _problems(env=env)
    assert any(p.startswith("max_concurrent_rpcs 0 must be between") for p in problems)
    assert any(p.startswith("leeway_seconds -1.0 must be between") for p in problems)
    assert any(p.startswith("batch_limit 0 must be between") for p in problems)
    assert any(p.startswith("workers 100 must be between") for p in problems)
    assert any(p.startswith("listen '50051' is not host:port") for p in problems)
    assert any(p.startswith("http_listen 'localhost:http' is not host:port") for p in problems)
    assert len(problems) == 6


def test_several_problems_reported_together(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    env = {
        "AUTHZ_ISSUER": "http://tenant.auth0.com/",
        "AUTHZ_ALGORITHMS": "HS256",
        "AUTHZ_TLS_CLIENT_CA": str(ca),
        "AUTHZ_BATCH_LIMIT": "many",
    }
    problems = _problems(env=env)
    assert len(problems) == 5, problems
    text = "\n".join(problems)
    for needle in ("AUTHZ_BATCH_LIMIT", "audience is required", "loopback", "HS256", "tls_client_ca"):
        assert needle in text
    message = str(ConfigError(problems))
    assert message.count("\n  ") == 5  # one line per problem


def test_toml_numbers_are_not_silently_coerced(tmp_path):
    config = _toml(
        tmp_path,
        f'issuer = "{ISSUER}"\naudience = "{AUDIENCE}"\n'
        "batch_limit = 5.9\nleeway_seconds = true\nworkers = 2.0\n",
    )
    problems = _problems(config=config)
    assert len(problems) == 2, problems
    assert any(p.startswith("config file key 'batch_limit'") and "whole number" in p for p in problems)
    assert any(p.startswith("config file key 'leeway_seconds'") for p in problems)


# --- the CLI -------------------------------------------------------------------------------


def _run_cli(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    return subprocess.run(
        [sys.executable, "-m", "authz.cli.main", *args],
        cwd=tmp_path,
        env={**clean, "AUTHZ_DEV_DIR": str(tmp_path / "dev"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_serve_dev_next_to_a_real_issuer_exits_2(tmp_path):
    done = _run_cli(tmp_path, "serve", "--dev", env={"AUTHZ_ISSUER": ISSUER})
    assert done.returncode == 2, done.stderr
    assert "invalid configuration" in done.stderr
    assert "--dev refuses to start next to a real issuer" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "dev").exists()  # refused before creating a dev key


def test_cli_serve_reports_every_problem(tmp_path):
    done = _run_cli(tmp_path, "serve", "--algorithms", "none", env={"AUTHZ_BATCH_LIMIT": "0"})
    assert done.returncode == 2, done.stderr
    for needle in (
        "issuer is required",
        "audience is required",
        "algorithms none not allowed",
        "batch_limit 0",
    ):
        assert needle in done.stderr
    assert "Traceback" not in done.stderr


def test_policy_store_must_be_a_postgresql_uri_and_is_never_echoed():
    assert load_settings(env={**REQUIRED, "AUTHZ_POLICY_STORE": "postgresql://a@db:5432/authz"}).policy_store
    for value in ("mysql://u:s3cret@db/x", "u:s3cret@[bad", "host=db password=s3cret"):
        problem = _one_problem(env={**REQUIRED, "AUTHZ_POLICY_STORE": value})
        assert "postgresql://USER@HOST:PORT/DATABASE" in problem and "s3cret" not in problem
    problem = _one_problem(env={**REQUIRED, "AUTHZ_POLICY_STORE_CHECK_SECONDS": "0"})
    assert "policy_store_check_seconds 0.0 must be between 1 and 3600" in problem
