# creditpipe — the two commands everyone needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export CREDITPIPE_HOME ?= $(CURDIR)/data
# PostgreSQL for the store tests (issue #3 onwards); `make test` starts the local server if needed.
export CREDITPIPE_TEST_DB_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: help install run test lint typecheck format pytest postgres bench clean

help:
	@echo "make run    — create .venv, install, run the pipeline over the bundled sample drops, print where the outputs are"
	@echo "make test   — lint (ruff + mypy) and the test suite"
	@echo "make bench  — 1,000,000-row check and store-load benchmarks (bench/)"
	@echo "make format — apply ruff's formatter and fixes"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "creditpipe needs Python >= 3.11 (set PYTHON=...)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	@bash scripts/run-samples.sh

lint: install
	$(VENV)/bin/ruff check etl dags tests bench
	$(VENV)/bin/ruff format --check etl dags tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/creditpipe expectations generate --check

typecheck: install
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix etl dags tests bench
	$(VENV)/bin/ruff format etl dags tests bench

postgres:
	@bash scripts/ensure-postgres.sh

pytest: install postgres
	$(VENV)/bin/pytest -q

test: lint pytest

bench: install postgres
	$(PY) bench/check_bench.py
	$(PY) bench/load_bench.py

clean:
	rm -rf $(VENV) data bench/out .pytest_cache .mypy_cache .ruff_cache
