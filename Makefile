# The documented entry points. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ZCDC := $(VENV)/bin/zoho-cdc
PYTEST_ARGS ?=

.PHONY: install java chromium prereqs test test-fast demo bench chaos lint fmt clean dev-up dev-down dev-status

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[local,dev]"
	touch $@

# Debezium runs on the JVM; install a headless Java 17 only when none is present.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "installing openjdk-17-jre-headless"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; }

# Headless Chromium drives the status-page test; Debian's package, installed only when missing.
chromium:
	@test -x /usr/bin/chromium || { \
	  echo "installing chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# PostgreSQL running with wal_level=logical (restarts the local cluster once if needed).
prereqs: install java
	$(PY) -m consumer.local.prepare

test: prereqs chromium
	$(PY) -m pytest $(PYTEST_ARGS)

# Pure-logic tests only: no services needed.
test-fast: install
	$(PY) -m pytest -m "not relay" tests/unit $(PYTEST_ARGS)

demo: prereqs
	$(ZCDC) demo

bench: prereqs
	$(PY) -m benchmarks.run

chaos: prereqs
	$(PY) -m benchmarks.chaos
	$(PY) -m benchmarks.chaos_relay

dev-up: prereqs
	$(ZCDC) dev up

dev-down:
	$(ZCDC) dev down

dev-status:
	$(ZCDC) dev status

lint: install
	$(VENV)/bin/ruff check consumer connectors tests benchmarks
	$(VENV)/bin/ruff format --check consumer connectors tests benchmarks

fmt: install
	$(VENV)/bin/ruff format consumer connectors tests
	$(VENV)/bin/ruff check --fix consumer connectors tests

clean:
	rm -rf $(VENV) .pytest_cache .zoho-cdc
