# Sparklin — the commands the README documents. `make demo` runs the product on the embedded
# default (SQLite, tasks in-process); `make test` is what CI runs (`.ci/run`).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The test suite runs against real servers; these are the machine's defaults.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/sparklin
TEST_REDIS_URL ?= redis://127.0.0.1:6379/14
# RabbitMQ, the production broker, for the runs that start a worker (e2e, browser, bench).
TEST_BROKER_URL ?= amqp://guest:guest@127.0.0.1:5672//

.PHONY: help setup demo run-demo test check lint migrations-check test-unit test-e2e test-browser \
        test-slow system-deps services bench messages clean

help:
	@echo "make demo    set up and run Sparklin with demo data (web :8000, gateway :9000)"
	@echo "make test    set up and run the whole test suite (PostgreSQL, Redis, worker, browser)"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	scripts/run-demo

# --- tests ------------------------------------------------------------------------------------
system-deps:
	scripts/install-system-deps

services:
	scripts/ensure-services

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

migrations-check: setup
	$(PY) manage.py makemigrations --check --dry-run

test-unit: setup
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	  $(VENV)/bin/pytest -m "not e2e and not browser" -p no:cacheprovider

# Bounded fault tests included (a few minutes); the long ones are marked `slow` (test-slow).
test-e2e: setup
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  $(VENV)/bin/pytest -m "e2e and not slow" -p no:cacheprovider

test-slow: setup
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  $(VENV)/bin/pytest -m slow -p no:cacheprovider

# Playwright's sync API cannot share a process with other asyncio users: its own invocation.
test-browser: setup
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  DJANGO_ALLOW_ASYNC_UNSAFE=true $(VENV)/bin/pytest -m browser -p no:cacheprovider

test: system-deps services setup lint migrations-check test-unit test-e2e test-browser

check: test

# system-deps: the expense-note PDFs need libharfbuzz-subset0 (without it ~0.3 s more per note).
bench: system-deps setup services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  $(PY) -m bench.gateway
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  $(PY) -m bench.storm
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) $(PY) -m bench.worker
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) -m bench.meters
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) -m bench.power
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) $(PY) -m bench.relay
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  $(PY) -m bench.fuzz
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  $(PY) -m bench
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  $(PY) -m bench.lag
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m bench.portal

messages: setup
	$(PY) manage.py makemessages -l fr --ignore=.venv --ignore=tests
	$(PY) manage.py compilemessages --ignore=.venv

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache .ruff_cache
