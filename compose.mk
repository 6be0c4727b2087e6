# The distributed stack (docker-compose.yml): targets included by the Makefile.
# Needs Docker with the compose plugin (`docker compose`); the standalone `docker-compose` works too,
# but only the plugin applies the resource limits. docs/distributed.md describes the stack.

COMPOSE ?= $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; \
	elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; fi)
COMPOSE_DAG_ID := incident_processing_pipeline
SPARK_WORKERS ?= 1
# Parameters of the triggered run (the DAG's params); unset ones keep the DAG's defaults.
COMPOSE_RUN_CONF = $(shell SCENARIO='$(SCENARIO)' RATE='$(RATE)' DURATION='$(DURATION)' SEED='$(SEED)' \
	python3 -c 'import json, os; print(json.dumps({k.lower(): int(os.environ[k]) if os.environ[k].isdigit() \
	else os.environ[k] for k in ("SCENARIO", "RATE", "DURATION", "SEED") if os.environ[k]}))')

.PHONY: compose-env compose-config compose-up compose-down compose-clean compose-logs compose-ps \
	compose-trigger-dag compose-generate compose-tool

compose-tool:
	@if [ -z "$(COMPOSE)" ]; then \
		echo "error: neither 'docker compose' nor 'docker-compose' was found. Install Docker with the compose plugin"; \
		echo "(https://docs.docker.com/compose/install/); the embedded stack (make up) needs no Docker."; exit 1; fi

compose-env: ## Create .env if missing and generate the distributed stack's secrets into it
	@python3 compose/prepare_env.py

compose-config: compose-tool compose-env ## Validate docker-compose.yml with the settings in .env (no engine needed)
	@$(COMPOSE) -f docker-compose.yml config -q && echo "docker-compose.yml is valid"

compose-up: compose-tool compose-env ## Build and start the distributed stack (SPARK_WORKERS=N for more Spark workers)
	@docker info >/dev/null 2>&1 || { echo "error: the Docker engine is not reachable (is Docker running?)"; exit 1; }
	$(COMPOSE) up --build -d --scale spark-worker=$(SPARK_WORKERS)
	@echo ""
	@echo "Starting; first start builds the images (several minutes). Follow with: make compose-logs"
	@echo "  dashboard      http://localhost:$$($(COMPOSE) port dashboard-proxy 8501 2>/dev/null | cut -d: -f2)  (DASHBOARD_USER / DASHBOARD_PASSWORD in .env)"
	@echo "  Airflow        http://localhost:$$($(COMPOSE) port airflow-api-server 8070 2>/dev/null | cut -d: -f2)  (admin / AIRFLOW_ADMIN_PASSWORD in .env)"
	@echo "  Spark master   http://localhost:$$($(COMPOSE) port spark-master 8080 2>/dev/null | cut -d: -f2)"
	@echo "  Kafka UI       http://localhost:$$($(COMPOSE) port kafka-ui 8080 2>/dev/null | cut -d: -f2)  (DASHBOARD_USER / KAFKA_UI_PASSWORD in .env)"
	@echo "  Kafka (host)   localhost:$$($(COMPOSE) port kafka 9092 2>/dev/null | cut -d: -f2)"
	@echo "Then run the pipeline: make compose-trigger-dag"

compose-ps: compose-tool ## Show the distributed stack's containers and their health
	@$(COMPOSE) ps

compose-logs: compose-tool ## Follow the distributed stack's logs (SERVICE=name for one service)
	@$(COMPOSE) logs -f --tail=200 $(SERVICE)

compose-trigger-dag: compose-tool ## Run the pipeline DAG once on the distributed stack (SCENARIO, RATE, DURATION, SEED)
	@$(COMPOSE) exec -T airflow-scheduler airflow dags unpause $(COMPOSE_DAG_ID) >/dev/null
	$(COMPOSE) exec -T airflow-scheduler airflow dags trigger $(COMPOSE_DAG_ID) --conf '$(COMPOSE_RUN_CONF)'
	@echo "Follow the run in Airflow (make compose-up prints the URL) or with: make compose-logs SERVICE=airflow-scheduler"

compose-generate: compose-tool ## Produce extra synthetic traffic into the stack's Kafka (SCENARIO, RATE, DURATION)
	$(COMPOSE) --profile generator run --rm log-generator --scenario $(or $(SCENARIO),mixed) \
		--rate $(or $(RATE),2000) --duration $(or $(DURATION),60)

compose-down: compose-tool ## Stop the distributed stack (keeps its volumes: Kafka, Postgres, data, checkpoints)
	$(COMPOSE) --profile generator down --remove-orphans

compose-clean: compose-tool ## Stop the distributed stack and delete its volumes (asks first; YES=1 skips the question)
	@if [ -z "$(YES)" ]; then \
		read -r -p "Delete the distributed stack's volumes (Kafka topics, Airflow database, Parquet tables, checkpoints)? [y/N] " answer; \
		case "$$answer" in [yY]*) ;; *) echo "kept everything"; exit 0;; esac; fi; \
	$(COMPOSE) --profile generator down --volumes --remove-orphans
