# authz: `make run` starts the service on the demo policies in dev mode; `make test` runs everything.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NPM_STAMP := clients/typescript/node_modules/.installed

.PHONY: run test test-pythons lint typecheck proto proto-check unit clean bench fuzz soak system-deps e2e-deps demo

# --no-compile: Python writes bytecode at first import for the modules used; compiling every
# installed file was a third of the install's time.
$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e ".[dev]" -e clients/python
	touch $(STAMP)

## run: set up and start authz in dev mode (local issuer, bundled demo policies), with the
## Connect / gRPC-Web listener on HTTP_LISTEN for browsers from CORS_ORIGINS (the Vite demo)
HTTP_LISTEN  ?= 127.0.0.1:8080
CORS_ORIGINS ?= http://localhost:5173,http://127.0.0.1:5173
run: $(STAMP)
	$(BIN)/authz serve --dev --http-listen $(HTTP_LISTEN) --cors-origins $(CORS_ORIGINS)

## demo: build the React demo page and run it with its own dev authz (gRPC 50051, HTTP 8080):
## open http://127.0.0.1:5173/ and pick a user (stop `make run` first: same ports)
demo: $(STAMP) $(NPM_STAMP)
	cd clients/typescript && npm run demo:build
	node clients/typescript/demo/scripts/serve-demo.mjs

## system-deps: Debian packages the tests drive: chromium (browser e2e), php with curl and the PSR-7 /
## Laravel request and database libraries with the SQLite and PostgreSQL PDO drivers (PHP client
## and its query adapter), curl (HTTP tests), nginx (forward auth through auth_request),
## postgresql (the policy store's and the data filtering tests start a throwaway cluster).
## Installed once, skipped when present.
SYSTEM_PACKAGES := chromium php-cli php-curl php-illuminate-http php-illuminate-database php-sqlite3 php-pgsql \
  php-nyholm-psr7 curl nginx postgresql
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v php >/dev/null || ! command -v curl >/dev/null \
	  || [ ! -x /usr/sbin/nginx ] || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	  || ! php -m | grep -qx curl || [ ! -f /usr/share/php/Illuminate/Http/autoload.php ] \
	  || [ ! -f /usr/share/php/Nyholm/Psr7/autoload.php ] \
	  || [ ! -f /usr/share/php/Illuminate/Database/autoload.php ] \
	  || ! php -m | grep -qx pdo_sqlite || ! php -m | grep -qx pdo_pgsql; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null \
	  || echo "warning: could not install $(SYSTEM_PACKAGES); the tests that need them skip and say why" >&2; \
	fi

## e2e-deps: what the TypeScript and browser tests need: system packages and clients/typescript's packages
e2e-deps: system-deps $(NPM_STAMP)

$(NPM_STAMP): clients/typescript/package-lock.json
	cd clients/typescript && npm ci --no-audit --no-fund
	touch $(NPM_STAMP)

## test: set up, lint, type-check, check generated code, run the whole suite, then the
## Python suite again on CPython 3.13 and its version-sensitive files on 3.12 where this
## machine has them (scripts/test_other_pythons.sh); the files run on
## TEST_WORKERS pytest-xdist workers (a file's tests on one worker; tests/conftest.py)
TEST_WORKERS ?= 2
export TEST_WORKERS
# Prerequisites run in order (this Makefile is not meant for -j): unit last, after e2e-deps.
test: $(STAMP) lint typecheck proto-check e2e-deps unit
	scripts/test_other_pythons.sh

test-pythons: $(STAMP)
	scripts/test_other_pythons.sh

unit: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy service/authz clients/python/authz_client bench

## bench: measure decisions, loads, tokens, serving, peer services, overload and memory against same-run baselines (not part of test; installs the Node peer's packages)
bench: $(STAMP)
	$(BIN)/python bench/run.py

## fuzz: the hypothesis property tests with many more examples than `make test` runs
## (the conftest's hypothesis profile `fuzz`: 3,000 examples each; tests that count their own
## examples read AUTHZ_FUZZ_EXAMPLES)
FUZZ_EXAMPLES ?= 2000
fuzz: $(STAMP)
	AUTHZ_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q \
	  tests/test_properties_*.py tests/test_policy_text_fuzz.py tests/test_pattern_differential.py \
	  tests/test_differential.py

## soak: a real `authz serve` under mixed load for SOAK_SECONDS (default 10 minutes) with a
## policy reload every second, JWKS rotations and outages and a TLS certificate rotation;
## fails on any failed RPC or a resident-memory slope over 5% (tests/soak.py; `make test`
## runs it for 20 s, 60 s when CI is set)
SOAK_SECONDS ?= 600
soak: $(STAMP)
	$(BIN)/python -m tests.soak --seconds $(SOAK_SECONDS)

## proto: regenerate the committed gRPC / protobuf code
proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

proto-check: $(STAMP)
	$(BIN)/python scripts/gen_proto.py --check

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
