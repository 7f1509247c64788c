# The README's commands. Everything runs from the repo's .venv, built from uv.lock.
SHELL := /bin/bash
.DEFAULT_GOAL := help

DATA ?= data
export ADLOOP_WAREHOUSE_PATH ?= $(abspath $(DATA))/warehouse.duckdb
export ADLOOP_LANDING_PATH ?= $(abspath $(DATA))/sim/landing
export ADLOOP_ARTIFACTS_PATH ?= $(abspath $(DATA))/artifacts
export DAGSTER_HOME ?= $(abspath $(DATA))/dagster_home
export ADLOOP_SANDBOX_DIR ?= $(abspath $(DATA))/sandbox
# Demo-only key for hashing emails and IPs in staging; set your own secret in production.
export ADLOOP_PII_HASH_KEY ?= adloop-demo-key-do-not-use-in-production
export DAGSTER_DISABLE_TELEMETRY := 1
export PYTHONWARNINGS ?= ignore::DeprecationWarning

VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
MANIFEST := dbt_project/target/manifest.json

.PHONY: help setup prepare demo test test-fast ui lint format bench clean lightweight-mmm

help:
	@echo "make demo   set up, simulate a market and run the whole asset graph (embedded defaults)"
	@echo "make test   set up and run the test suite"
	@echo "make ui     start the Dagster UI on http://127.0.0.1:3000"
	@echo "make bench  ingestion + dbt benchmark (bench/ingest_transform.py)"
	@echo "make lint   ruff check and format check"
	@echo "make lightweight-mmm  build .venv-lwmmm, the pinned environment of the lightweight-mmm backend"

$(BIN)/.synced: pyproject.toml uv.lock scripts/bootstrap.sh
	@scripts/bootstrap.sh
	@touch $@

setup: $(BIN)/.synced $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.local.yaml
	@mkdir -p $(DAGSTER_HOME)
	@cp $< $@

# The dbt manifest is built, never committed.
prepare: setup
	@cd dbt_project && ../$(BIN)/dbt parse --quiet --profiles-dir .

demo: prepare lightweight-mmm
	@$(BIN)/adloop demo --data-dir $(DATA)

test: prepare lightweight-mmm
	@$(BIN)/pytest

test-fast: prepare
	@$(BIN)/pytest -m "not slow"

ui: prepare
	@$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

lint: setup
	@$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	@$(BIN)/ruff check --fix . && $(BIN)/ruff format .

bench: prepare
	@$(BIN)/python bench/ingest_transform.py

clean:
	rm -rf $(DATA) dbt_project/target dbt_project/logs .pytest_cache

# lightweight-mmm needs old jax and numpy<2, so it has its own environment (.venv-lwmmm).
lightweight-mmm:
	@scripts/build_lightweight_mmm_env.sh
