# Two commands: `make demo` and `make test`. Both set up .venv from the lock files.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
UV_VERSION := 0.13.9

.PHONY: demo test test-slow test-all install install-dev lint pytest pytest-slow bench clean chromium web

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: $(BIN)/python requirements.lock pyproject.toml
	$(UV) pip sync --quiet --python $(BIN)/python requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	rm -f $(VENV)/.installed-dev
	touch $@

$(VENV)/.installed-dev: $(BIN)/python requirements-dev.lock pyproject.toml
	$(UV) pip sync --quiet --python $(BIN)/python requirements-dev.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev chromium

# The browser tests drive Debian's chromium (never a downloaded browser build); we run as root.
chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Rebuild the vendored tracker serving/web/dist/cip.js (only when serving/web/src changes).
web:
	cd serving/web && npm ci --no-audit --no-fund && npm run build

demo: $(VENV)/.installed
	$(BIN)/cip --workspace cip-workspace demo

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python .ci/lint_imports.py  # import-linter: layering, private modules

PYTEST := $(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile --durations=25  # one test file per worker: module fixtures are built once

pytest: install-dev
	$(PYTEST) -m "not slow"

pytest-slow: install-dev
	$(PYTEST) -m slow

# `make test`: lint + every test not marked slow (well under 20 minutes on 2 cores).
# `make test-slow`: the tests marked slow (crash/kill runs, notebooks, Spark scoring/ALS, real data);
# CI (.ci/run) runs both.
test: lint pytest
test-slow: pytest-slow
test-all: lint pytest pytest-slow

bench: install-dev
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) cip-workspace .pytest_cache .ruff_cache
