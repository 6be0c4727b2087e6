# The cluster tier: targets included by the Makefile. Real processes on this machine, no Docker:
# three Apache Kafka brokers, a Spark standalone master with two workers, Airflow 3 on a PostgreSQL
# instance the project owns (api-server, scheduler, dag-processor, triggerer), and the dashboard.
# Ports: CLUSTER_* in .env.example. State under RUNTIME_DIR/cluster, tables under DATA_DIR/cluster.
# docs/distributed.md describes the tier.

CLUSTER := $(BIN)/incident-stack cluster

.PHONY: cluster-tools cluster-up cluster-down cluster-status cluster-logs cluster-demo cluster-trigger-dag cluster-clean

cluster-tools: ## Install the PostgreSQL server the cluster tier runs (apt-get, when missing)
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then \
		if ! command -v apt-get >/dev/null 2>&1; then \
			echo "error: the cluster tier needs the PostgreSQL server (initdb, postgres) and apt-get is not available:"; \
			echo "install PostgreSQL with your package manager (its binaries on PATH are enough)"; exit 1; fi; \
		echo "installing postgresql (apt)..."; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null \
			|| { echo "error: installing postgresql with apt-get failed; install it by hand (apt-get install postgresql)"; exit 1; }; \
	fi

# The test suite starts the cluster tier too (tests/stack/test_cluster.py).
test: cluster-tools

cluster-up: $(SETUP) cluster-tools ## Start the cluster tier (3 Kafka brokers, Spark master + 2 workers, Airflow on PostgreSQL, dashboard)
	@$(CLUSTER) up $(PROCESSES)

cluster-status: $(SETUP) ## Show each process of the cluster tier, its URL, whether it answers; the topic; where the last job's executors ran
	@$(CLUSTER) status

cluster-down: $(SETUP) ## Stop exactly the processes `make cluster-up` started (PROCESSES="kafka-2" for some)
	@$(CLUSTER) down $(PROCESSES)

cluster-logs: $(SETUP) ## Follow the cluster tier's logs (PROCESSES="airflow-scheduler spark-worker-1" for some)
	@$(CLUSTER) logs -f $(PROCESSES)

cluster-demo: $(SETUP) cluster-tools ## Start the cluster tier, run the pipeline once through its Airflow, show where the executors ran
	@$(CLUSTER) demo

cluster-trigger-dag: $(SETUP) ## Trigger a pipeline run on the cluster tier (SCENARIO, RATE, DURATION, SEED, SPEEDUP; WAIT=1 follows it)
	@$(CLUSTER) trigger $(if $(SCENARIO),--scenario $(SCENARIO),) $(if $(RATE),--rate $(RATE),) \
		$(if $(DURATION),--duration $(DURATION),) $(if $(SEED),--seed $(SEED),) \
		$(if $(SPEEDUP),--speedup $(SPEEDUP),) $(if $(WAIT),--wait,)

cluster-clean: $(SETUP) ## Remove the cluster tier's state (Kafka logs, PostgreSQL, Airflow home); asks before deleting its tables (YES=1)
	@$(CLUSTER) clean $(if $(YES),--yes,)
