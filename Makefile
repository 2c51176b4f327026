# vitalchain: two commands on a fresh machine (python3, node/npm, apt).
#   make demo   set up, then run the end-to-end demo (report in runs/<timestamp>/)
#   make test   set up, then lint, type-check, forge tests and pytest (what CI runs)
# Set-up is stamp-based: re-running with nothing changed does no work.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the tests and the demo use (scripts/ensure-apt installs them when root);
# chromium is the browser the portal's tests drive through Playwright.
APT_PACKAGES := mosquitto mosquitto-clients postgresql chromium
# ... and the benchmarks' traffic capture (make bench).
BENCH_APT_PACKAGES := tshark

.PHONY: setup apt test lint typecheck pytest demo bench clean

# The Solidity toolchain (npm ci from package-lock.json, forge, anvil) and its targets.
include contracts.mk

# Swagger UI for the gateway's /docs, vendored from npm (swagger-ui-dist, pinned in
# package-lock.json) into the package, so the page works on a machine with no internet access.
DOCS_ASSETS := src/vitalchain/edge/static/swagger-ui
DOCS_STAMP := $(DOCS_ASSETS)/.vendored

# uPlot for the care portal's charts, likewise (uplot, pinned in package-lock.json).
PORTAL_ASSETS := src/vitalchain/portal/static/vendor
PORTAL_STAMP := $(PORTAL_ASSETS)/.vendored

setup: apt $(STAMP) $(NODE_STAMP) $(DOCS_STAMP) $(PORTAL_STAMP)

$(PORTAL_STAMP): $(NODE_STAMP)
	@mkdir -p $(PORTAL_ASSETS)
	cp node_modules/uplot/dist/{uPlot.iife.min.js,uPlot.min.css} node_modules/uplot/LICENSE $(PORTAL_ASSETS)/
	@touch $@

$(DOCS_STAMP): $(NODE_STAMP)
	@mkdir -p $(DOCS_ASSETS)
	cp node_modules/swagger-ui-dist/{swagger-ui-bundle.js,swagger-ui.css,favicon-32x32.png,LICENSE,NOTICE} $(DOCS_ASSETS)/
	@touch $@

apt:
	@PYTHON=$(PYTHON) scripts/ensure-apt $(APT_PACKAGES)

$(STAMP): pyproject.toml $(wildcard src/vitalchain/crypto/primitives/*.c)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: setup
	$(VENV)/bin/mypy

# One worker per core; a file's tests stay on one worker, so module-scoped chains are deployed
# once.  Every worker starts its own services (anvil, mosquitto, PostgreSQL) on free ports.
pytest: setup
	$(PY) -m pytest -q -n auto --dist loadfile

# The pytest suite includes the anvil integration tests and the artifact recompile check.
test: lint typecheck contracts-test pytest

demo: setup
	$(VENV)/bin/vitalchain demo

# Every figure in docs/benchmarks.md, each script with its default sizes (about 50 minutes).
bench: setup
	@PYTHON=$(PYTHON) scripts/ensure-apt $(BENCH_APT_PACKAGES)
	$(PY) benchmarks/crypto.py
	$(PY) benchmarks/ledger.py
	$(PY) benchmarks/gateway.py
	$(PY) benchmarks/store.py
	$(PY) benchmarks/alerts.py --repeats 3 --write
	$(PY) benchmarks/soak.py --write
	$(PY) benchmarks/outbox.py
	$(PY) benchmarks/paper002.py
	$(PY) benchmarks/baseline.py --write --repeats 3
	$(PY) benchmarks/gateways.py --write
	$(PY) benchmarks/faults.py --write
	$(PY) benchmarks/fuzz.py --write
	$(PY) benchmarks/receipts.py --write
	$(PY) benchmarks/scale.py --write

clean: contracts-clean
	rm -rf $(VENV) node_modules $(DOCS_ASSETS) $(PORTAL_ASSETS) build src/*.egg-info src/vitalchain/crypto/primitives/*.so .pytest_cache .mypy_cache .ruff_cache
