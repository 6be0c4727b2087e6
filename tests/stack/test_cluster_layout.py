"""The cluster tier's pure parts: port layout, derived settings, rendered configuration, start order;
and the supervisor's dependency order with real (small) processes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from incident_contracts.settings import Settings, SettingsError, load_settings
from incident_stack.broker import free_port, server_properties
from incident_stack.cluster import ClusterLayout, airflow_cluster_env, cluster_services, cluster_settings
from incident_stack.postgres import PostgresInstance
from incident_stack.processes import ProcessTable, processes_of
from incident_stack.services import SERVICES as EMBEDDED_SERVICES
from incident_stack.services import Service, http_ok, settings_env
from incident_stack.spark_standalone import applications, describe_placements, worker_alive
from incident_stack.supervisor import StartFailed, start_all, stop_all, with_dependents, with_requirements

EMBEDDED_DEFAULT_PORTS = {9092, 9093, 8070, 8501, 4040, 8793, 8794, 4318, 8610, 8611, 8612}


def test_default_layout_is_three_brokers_two_workers_on_their_own_ports(isolated_env: Path) -> None:
    layout = ClusterLayout.from_settings(load_settings())
    assert layout.kafka_ports == (19092, 19093, 19094) and layout.controller_ports == (19192, 19193, 19194)
    assert layout.brokers == 3 and layout.workers == 2
    assert (layout.replication_factor, layout.min_insync_replicas, layout.topic_partitions) == (3, 2, 6)
    assert layout.bootstrap == "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
    assert layout.spark_master == "spark://127.0.0.1:7077" and layout.master_ui == "http://127.0.0.1:8080"
    assert layout.worker_ui(1) == "http://127.0.0.1:8081" and layout.worker_ui(2) == "http://127.0.0.1:8082"
    ports = [port for port, _ in layout.port_owners()]
    assert len(ports) == len(set(ports)) == 20
    assert not set(ports) & EMBEDDED_DEFAULT_PORTS, "the cluster tier must be able to run beside `make up`"


@pytest.mark.parametrize(("variable", "value", "named"), [
    ("CLUSTER_SPARK_MASTER_UI_PORT", "8081", ["CLUSTER_SPARK_MASTER_UI_PORT", "CLUSTER_SPARK_WORKER_UI_PORTS"]),
    ("CLUSTER_POSTGRES_PORT", "19093", ["CLUSTER_POSTGRES_PORT", "CLUSTER_KAFKA_PORTS"]),
    ("CLUSTER_KAFKA_CONTROLLER_PORTS", "19192,19193", ["CLUSTER_KAFKA_CONTROLLER_PORTS", "CLUSTER_KAFKA_PORTS"]),
])
def test_a_layout_that_cannot_work_names_the_variables(isolated_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                       variable: str, value: str, named: list[str]) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        ClusterLayout.from_settings(load_settings())
    for name in named:
        assert name in str(error.value)
    assert ".env.example" in str(error.value)


def test_cluster_settings_change_only_addresses_ports_and_folders(isolated_env: Path) -> None:
    base = load_settings()
    tier = cluster_settings(base)
    assert tier.runtime_dir == base.runtime_dir / "cluster" and tier.runtime_dir.is_dir()
    assert tier.data_dir == base.data_dir / "cluster"
    assert tier.checkpoint_root == base.data_dir / "cluster" / "_checkpoints"
    assert tier.kafka_bootstrap_servers == "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
    assert tier.spark_master == "spark://127.0.0.1:7077"
    assert (tier.kafka_topic_partitions, tier.kafka_replication_factor, tier.kafka_min_insync_replicas) == (6, 3, 2)
    assert tier.topic_configs() == {"min.insync.replicas": "2"}
    assert (tier.airflow_port, tier.dashboard_port, tier.spark_ui_port, tier.notify_port) == (8071, 8502, 4041, 8620)
    assert (tier.notify_metrics_port, tier.stream_metrics_port) == (8621, 8622)
    changed = {k for k, v in tier.model_dump().items() if v != base.model_dump()[k]}
    assert changed == {"runtime_dir", "data_dir", "kafka_bootstrap_servers", "kafka_topic_partitions",
                       "kafka_replication_factor", "kafka_min_insync_replicas", "spark_master", "spark_ui_port",
                       "airflow_port", "dashboard_port", "ingest_port", "notify_port", "notify_metrics_port",
                       "stream_metrics_port"}
    # The processes get them as environment variables, and read them back as the same settings.
    env = settings_env(tier)
    assert env["SPARK_MASTER"] == "spark://127.0.0.1:7077" and env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    assert Settings(_env_file=None, **{k.lower(): v for k, v in env.items() if k != "PROJECT_ROOT"}) \
        .model_dump() == tier.model_dump()


def test_each_kafka_node_knows_the_whole_quorum(isolated_env: Path) -> None:
    tier = cluster_settings(load_settings())
    layout = ClusterLayout.from_settings(tier)
    nodes = layout.kafka_nodes(tier.runtime_dir)
    rendered = dict(line.split("=", 1) for line in server_properties(nodes[1], nodes).splitlines())
    assert rendered["node.id"] == "2"
    assert rendered["controller.quorum.voters"] == "1@127.0.0.1:19192,2@127.0.0.1:19193,3@127.0.0.1:19194"
    assert rendered["listeners"] == "PLAINTEXT://127.0.0.1:19093,CONTROLLER://127.0.0.1:19193"
    assert rendered["default.replication.factor"] == "3" and rendered["min.insync.replicas"] == "2"
    assert rendered["offsets.topic.replication.factor"] == "3"
    assert len({n.home for n in nodes}) == 3 and all(n.home.parent == tier.runtime_dir / "kafka" for n in nodes)


def test_services_start_order_and_ports(isolated_env: Path) -> None:
    tier = cluster_settings(load_settings())
    layout = ClusterLayout.from_settings(tier)
    services = cluster_services(tier, layout)
    assert list(services) == ["kafka-1", "kafka-2", "kafka-3", "spark-master", "spark-worker-1", "spark-worker-2",
                              "postgres", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
                              "airflow-triggerer", "dashboard", "log-ingest", "notifier"]
    assert services["spark-worker-2"].requires == ("spark-master",)
    assert set(services["airflow-scheduler"].requires) == {"postgres", "spark-master", "kafka-1", "kafka-2", "kafka-3"}
    assert services["log-ingest"].requires == ("kafka-1", "kafka-2", "kafka-3")
    assert services["log-ingest"].prepare is EMBEDDED_SERVICES["log-ingest"].prepare  # creates the log topic
    assert services["log-ingest"].url(tier) == f"http://127.0.0.1:{layout.ingest_port}"
    # The embedded stack's notifier process, on the tier's tables and its own health port.
    assert services["notifier"].command(tier) == EMBEDDED_SERVICES["notifier"].command(tier)
    assert services["notifier"].url(tier) == f"http://127.0.0.1:{layout.notify_port}/healthz"
    assert services["notifier"].secrets == ("tables", "notify") and services["notifier"].requires == ()
    assert services["notifier"].environment(tier)["DATA_DIR"] == str(tier.data_dir)
    assert services["postgres"].stop_signal == signal.SIGINT  # fast shutdown, not SIGTERM's wait for clients
    listened = [p for s in services.values() for p in s.listen_ports(tier)]
    assert len(listened) == len(set(listened))
    # The streaming job's driver (Spark UI, job metrics) is no service: Airflow's tasks start it.
    assert set(listened) == {p for p, _ in layout.port_owners()} - {layout.spark_ui_port, layout.stream_metrics_port}
    worker = services["spark-worker-1"].command(tier)
    assert worker[1:] == ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1", "--memory",
                          "1g", "--webui-port", "8081", "--work-dir", str(tier.runtime_dir / "spark" / "worker-1"),
                          "spark://127.0.0.1:7077"]
    assert Path(worker[0]).name == "spark-class" and Path(worker[0]).is_file()
    assert services["airflow-scheduler"].command(tier)[-1] == "scheduler"
    assert with_requirements(services, ["airflow-scheduler"]) == [
        "kafka-1", "kafka-2", "kafka-3", "spark-master", "postgres", "airflow-scheduler"]
    assert with_dependents(services, ["spark-master"]) == [
        "spark-master", "spark-worker-1", "spark-worker-2", "airflow-scheduler"]


def test_airflow_runs_on_postgres_with_the_local_executor_and_shared_keys(isolated_env: Path) -> None:
    tier = cluster_settings(load_settings())
    layout = ClusterLayout.from_settings(tier)
    database = PostgresInstance(tier.runtime_dir / "postgres", layout.postgres_port)
    env = airflow_cluster_env(tier, layout, database)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    password = database.password()
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"postgresql+psycopg2://incident:{password}@127.0.0.1:15432/airflow"
    assert stat.S_IMODE(database.password_file.stat().st_mode) == 0o600
    assert (env["AIRFLOW__API__PORT"], env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"],
            env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]) == ("8071", "18793", "18794")
    assert env["AIRFLOW_HOME"] == str(tier.runtime_dir / "airflow")
    assert '"host": "spark://127.0.0.1", "port": 7077' in env["AIRFLOW_CONN_SPARK_DEFAULT"]
    assert "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094" in env["AIRFLOW_CONN_KAFKA_DEFAULT"]
    # Every component must sign and check task tokens with the same key: generated once, kept private.
    again = airflow_cluster_env(tier, layout, database)
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY"):
        assert env[key] and env[key] == again[key]
    assert stat.S_IMODE((tier.runtime_dir / "airflow" / "secrets.json").stat().st_mode) == 0o600
    command = database.command()
    assert command[command.index("-h") + 1] == "127.0.0.1" and command[command.index("-k") + 1] == ""


def test_spark_state_readers() -> None:
    state = {"status": "ALIVE",
             "workers": [{"id": "worker-a", "webuiaddress": "http://127.0.0.1:8081", "state": "ALIVE"},
                         {"id": "worker-old", "webuiaddress": "http://127.0.0.1:8082", "state": "DEAD"}],
             "activeapps": [{"id": "app-2", "name": "incident-stream", "starttime": 20}],
             "completedapps": [{"id": "app-1", "name": "incident-stream", "starttime": 10, "state": "FINISHED"},
                               {"id": "app-0", "name": "other", "starttime": 5, "state": "FINISHED"}]}
    assert worker_alive(state, 8081) and not worker_alive(state, 8082) and not worker_alive(None, 8081)
    assert [a["id"] for a in applications(state, "incident-stream")] == ["app-1", "app-2"]
    assert applications(state, "incident-stream")[1]["state"] == "RUNNING"
    assert describe_placements([]) == []


# --- the supervisor, with real processes -------------------------------------------------------------

def _http_service(name: str, port: int, requires: tuple[str, ...] = ()) -> Service:
    return Service(name=name, description=name, port=lambda s, p=port: p, url=lambda s, p=port: f"http://127.0.0.1:{p}",
                   command=lambda s, p=port: [sys.executable, "-m", "http.server", str(p), "--bind", "127.0.0.1"],
                   healthy=lambda s, p=port: http_ok(f"http://127.0.0.1:{p}/"), requires=requires, start_timeout=30)


def test_start_all_waits_for_requirements_and_stop_all_stops_dependents_first(isolated_env: Path) -> None:
    settings = load_settings()
    table = ProcessTable(settings.runtime_dir / "supervised")
    base = _http_service("base", free_port())
    left = _http_service("left", free_port(), requires=("base",))
    right = _http_service("right", free_port(), requires=("base",))
    lines: list[str] = []
    try:
        outcome = start_all([right, left, base], settings, table, out=lines.append)
        assert outcome == {"base": "started", "left": "started", "right": "started"}
        up_at = {name: next(i for i, line in enumerate(lines) if line.startswith(f"  {name}: up")) for name in outcome}
        started_at = {name: next(i for i, line in enumerate(lines) if line.startswith(f"  {name}: started"))
                      for name in outcome}
        assert started_at["left"] > up_at["base"] and started_at["right"] > up_at["base"], lines
        assert start_all([base, left], settings, table, out=lines.append) == {"base": "running", "left": "running"}
        # Every child of the run (children of children too) carries the runtime folder in its environment.
        assert set(processes_of(settings.runtime_dir)) >= {table.get(n).pid for n in outcome}
        lines.clear()
        assert stop_all([base, left, right], settings, table, out=lines.append) == {
            "base": True, "left": True, "right": True}
        assert lines[-1].startswith("  base: stopped"), lines
        assert processes_of(settings.runtime_dir) == []
    finally:
        stop_all([base, left, right], settings, table, out=lambda line: None)


def test_a_requirement_that_fails_is_named_and_its_dependents_are_not_started(isolated_env: Path) -> None:
    settings = load_settings()
    table = ProcessTable(settings.runtime_dir / "supervised")
    broken = Service(name="broken", description="exits at once", port=lambda s: free_port(), url=lambda s: "-",
                     command=lambda s: [sys.executable, "-c", "import sys; print('no config'); sys.exit(3)"],
                     healthy=lambda s: False, start_timeout=20)
    after = _http_service("after", free_port(), requires=("broken",))
    with pytest.raises(StartFailed) as error:
        start_all([broken, after], settings, table, out=lambda line: None)
    message = str(error.value)
    assert "broken exited during start" in message and "no config" in message
    assert "after: not started: it requires broken" in message
    assert table.get("after") is None


def test_processes_of_finds_a_process_by_its_runtime_folder(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             env={**os.environ, "RUNTIME_DIR": str(runtime)})
    try:
        deadline = time.monotonic() + 5
        while child.pid not in processes_of(runtime) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.pid in processes_of(runtime)
        assert child.pid not in processes_of(tmp_path / "other")
    finally:
        child.kill()
        child.wait()
    assert child.pid not in processes_of(runtime)


def test_a_dead_servers_lock_file_is_removed_a_live_ones_is_kept(tmp_path: Path) -> None:
    database = PostgresInstance(tmp_path / "postgres", free_port())
    database.data_dir.mkdir(parents=True)
    (database.data_dir / "PG_VERSION").write_text("15\n")
    lock = database.data_dir / "postmaster.pid"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(f"{int(finished.stdout)}\n{database.data_dir}\n")
    database.prepare()
    assert not lock.exists(), "the lock of a server that no longer runs must not block the next start"
    lock.write_text(f"{os.getpid()}\n{database.data_dir}\n")
    database.prepare()
    assert lock.exists(), "the lock of a running server must stay"


def test_a_process_knows_when_it_started(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path)
    before = time.time()
    record = table.start("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"], dict(os.environ), tmp_path)
    try:
        assert before - 1.5 <= record.started_at() <= time.time() + 1.5
    finally:
        assert table.stop("sleeper", timeout=5)
