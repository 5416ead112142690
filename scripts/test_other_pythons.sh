#!/usr/bin/env bash
# Run the Python test suite on every other supported CPython this machine has (3.12, 3.13),
# each in its own virtual environment (.venv-3.12, .venv-3.13). The browser, TypeScript and
# benchmark tests, the soak and the PHP / TypeScript adapters' proofs do not depend on the
# Python version and run once, in the main suite.
set -euo pipefail
cd "$(dirname "$0")/.."

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
    "${venv}/bin/python" -m pip install --quiet -e ".[dev]" -e clients/python
    touch "${venv}/.installed"
  fi
  echo "== Python ${version}: $("${venv}/bin/python" --version)"
  "${venv}/bin/python" -m pytest -q -p no:cacheprovider -n "${TEST_WORKERS:-2}" --dist loadfile \
    --ignore=tests/test_e2e_browser.py --ignore=tests/test_client_typescript.py \
    --ignore=tests/test_bench_smoke.py --ignore=tests/test_node_client.py \
    --ignore=tests/test_soak.py --ignore=tests/test_php_plan.py --ignore=tests/test_typescript_plan.py
done
[ "$found" = 1 ] || echo "no other Python versions found"
