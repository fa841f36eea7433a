# Cordum: `make demo` (embedded SQLite, eager Celery) and `make test` (PostgreSQL, Redis, Celery, Chromium).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Tests talk to the real services the machine runs; override to point elsewhere.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test test-fast lint docs install bench chromium node clean-demo dist

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python requirements/base.txt requirements/dev.txt requirements/sidecar.txt pyproject.toml
	$(BIN)/pip install --disable-pip-version-check -q -r requirements/dev.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

node: node_modules/.installed

# Debian's Chromium drives the browser tests (Playwright's own download is unreachable here).
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		echo "Installing Debian's chromium for the browser tests…"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

# The wheel the control plane serves at /dist/simple/ (docs/install.md).
dist: $(STAMP)
	rm -rf dist && $(BIN)/pip wheel --disable-pip-version-check -q --no-deps -w dist .

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python manage.py makemigrations --check --dry-run

# The docs site (mkdocs-material); --strict fails the build on a broken link or a missing page.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict --quiet

test: $(STAMP) node chromium lint docs
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CHROMIUM=$(CHROMIUM) $(BIN)/pytest $(PYTEST_ARGS)

# The fast lane: the engine, the sidecar (against real MCP servers) and the CLI, with no database or Redis.
test-fast: $(STAMP) node
	env -u DATABASE_URL -u REDIS_URL $(BIN)/pytest --no-services -q -n 2 $(PYTEST_ARGS)

demo: $(STAMP) node
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py load_demo
	$(BIN)/python manage.py run_demo

bench: $(STAMP)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements/bench.txt
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python bench/run.py

clean-demo:
	rm -rf .cordum
