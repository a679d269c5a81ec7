# Two commands: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_TEST_URL ?= postgresql+psycopg://127.0.0.1:5432/test
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15
RUFF_ARGS = $(shell $(PYTHON) -c 'import configparser; c = configparser.ConfigParser(); c.read("setup.cfg"); print(" ".join("--config %s" % repr(k + "=" + v.strip()) for k, v in c["ruff"].items()))')

.PHONY: run keys test test-fast test-sqlite test-postgres lint lock fuzz bench profile clean sdk

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements.txt -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/flask --app wsgi db upgrade
	$(BIN)/flask --app wsgi org ensure-dev
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

# New test keys for the development organization `make run` made (its first keys are printed once).
keys: $(VENV)/.runtime
	$(BIN)/flask --app wsgi org ensure-dev --new-keys

lint: $(VENV)/.dev
	$(BIN)/ruff check $(RUFF_ARGS) app tests bench migrations examples wsgi.py gunicorn.conf.py
	$(BIN)/mypy
	$(BIN)/lint-imports

# The pinned locks, generated from requirements.in / requirements-dev.in with pip-tools (kept in a
# venv of its own, so it never enters the locks). Existing pins are kept; to move one package:
# `make lock LOCK_ARGS="--upgrade-package NAME"`.
PIP_COMPILE = .venv-lock/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS)
lock:
	test -x .venv-lock/bin/pip-compile || { $(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install --quiet pip-tools==7.6.2; }
	$(PIP_COMPILE) requirements.in -o requirements.txt
	$(PIP_COMPILE) requirements-dev.in -o requirements-dev.txt

test: lint test-sqlite test-postgres

test-sqlite: $(VENV)/.dev
	$(BIN)/python -m pytest

# The suite without gunicorn, the services a test starts itself (redis-server, PostgreSQL, nginx)
# and the browser: in-process tests on SQLite only (see the markers in setup.cfg).
test-fast: $(VENV)/.dev
	$(BIN)/python -m pytest -m "not gunicorn and not services"

# Runs again on PostgreSQL + Redis when they answer on loopback; says so when they do not.
test-postgres: $(VENV)/.dev
	@if $(BIN)/python tests/services.py "$(PG_TEST_URL)" "$(REDIS_TEST_URL)"; then \
		echo "Second run on PostgreSQL + Redis; tests marked own_services ran in the first run already (they start their own PostgreSQL and Redis)"; \
		USHER_TEST_DATABASE_URL="$(PG_TEST_URL)" USHER_TEST_REDIS_URL="$(REDIS_TEST_URL)" $(BIN)/python -m pytest -m "not own_services"; \
	else echo "PostgreSQL or Redis not answering on loopback: the PostgreSQL + Redis run was NOT done"; fi

# A longer schemathesis pass than the bounded one inside `make test`.
fuzz: $(VENV)/.dev
	FUZZ_MAX_EXAMPLES=$${FUZZ_MAX_EXAMPLES:-200} $(BIN)/python -m pytest tests/test_fuzz.py -p no:cacheprovider

# Throughput and latency against a real gunicorn, side by side with a bare-Flask baseline and
# the Better Auth peer, plus the drop through nginx; writes bench/RESULTS.md (about 17 minutes).
# Installs Debian's wrk, nginx and npm when missing; the peer itself is installed by the bench
# (npm ci into bench/peer/node_modules), never by `make run` or `make test`.
BENCH_PACKAGES = $(strip $(if $(shell command -v wrk),,wrk) $(if $(shell command -v nginx),,nginx) \
	$(if $(shell command -v npm),,npm))
bench: $(VENV)/.dev
	@if [ -n "$(BENCH_PACKAGES)" ]; then if [ "$$(id -u)" = 0 ]; then apt-get install -y -q $(BENCH_PACKAGES); \
		else sudo apt-get install -y -q $(BENCH_PACKAGES); fi; fi
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Where a worker's CPU goes under the guest, refresh and queue status loads (py-spy); writes bench/out/profile.md.
profile: $(VENV)/.dev
	@command -v wrk >/dev/null || { if [ "$$(id -u)" = 0 ]; then apt-get install -y -q wrk; \
		else sudo apt-get install -y -q wrk; fi; }
	$(BIN)/python -m bench.profile

# The browser SDK (clients/js, @usher/js) and its React bindings (clients/react): installs the
# locked devDependencies (npm ci, into each package's git-ignored node_modules/), regenerates the
# wire types from the app's /openapi.json, builds, and copies the served files to app/sdk/
# (checked in: `make run` needs no Node). Needs node and npm.
sdk: $(VENV)/.dev
	cd clients/js && npm ci --no-audit --no-fund --loglevel=error && ../../$(BIN)/python scripts/openapi.py openapi.json \
		&& node_modules/.bin/openapi-typescript openapi.json -o src/openapi.d.ts && node build.mjs --install
	cd clients/react && npm ci --no-audit --no-fund --loglevel=error && node build.mjs

clean:
	rm -rf $(VENV) .venv-lock .pytest_cache
