# Incident intelligence: the embedded local stack and the developer workflow.
# `make` lists the targets. Configuration: .env (see .env.example).

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(PYTHON) -m uv
STAMP := $(VENV)/.setup-stamp
KAFKA_JARS := .jars/kafka/.verified
DELTA_SPARK_JARS := .jars/delta-spark/.verified
SETUP := $(STAMP) $(KAFKA_JARS) class-data
WORKSPACE_FILES := pyproject.toml uv.lock $(wildcard */pyproject.toml)

export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)

.PHONY: help setup class-data test-tools up down status logs demo test test-fast lint format clean stream trigger-dag bench

help: ## List the targets
	@echo "Incident intelligence - make targets"
	@grep -hE '^[a-zA-Z_%-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}'
	@echo "Variables: SCENARIO, RATE, DURATION, SEED, SPEEDUP (trigger-dag, demo, cluster-trigger-dag); WAIT=1 (trigger-dag, cluster-trigger-dag); PROCESSES=... (cluster-up, cluster-down, cluster-logs); ONCE=1 (stream); QUICK=1, ONLY=..., RESULTS=DIR (bench); YES=1 (clean)"

$(STAMP): $(WORKSPACE_FILES)
	@command -v java >/dev/null || { echo "error: Java 17 is required (Spark and Kafka run on the JVM): install a JDK 17, e.g. apt-get install openjdk-17-jre-headless"; exit 1; }
	@major=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
		[ "$${major:-0}" -ge 17 ] || { echo "error: Java 17 or newer is required (found $$(java -version 2>&1 | head -1)): install a JDK 17, e.g. apt-get install openjdk-17-jre-headless"; exit 1; }
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || { echo "installing uv..."; $(PYTHON) -m pip install --quiet --disable-pip-version-check uv; }
	@echo "installing the locked environment into $(VENV) (first time: about a minute)..."
	@$(UV) sync --frozen --all-packages --compile-bytecode
	@touch $(STAMP)

$(KAFKA_JARS): stack/jvm/kafka/pom.xml stack/jvm/kafka/jars.sha256 | $(STAMP)
	@command -v mvn >/dev/null || { echo "error: Apache Maven (mvn) is required to fetch the Kafka jars from Maven Central: install it, e.g. apt-get install maven"; exit 1; }
	@$(BIN)/python -m incident_stack.jars fetch kafka
	@touch $(KAFKA_JARS)

# Delta Lake for Spark, only for the tests (Spark reading the tables); the stack runs without it.
$(DELTA_SPARK_JARS): stack/jvm/delta-spark/pom.xml stack/jvm/delta-spark/jars.sha256 | $(STAMP)
	@command -v mvn >/dev/null || { echo "error: Apache Maven (mvn) is required to fetch the Delta Lake jars from Maven Central: install it, e.g. apt-get install maven"; exit 1; }
	@$(BIN)/python -m incident_stack.jars fetch delta-spark
	@touch $(DELTA_SPARK_JARS)

# Spark's JVMs start from a class-data archive of the classes they load (incident_contracts.class_data): built
# once per Java runtime and PySpark (about a minute), checked in a moment otherwise. Spark runs without it.
class-data: $(STAMP)
	@$(BIN)/python -m incident_stream.class_data || echo "warning: Spark's JVMs start without the class-data archive (see above)"

setup: $(SETUP) ## Install everything into .venv from uv.lock and the Kafka jars into .jars (run automatically by the other targets)

test-tools: ## Install the system tools the tests drive (headless Chromium, docker-compose validator)
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (apt)..."; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

up: $(SETUP) ## Start the embedded stack (broker, log-ingest, Airflow, dashboard) in the background
	@$(BIN)/incident-stack up $(SERVICES)

down: $(SETUP) ## Stop exactly the processes `make up` started
	@$(BIN)/incident-stack down

status: $(SETUP) ## Show each service, its URL, whether it answers, and the last pipeline run
	@$(BIN)/incident-stack status

logs: $(SETUP) ## Follow all service logs (make logs-broker / logs-log-ingest / logs-airflow / logs-dashboard for one)
	@$(BIN)/incident-stack logs -f

logs-%: $(SETUP)
	@$(BIN)/incident-stack logs -f $*

demo: $(SETUP) ## Start the stack and run the whole pipeline once on a mixed scenario
	@$(BIN)/incident-stack up
	@$(BIN)/incident-stack demo

stream: $(SETUP) ## Run the Spark streaming job in the foreground against the embedded stack (ONCE=1: process the backlog, exit)
	@$(BIN)/incident-stack up broker
	@$(BIN)/incident-stream $(if $(ONCE),--once,)

trigger-dag: $(SETUP) ## Trigger a pipeline run through Airflow (SCENARIO, RATE, DURATION, SEED, SPEEDUP; WAIT=1 follows it)
	@$(BIN)/incident-trigger $(if $(SCENARIO),--scenario $(SCENARIO),) $(if $(RATE),--rate $(RATE),) \
		$(if $(DURATION),--duration $(DURATION),) $(if $(SEED),--seed $(SEED),) \
		$(if $(SPEEDUP),--speedup $(SPEEDUP),) $(if $(WAIT),--wait,)

test: $(SETUP) $(DELTA_SPARK_JARS) test-tools ## Run the whole test suite (unit + integration: real broker, Spark, Airflow, Streamlit)
	@tests/run_suite.sh $(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(SETUP) ## Run only the fast unit tests (no integration test, no Spark session)
	@$(BIN)/pytest -m "not integration and not spark" $(PYTEST_ARGS)

lint: $(SETUP) ## Lint with ruff
	@$(BIN)/ruff check .

format: $(SETUP) ## Format and autofix with ruff
	@$(BIN)/ruff check --fix . && $(BIN)/ruff format .

bench: $(SETUP) ## Run every benchmark and print one table (QUICK=1: a reduced run in a few minutes)
	@$(BIN)/python bench/run.py $(if $(QUICK),--quick,) $(if $(ONLY),--only $(ONLY),) $(if $(RESULTS),--results $(RESULTS),)

.PHONY: maintain migrate-data
maintain: $(SETUP) ## Table maintenance now: retention, compaction, vacuum, log checkpoint of every table; prints a JSON report
	@$(BIN)/python -m incident_contracts.table_maintenance

migrate-data: $(SETUP) ## Convert DATA_DIR's tables from plain Parquet folders (before Delta Lake) to Delta tables; idempotent
	@$(BIN)/python -m incident_contracts.table_migration

clean: $(SETUP) ## Remove runtime state (pids, logs, Airflow home); asks before deleting data/
	@$(BIN)/incident-stack clean $(if $(YES),--yes,)

-include compose.mk
-include cluster.mk
