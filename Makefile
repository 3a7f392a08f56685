# creditpipe — the two commands everyone needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export CREDITPIPE_HOME ?= $(CURDIR)/data
# PostgreSQL for the store tests (issue #3 onwards); `make test` starts the local server if needed.
export CREDITPIPE_TEST_DB_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

# `make airflow`: a local Airflow (api-server, scheduler, dag-processor, triggerer) on the
# project's DAGs and the same CREDITPIPE_HOME; its own home and SQLite metadata DB live here.
AIRFLOW_STANDALONE_HOME ?= $(CURDIR)/.airflow/standalone
AIRFLOW_PORT ?= 8080

.PHONY: help install run airflow test lint typecheck format pytest postgres bench bench-e2e clean

help:
	@echo "make run    — create .venv, install, run the Airflow DAGs (dag.test) over the bundled sample drops, print the summary"
	@echo "make airflow — airflow standalone on the project's DAGs: UI on http://localhost:$(AIRFLOW_PORT), user admin"
	@echo "make test   — lint (ruff + mypy) and the test suite"
	@echo "make bench  — 1,000,000-row check, store-load, flags and publication benchmarks, DAG-folder parse time (bench/)"
	@echo "make bench-e2e — end to end against the I/O floor, 100k and 1M rows (bench/run; --scale by hand)"
	@echo "make format — apply ruff's formatter and fixes"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "creditpipe needs Python >= 3.11 (set PYTHON=...)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	@bash scripts/run-dags.sh

airflow: install
	@mkdir -p "$(AIRFLOW_STANDALONE_HOME)" "$(CREDITPIPE_HOME)/inbox"
	@echo "Airflow UI:  http://localhost:$(AIRFLOW_PORT)   (login: admin)"
	@echo "Password:    $(AIRFLOW_STANDALONE_HOME)/simple_auth_manager_passwords.json.generated"
	@echo "             (generated and printed on the first start; Ctrl-C stops everything)"
	@echo "DAGs:        $(CURDIR)/dags · inbox: $(CREDITPIPE_HOME)/inbox/<office>/<dataset>/"
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
	AIRFLOW_HOME="$(AIRFLOW_STANDALONE_HOME)" \
	AIRFLOW__CORE__DAGS_FOLDER="$(CURDIR)/dags" \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False \
	AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://localhost:$(AIRFLOW_PORT)/execution/ \
	$(VENV)/bin/airflow standalone

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

# Tests in parallel (pytest-xdist), at most 4 workers: much of a test's time is spent waiting
# (PostgreSQL, a quality process, Airflow's dag.test), so on 2 cores the suite took 3:58 instead
# of 8:39 (2026-11-22). `PYTEST_WORKERS=0` runs them in this process, one after another.
PYTEST_WORKERS ?= auto
pytest: install postgres
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --maxprocesses=4

test: lint pytest

bench: install postgres
	$(PY) bench/check_bench.py
	$(PY) bench/load_bench.py
	$(PY) bench/flags_publish_bench.py
	$(PY) bench/dag_parse_bench.py

bench-e2e: install postgres
	bench/run

clean:
	rm -rf $(VENV) data .airflow bench/out .pytest_cache .mypy_cache .ruff_cache
