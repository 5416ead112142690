#!/usr/bin/env bash
# Run the Python test suite on the other supported CPythons this machine has (3.12, 3.13),
# each in its own virtual environment (.venv-3.12, .venv-3.13). The browser, TypeScript and
# benchmark tests, the soak and the PHP / TypeScript adapters' proofs do not depend on the
# Python version and run once, in the main suite.
#
# 3.11 (the main suite) and 3.13 bracket the supported range and run every other file; 3.12
# runs the files whose behaviour the interpreter's version can change: the event loop, signals,
# threads and subprocesses of a serving process, memory measured by tracemalloc or RSS, and the
# `ast` parses of matchers and conditions. The whole suite again on 3.12 took 390 s of a 29 min
# CI run; ALL_PYTHONS=1 runs it there too.
set -euo pipefail
cd "$(dirname "$0")/.."

SENSITIVE=(
  tests/test_server.py tests/test_smoke_grpc.py tests/test_faults.py tests/test_workers.py
  tests/test_tls.py tests/test_reload.py tests/test_http.py tests/test_http_request_shape.py
  tests/test_hostile_bodies.py tests/test_slow_clients_grpc.py tests/test_slow_clients_http.py
  tests/test_metrics_slow_clients.py tests/test_open_streams.py tests/test_shedding.py
  tests/test_admission.py tests/test_listen_errors.py tests/test_forward_auth.py
  tests/test_pg_serve.py tests/test_tracing.py tests/test_decision_log.py tests/test_logrecords.py
  tests/test_tokens.py tests/test_cache_bounds.py tests/test_memory_bound.py tests/test_engine.py
  tests/test_model_refusals.py tests/test_policy_text_fuzz.py tests/test_plan_shapes.py
  tests/test_conformance.py
)

found=0
for version in 3.12 3.13; do
  python=""
  if command -v pyenv >/dev/null; then
    release=$(pyenv versions --bare 2>/dev/null | grep -E "^${version//./\\.}\.[0-9]+$" | tail -n 1 || true)
    [ -n "$release" ] && python="$(pyenv prefix "$release")/bin/python${version}"
  fi
  [ -x "$python" ] || python=$(command -v "python${version}" || true)
  if [ -z "$python" ] || ! "$python" -c 'import sys' 2>/dev/null; then
    echo "Python ${version}: not installed here, skipped"
    continue
  fi
  found=1
  venv=".venv-${version}"
  if [ ! -f "${venv}/.installed" ] || [ pyproject.toml -nt "${venv}/.installed" ]; then
    "$python" -m venv "$venv"
    "${venv}/bin/python" -m pip install --quiet --upgrade pip
    "${venv}/bin/python" -m pip install --quiet --no-compile -e ".[dev]" -e clients/python
    touch "${venv}/.installed"
  fi
  files=()
  if [ "$version" = 3.12 ] && [ -z "${ALL_PYTHONS:-}" ]; then
    files=("${SENSITIVE[@]}")
    echo "== Python ${version}: $("${venv}/bin/python" --version), the ${#files[@]} version-sensitive files"
  else
    echo "== Python ${version}: $("${venv}/bin/python" --version)"
  fi
  "${venv}/bin/python" -m pytest -q -p no:cacheprovider -n "${TEST_WORKERS:-2}" --dist loadfile \
    --ignore=tests/test_e2e_browser.py --ignore=tests/test_client_typescript.py \
    --ignore=tests/test_bench_smoke.py --ignore=tests/test_node_client.py \
    --ignore=tests/test_soak.py --ignore=tests/test_php_plan.py --ignore=tests/test_typescript_plan.py \
    "${files[@]}"
done
[ "$found" = 1 ] || echo "no other Python versions found"
