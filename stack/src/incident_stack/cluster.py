"""The cluster tier: the platform on real distributed engines, as processes on this machine.

Three Apache Kafka brokers (KRaft, each also a controller; internal topics and the log topic with
replication factor 3 and min.insync.replicas 2), a Spark standalone master with two workers (from the
PySpark distribution), Airflow 3 on a PostgreSQL instance the project starts and stops (LocalExecutor;
api-server, scheduler, dag-processor and triggerer as separate processes), the dashboard, log-ingest and
the notifier.

The DAG, the generator, the Spark job, the dashboard and the notifier are the same code as in the embedded stack;
:func:`cluster_settings` only changes settings: the three-broker bootstrap list, SPARK_MASTER=spark://...,
the ports, and the folders (state under RUNTIME_DIR/cluster, tables and checkpoints under
DATA_DIR/cluster, so the two stacks never share a checkpoint made against another Kafka).
Everything listens on 127.0.0.1; the CLUSTER_* settings choose the ports (.env.example).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from incident_contracts.kafka import TopicSpec, admin_client, ensure_topics
from incident_contracts.settings import Settings, SettingsError, inherited_env, project_root, settings_env
from incident_stack.broker import KafkaNode, cluster_id_for, free_port, node_command, prepare_node
from incident_stack.postgres import PostgresInstance
from incident_stack.processes import ManagedProcess, ProcessTable, processes_of
from incident_stack.services import SERVICES as EMBEDDED_SERVICES
from incident_stack.services import Service, http_ok
from incident_stack.spark_standalone import (
    ExecutorPlacement,
    alive_workers,
    applications,
    daemon_env,
    executor_placements,
    master_command,
    master_state,
    worker_alive,
    worker_command,
)
from incident_stack.supervisor import (
    Output,
    PortTaken,
    port_taken,
    say,
    start_all,
    start_service,
    stop_all,
    with_dependents,
    with_requirements,
)

HOST = "127.0.0.1"
STREAM_APP = "incident-stream"  # the Spark application name of the streaming job (spark_job.py)
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# The health endpoint reads the components' heartbeats from the database: on a loaded 2-core host it can take
# several seconds to answer, which is slow, not down.
AIRFLOW_HEALTH_TIMEOUT = 10.0
ORPHANED_TASKS_CHECK_SECONDS = 30


def _ports(value: str) -> tuple[int, ...]:
    return tuple(int(p) for p in value.split(",") if p.strip())


@dataclass(frozen=True)
class ClusterLayout:
    """Ports and sizes of the cluster tier, from the CLUSTER_* settings (pure: no I/O)."""

    kafka_ports: tuple[int, ...]
    controller_ports: tuple[int, ...]
    topic_partitions: int
    master_port: int
    master_ui_port: int
    worker_ui_ports: tuple[int, ...]
    worker_cores: int
    worker_memory: str
    spark_ui_port: int
    postgres_port: int
    airflow_port: int
    airflow_worker_log_port: int
    airflow_trigger_log_port: int
    dashboard_port: int
    ingest_port: int
    notify_port: int
    notify_metrics_port: int = 0  # 0: off (not listened on)
    stream_metrics_port: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ClusterLayout:
        layout = cls(
            kafka_ports=_ports(settings.cluster_kafka_ports),
            controller_ports=_ports(settings.cluster_kafka_controller_ports),
            topic_partitions=settings.cluster_kafka_topic_partitions,
            master_port=settings.cluster_spark_master_port,
            master_ui_port=settings.cluster_spark_master_ui_port,
            worker_ui_ports=_ports(settings.cluster_spark_worker_ui_ports),
            worker_cores=settings.cluster_spark_worker_cores,
            worker_memory=settings.cluster_spark_worker_memory,
            spark_ui_port=settings.cluster_spark_ui_port,
            postgres_port=settings.cluster_postgres_port,
            airflow_port=settings.cluster_airflow_port,
            airflow_worker_log_port=settings.cluster_airflow_worker_log_port,
            airflow_trigger_log_port=settings.cluster_airflow_trigger_log_port,
            dashboard_port=settings.cluster_dashboard_port,
            ingest_port=settings.cluster_ingest_port,
            notify_port=settings.cluster_notify_port,
            notify_metrics_port=settings.cluster_notify_metrics_port,
            stream_metrics_port=settings.cluster_stream_metrics_port,
        )
        layout.check()
        return layout

    def check(self) -> None:
        """Raise SettingsError naming the variables when the layout cannot work."""
        if len(self.controller_ports) != len(self.kafka_ports):
            raise SettingsError(
                f"CLUSTER_KAFKA_CONTROLLER_PORTS lists {len(self.controller_ports)} ports but CLUSTER_KAFKA_PORTS "
                f"lists {len(self.kafka_ports)}: give one controller port per broker, in the same order "
                "(see .env.example)")
        owners: dict[int, list[str]] = {}
        for port, owner in self.port_owners():
            owners.setdefault(port, []).append(owner)
        clashes = {port: names for port, names in owners.items() if len(names) > 1}
        if clashes:
            shown = "; ".join(f"port {port}: {' and '.join(names)}" for port, names in sorted(clashes.items()))
            raise SettingsError(f"the cluster tier's processes need distinct ports ({shown}); change the CLUSTER_* "
                                "variables in .env (see .env.example)")

    def port_owners(self) -> list[tuple[int, str]]:
        """(port, "VARIABLE (process)") for every port the tier listens on."""
        owners = [(p, f"CLUSTER_KAFKA_PORTS (kafka-{i})") for i, p in enumerate(self.kafka_ports, 1)]
        owners += [(p, f"CLUSTER_KAFKA_CONTROLLER_PORTS (kafka-{i})") for i, p in enumerate(self.controller_ports, 1)]
        owners += [(self.master_port, "CLUSTER_SPARK_MASTER_PORT (spark-master)"),
                   (self.master_ui_port, "CLUSTER_SPARK_MASTER_UI_PORT (spark-master)")]
        owners += [(p, f"CLUSTER_SPARK_WORKER_UI_PORTS (spark-worker-{i})")
                   for i, p in enumerate(self.worker_ui_ports, 1)]
        owners += [(self.spark_ui_port, "CLUSTER_SPARK_UI_PORT (the streaming job's driver)"),
                   (self.postgres_port, "CLUSTER_POSTGRES_PORT (postgres)"),
                   (self.airflow_port, "CLUSTER_AIRFLOW_PORT (airflow-api-server)"),
                   (self.airflow_worker_log_port, "CLUSTER_AIRFLOW_WORKER_LOG_PORT (airflow-scheduler)"),
                   (self.airflow_trigger_log_port, "CLUSTER_AIRFLOW_TRIGGER_LOG_PORT (airflow-triggerer)"),
                   (self.dashboard_port, "CLUSTER_DASHBOARD_PORT (dashboard)"),
                   (self.ingest_port, "CLUSTER_INGEST_PORT (log-ingest)"),
                   (self.notify_port, "CLUSTER_NOTIFY_PORT (notifier)")]
        owners += [(port, owner) for port, owner in (
            (self.notify_metrics_port, "CLUSTER_NOTIFY_METRICS_PORT (notifier)"),
            (self.stream_metrics_port, "CLUSTER_STREAM_METRICS_PORT (the streaming job's driver)")) if port]
        return owners

    @property
    def brokers(self) -> int:
        return len(self.kafka_ports)

    @property
    def workers(self) -> int:
        return len(self.worker_ui_ports)

    @property
    def replication_factor(self) -> int:
        """Replicas of the log topic (and of Kafka's internal topics): three, or every broker when fewer."""
        return min(3, self.brokers)

    @property
    def min_insync_replicas(self) -> int:
        """Replicas that must hold a record before it is acknowledged: two, so one broker may fail."""
        return min(2, self.brokers)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{HOST}:{p}" for p in self.kafka_ports)

    @property
    def spark_master(self) -> str:
        return f"spark://{HOST}:{self.master_port}"

    @property
    def master_ui(self) -> str:
        return f"http://{HOST}:{self.master_ui_port}"

    def worker_ui(self, index: int) -> str:
        return f"http://{HOST}:{self.worker_ui_ports[index - 1]}"

    def kafka_nodes(self, runtime_dir: Path) -> list[KafkaNode]:
        return [KafkaNode(i, HOST, port, controller, runtime_dir / "kafka" / f"node-{i}")
                for i, (port, controller) in enumerate(zip(self.kafka_ports, self.controller_ports, strict=True), 1)]


def tier_env(root: Path, port: Callable[[], int] = free_port) -> dict[str, str]:
    """Settings of an isolated cluster tier under `root` (for tests and benchmarks): every port from
    `port()`, distinct, and no .env file."""
    taken: set[int] = set()

    def fresh() -> int:
        while True:
            candidate = port()
            if candidate not in taken:
                taken.add(candidate)
                return candidate

    return {
        "ENV_FILE": str(root / "none.env"), "DATA_DIR": str(root / "data"), "RUNTIME_DIR": str(root / "runtime"),
        "CLUSTER_KAFKA_PORTS": ",".join(str(fresh()) for _ in range(3)),
        "CLUSTER_KAFKA_CONTROLLER_PORTS": ",".join(str(fresh()) for _ in range(3)),
        "CLUSTER_SPARK_MASTER_PORT": str(fresh()), "CLUSTER_SPARK_MASTER_UI_PORT": str(fresh()),
        "CLUSTER_SPARK_WORKER_UI_PORTS": f"{fresh()},{fresh()}", "CLUSTER_SPARK_UI_PORT": str(fresh()),
        "CLUSTER_POSTGRES_PORT": str(fresh()), "CLUSTER_AIRFLOW_PORT": str(fresh()),
        "CLUSTER_AIRFLOW_WORKER_LOG_PORT": str(fresh()), "CLUSTER_AIRFLOW_TRIGGER_LOG_PORT": str(fresh()),
        "CLUSTER_DASHBOARD_PORT": str(fresh()), "CLUSTER_INGEST_PORT": str(fresh()),
        "CLUSTER_NOTIFY_PORT": str(fresh()), "CLUSTER_NOTIFY_METRICS_PORT": str(fresh()),
        "CLUSTER_STREAM_METRICS_PORT": str(fresh()), "GEMINI_API_KEY": "",
    }


def cluster_settings(base: Settings, layout: ClusterLayout | None = None) -> Settings:
    """The settings every process of the tier runs with: the base settings with the tier's addresses,
    ports and folders. Passed to the processes as environment variables, like the embedded stack's."""
    layout = layout or ClusterLayout.from_settings(base)
    runtime, data = base.runtime_dir / "cluster", base.data_dir / "cluster"
    for folder in (runtime, data):
        folder.mkdir(parents=True, exist_ok=True)
    return base.model_copy(update={
        "runtime_dir": runtime,
        "data_dir": data,
        "checkpoint_dir": None,  # DATA_DIR/cluster/_checkpoints: shared by the driver and the executors
        "kafka_bootstrap_servers": layout.bootstrap,
        "kafka_topic_partitions": layout.topic_partitions,
        "kafka_replication_factor": layout.replication_factor,
        "kafka_min_insync_replicas": layout.min_insync_replicas,
        "schema_registry_url": "",  # no registry on the tier: Avro single-object encoding
        "kafka_ui_url": "",
        "spark_master": layout.spark_master,
        "spark_ui_port": layout.spark_ui_port,
        "airflow_port": layout.airflow_port,
        "dashboard_port": layout.dashboard_port,
        "ingest_port": layout.ingest_port,
        "notify_port": layout.notify_port,
        "notify_metrics_port": layout.notify_metrics_port,
        "stream_metrics_port": layout.stream_metrics_port,
    })


# --- Kafka -------------------------------------------------------------------------------------

def broker_answers(node: KafkaNode, timeout: float = 2.0) -> bool:
    """The node answers a metadata request and the cluster lists it among its live brokers."""
    try:
        metadata = admin_client(node.bootstrap).list_topics(timeout=timeout)
    except Exception:  # KafkaException: not answering
        return False
    return node.node_id in metadata.brokers


@dataclass(frozen=True)
class TopicLayout:
    """How a topic is spread: partitions with their leader, replicas and in-sync replicas, and its configs."""

    name: str
    partitions: dict[int, dict[str, Any]]
    configs: dict[str, str]

    @property
    def replication_factors(self) -> set[int]:
        return {len(p["replicas"]) for p in self.partitions.values()}

    @property
    def min_insync_replicas(self) -> int | None:
        value = self.configs.get("min.insync.replicas")
        return int(value) if value is not None else None

    @property
    def under_replicated(self) -> list[int]:
        return sorted(p for p, info in self.partitions.items() if len(info["isr"]) < len(info["replicas"]))

    def leaders(self) -> dict[int, int]:
        """{broker id: partitions it leads}."""
        counts: dict[int, int] = {}
        for info in self.partitions.values():
            counts[info["leader"]] = counts.get(info["leader"], 0) + 1
        return dict(sorted(counts.items()))

    def describe(self) -> str:
        factors = ", ".join(str(f) for f in sorted(self.replication_factors)) or "?"
        leaders = ", ".join(f"broker {b}: {n}" for b, n in self.leaders().items())
        lagging = ", ".join(str(p) for p in self.under_replicated) or "none"
        return (f"topic {self.name}: {len(self.partitions)} partitions, replication factor {factors}, "
                f"min.insync.replicas={self.configs.get('min.insync.replicas', '?')}; leaders {leaders}; "
                f"under-replicated partitions: {lagging}")


def topic_layout(bootstrap: str, topic: str, timeout: float = 10.0) -> TopicLayout:
    """The topic's partitions (leader, replicas, ISR) and configs, as the brokers report them."""
    from confluent_kafka.admin import ConfigResource

    admin = admin_client(bootstrap)
    metadata = admin.list_topics(timeout=timeout)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise RuntimeError(f"topic {topic!r} does not exist on {bootstrap}; `make cluster-up` creates it")
    partitions = {p.id: {"leader": p.leader, "replicas": list(p.replicas), "isr": list(p.isrs)}
                  for p in found.partitions.values()}
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    described = admin.describe_configs([resource], request_timeout=timeout)[resource].result(timeout=timeout)
    configs = {name: entry.value for name, entry in described.items()}
    return TopicLayout(topic, dict(sorted(partitions.items())), configs)


# --- Airflow -----------------------------------------------------------------------------------

def airflow_secrets(settings: Settings) -> dict[str, str]:
    """Keys every Airflow component must share (JWT signing, Fernet, session), generated once (mode 600)."""
    path = settings.runtime_dir / "airflow" / "secrets.json"
    if path.is_file():
        return json.loads(path.read_text())
    from cryptography.fernet import Fernet

    values = {"fernet_key": Fernet.generate_key().decode(), "jwt_secret": secrets.token_urlsafe(32),
              "api_secret_key": secrets.token_urlsafe(32)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    return values


def airflow_cluster_env(settings: Settings, layout: ClusterLayout, database: PostgresInstance) -> dict[str, str]:
    """The embedded Airflow's environment, with the LocalExecutor on PostgreSQL and the tier's ports."""
    from incident_airflow.environment import airflow_env

    keys = airflow_secrets(settings)
    return {
        **airflow_env(settings),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database.url(),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(layout.airflow_worker_log_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(layout.airflow_trigger_log_port),
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
        # A scheduler started after a crash resets the dead one's running tasks at once only if the dead one's
        # last heartbeat is older than scheduler_health_check_threshold (30 s); otherwise it waits for this
        # periodic check (300 s by default), and an interrupted run sits still for minutes.
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": str(ORPHANED_TASKS_CHECK_SECONDS),
        # The Spark driver (spark-submit from a task) binds where the workers and executors are: 127.0.0.1.
        "SPARK_LOCAL_IP": HOST,
    }


_migrated: dict[str, BaseException | None] = {}
_migrate_lock = threading.Lock()


def migrate_airflow_database(settings: Settings, layout: ClusterLayout, database: PostgresInstance,
                             log_file: Path) -> None:
    """Create Airflow's database if missing and run `airflow db migrate`, once per process and database."""
    key = database.display_url()
    with _migrate_lock:
        if key in _migrated:
            if _migrated[key] is not None:
                raise RuntimeError(f"the Airflow database migration failed earlier: {_migrated[key]}")
            return
        try:
            database.ensure_database()
            env = {**inherited_env(), **settings_env(settings), **airflow_cluster_env(settings, layout, database)}
            airflow = str(Path(sys.executable).parent / "airflow")
            started = time.monotonic()
            with open(log_file, "ab") as log:
                log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} airflow db migrate\n".encode())
                log.flush()
                result = subprocess.run([airflow, "db", "migrate"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=project_root(), timeout=600)
            if result.returncode != 0:
                raise RuntimeError(f"`airflow db migrate` failed (exit {result.returncode}) against "
                                   f"{database.display_url()}; see {log_file}")
            say(f"  airflow: metadata database migrated ({time.monotonic() - started:.0f}s)")
        except BaseException as exc:
            _migrated[key] = exc
            raise
        _migrated[key] = None


def airflow_health(settings: Settings, timeout: float = AIRFLOW_HEALTH_TIMEOUT) -> dict[str, Any] | None:
    from incident_stack.spark_standalone import get_json

    answer = get_json(f"http://{HOST}:{settings.airflow_port}/api/v2/monitor/health", timeout)
    return answer if isinstance(answer, dict) else None


def _component_healthy(settings: Settings, table: ProcessTable, name: str, component: str) -> bool:
    """The component's process runs and Airflow reports a heartbeat of it since that process started (an
    earlier, killed process's heartbeat stays "healthy" for a while)."""
    record = table.get(name)
    if record is None:
        return False
    health = (airflow_health(settings) or {}).get(component) or {}
    heartbeat = health.get(f"latest_{component}_heartbeat")
    if health.get("status") != "healthy" or not heartbeat:
        return False
    try:
        beat = datetime.fromisoformat(heartbeat.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return False
    return beat >= record.started_at() - 1.0


# --- the services ------------------------------------------------------------------------------

def cluster_services(settings: Settings, layout: ClusterLayout) -> dict[str, Service]:
    """Every process of the tier, in start order; `settings` are the tier's (cluster_settings)."""
    runtime = settings.runtime_dir
    table = ProcessTable(runtime)
    nodes = layout.kafka_nodes(runtime)
    kafka_home = runtime / "kafka"
    database = PostgresInstance(runtime / "postgres", layout.postgres_port, HOST)
    services: dict[str, Service] = {}
    id_lock = threading.Lock()  # the nodes are prepared in parallel; they must format with one cluster id

    def prepare_broker(s: Settings, node: KafkaNode) -> None:
        with id_lock:
            cluster_id = cluster_id_for(kafka_home)
        prepare_node(node, nodes, cluster_id, s.kafka_heap)

    for node in nodes:
        services[f"kafka-{node.node_id}"] = Service(
            name=f"kafka-{node.node_id}",
            description=f"Apache Kafka broker and KRaft controller {node.node_id} of {len(nodes)}",
            port=lambda s, n=node: n.port,
            ports=lambda s, n=node: [n.port, n.controller_port],
            url=lambda s, n=node: f"kafka://{n.bootstrap}",
            command=lambda s, n=node: node_command(n, s.kafka_heap),
            healthy=lambda s, n=node: broker_answers(n),
            prepare=lambda s, n=node: prepare_broker(s, n),
            start_timeout=180, stop_timeout=30,
        )

    def master_detail(s: Settings) -> str:
        state = master_state(layout.master_ui)
        if state is None:
            return ""
        return f"{layout.spark_master}; {len(alive_workers(state))} of {layout.workers} workers alive"

    services["spark-master"] = Service(
        name="spark-master", description="Spark standalone master",
        port=lambda s: layout.master_port, ports=lambda s: [layout.master_port, layout.master_ui_port],
        url=lambda s: layout.master_ui,
        command=lambda s: master_command(HOST, layout.master_port, layout.master_ui_port),
        healthy=lambda s: (master_state(layout.master_ui) or {}).get("status") == "ALIVE",
        extra_env=lambda s: daemon_env(HOST, s), start_timeout=120, detail=master_detail,
    )
    for index, ui_port in enumerate(layout.worker_ui_ports, 1):
        work_dir = runtime / "spark" / f"worker-{index}"
        services[f"spark-worker-{index}"] = Service(
            name=f"spark-worker-{index}",
            description=f"Spark worker {index} of {layout.workers} ({layout.worker_cores} cores, "
                        f"{layout.worker_memory} for executors)",
            port=lambda s, p=ui_port: p, url=lambda s, i=index: layout.worker_ui(i),
            command=lambda s, p=ui_port, w=work_dir: worker_command(HOST, layout.spark_master, p, layout.worker_cores,
                                                                    layout.worker_memory, w),
            healthy=lambda s, p=ui_port: worker_alive(master_state(layout.master_ui), p),
            prepare=lambda s, w=work_dir: w.mkdir(parents=True, exist_ok=True),
            extra_env=lambda s: daemon_env(HOST, s), requires=("spark-master",), start_timeout=120,
            secrets=("tables",),  # its executors write the tables
        )

    services["postgres"] = Service(
        name="postgres", description="PostgreSQL (Airflow's metadata database; data under RUNTIME_DIR/cluster)",
        port=lambda s: layout.postgres_port, url=lambda s: database.display_url(),
        command=lambda s: database.command(), healthy=lambda s: database.answers(),
        prepare=lambda s: database.prepare(), start_timeout=90,
        stop_signal=signal.SIGINT, stop_timeout=30,  # SIGINT: fast shutdown (clients disconnected, clean stop)
    )

    airflow_bin = str(Path(sys.executable).parent / "airflow")

    def prepare_airflow(s: Settings, name: str) -> None:
        # While another component runs, the database is migrated already: restarting one skips the step.
        others = [f"airflow-{c}" for c in AIRFLOW_COMPONENTS if f"airflow-{c}" != name]
        if not any(table.get(other) for other in others):
            migrate_airflow_database(s, layout, database, table.log_file("airflow-db-migrate"))
    brokers = tuple(f"kafka-{n.node_id}" for n in nodes)
    for component in AIRFLOW_COMPONENTS:
        name = f"airflow-{component}"
        if component == "api-server":
            port, url = layout.airflow_port, f"http://{HOST}:{layout.airflow_port}"
            healthy: Callable[[Settings], bool] = lambda s: http_ok(  # noqa: E731
                f"http://{HOST}:{s.airflow_port}/api/v2/monitor/health", timeout=AIRFLOW_HEALTH_TIMEOUT)
        else:
            health_key = component.replace("-", "_")
            port = {"scheduler": layout.airflow_worker_log_port,
                    "triggerer": layout.airflow_trigger_log_port}.get(component, 0)
            url = f"http://{HOST}:{layout.airflow_port}/api/v2/monitor/health ({health_key})"
            healthy = lambda s, n=name, k=health_key: _component_healthy(s, table, n, k)  # noqa: E731
        # The scheduler runs the tasks (the generator, the Spark driver): it needs the brokers and the master.
        requires = ("postgres", "spark-master", *brokers) if component == "scheduler" else ("postgres",)
        services[name] = Service(
            name=name, description=f"Airflow {component} (LocalExecutor, PostgreSQL)",
            port=lambda s, p=port: p, ports=lambda s, p=port: [p] if p else [],
            url=lambda s, u=url: u,
            command=lambda s, c=component: [airflow_bin, c],
            healthy=healthy,
            extra_env=lambda s: airflow_cluster_env(s, layout, database),
            # The scheduler runs the tasks (triage calls Gemini; tasks read and write the tables).
            secrets=("gemini", "tables") if component == "scheduler" else (),
            prepare=lambda s, n=name: prepare_airflow(s, n),
            requires=requires, start_timeout=300, stop_timeout=30,
        )

    services["dashboard"] = EMBEDDED_SERVICES["dashboard"]  # same process; the tier's settings give its port
    # The same log-ingest process, writing to the tier's brokers once they answer (it creates the log topic
    # with the tier's partitions and replication when it is missing, before it starts).
    services["log-ingest"] = replace(EMBEDDED_SERVICES["log-ingest"], requires=brokers)
    # The same notifier, on the tier's tables (DATA_DIR/cluster); its health port is CLUSTER_NOTIFY_PORT.
    services["notifier"] = EMBEDDED_SERVICES["notifier"]
    return services


# --- the tier as a whole -------------------------------------------------------------------------

class Cluster:
    """The tier's processes: start, stop, inspect, and (for fault tests) kill and restart one by name."""

    def __init__(self, base: Settings, out: Output = say):
        self.base = base
        self.layout = ClusterLayout.from_settings(base)
        self.settings = cluster_settings(base, self.layout)
        self.services = cluster_services(self.settings, self.layout)
        self.table = ProcessTable(self.settings.runtime_dir)
        self.database = PostgresInstance(self.settings.runtime_dir / "postgres", self.layout.postgres_port, HOST)
        # The working folder of every process of the tier: how leftovers are recognised even when a process
        # rewrites its environment block for its title (PostgreSQL, Airflow's API server).
        self.workdir = self.settings.runtime_dir / "work"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.out = out

    # -- names --
    def names(self, group: str | None = None) -> list[str]:
        """Service names, all or those starting with `group` (e.g. "kafka", "spark-worker", "airflow")."""
        return [n for n in self.services if group is None or n == group or n.startswith(group + "-")]

    def _known(self, names: list[str]) -> None:
        unknown = [n for n in names if n not in self.services]
        if unknown:
            raise KeyError(f"unknown process {', '.join(unknown)}; the tier has: {', '.join(self.services)}")

    # -- start / stop --
    def _check_ports(self, names: list[str]) -> None:
        owners = dict(reversed(self.layout.port_owners()))
        for name in names:
            if self.table.get(name) is not None:
                continue
            for port in self.services[name].listen_ports(self.settings):
                if port_taken(port, HOST):
                    owner = owners.get(port, name)
                    raise PortTaken(f"port {port}, needed by {name} ({owner.split(' (')[0]}), is already in use by "
                                    "another process: stop it (`make cluster-status` shows whether it is this tier) "
                                    "or choose another port in .env (see .env.example)")

    def up(self, names: list[str] | None = None) -> dict[str, str]:
        """Start the tier (or `names` and what they require) and create the log topic; returns what happened."""
        self._known(list(names or []))
        wanted = with_requirements(self.services, names or list(self.services))
        self._check_ports(wanted)
        _migrated.pop(self.database.display_url(), None)  # a fresh `up` checks the database schema again
        outcome = start_all([self.services[n] for n in wanted], self.settings, self.table, self.out,
                            cwd=self.workdir)
        if any(n.startswith("kafka-") for n in wanted) and all(self.table.get(n) for n in self.names("kafka")):
            for topic, what in self.ensure_topic().items():
                self.out(f"  topic {topic}: {what}")
        return outcome

    def down(self, names: list[str] | None = None) -> dict[str, bool]:
        """Stop the tier (or `names` and what requires them); then end any process of the tier left over."""
        self._known(list(names or []))
        wanted = with_dependents(self.services, names or list(self.services))
        result = stop_all([self.services[n] for n in wanted], self.settings, self.table, self.out)
        if names is None:
            self.end_leftovers()
        return result

    def end_leftovers(self, timeout: float = 15.0) -> list[int]:
        """End processes of the tier that outlived their supervised parent (a task's Spark driver, an executor)."""
        left = self.leftover_processes()
        if not left:
            return []
        self.out(f"  ending {len(left)} leftover processes of the tier: {', '.join(map(str, left))}")
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.leftover_processes():
                time.sleep(0.3)
            left = self.leftover_processes()
            if not left:
                break
        return left

    def leftover_processes(self) -> list[int]:
        """Live processes of the tier: started with its settings, or working in its folders."""
        return processes_of(self.settings.runtime_dir,
                            workdirs=(self.workdir, self.database.data_dir, self.settings.runtime_dir / "spark"))

    def start(self, name: str, wait: bool = True) -> str:
        """Start one process (again) and wait until it answers; "running" when it already ran."""
        self._known([name])
        return start_service(self.services[name], self.settings, self.table, self.out, cwd=self.workdir,
                             wait=wait)

    def stop(self, name: str) -> bool:
        """Stop one process the way `down` does (its signal, then SIGKILL after its timeout)."""
        self._known([name])
        service = self.services[name]
        return self.table.stop(name, timeout=service.stop_timeout, sig=service.stop_signal)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> ManagedProcess | None:
        """Signal one process group at once (kill -9 by default), without waiting: a crash."""
        self._known([name])
        return self.table.kill(name, sig)

    def pid(self, name: str) -> int | None:
        record = self.table.get(name)
        return record.pid if record else None

    def healthy(self, name: str) -> bool:
        return self.services[name].healthy(self.settings)

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")
            time.sleep(0.5)

    # -- Kafka --
    def topic_spec(self) -> TopicSpec:
        s = self.settings
        return TopicSpec(s.kafka_topic_logs, s.kafka_topic_partitions, s.kafka_replication_factor, s.topic_configs())

    def ensure_topic(self) -> dict[str, str]:
        return ensure_topics(self.settings.kafka_bootstrap_servers, [self.topic_spec()], timeout=30)

    def topic(self) -> TopicLayout:
        return topic_layout(self.settings.kafka_bootstrap_servers, self.settings.kafka_topic_logs)

    def node(self, broker_id: int) -> KafkaNode:
        return self.layout.kafka_nodes(self.settings.runtime_dir)[broker_id - 1]

    # -- Spark --
    def spark_state(self) -> dict[str, Any] | None:
        return master_state(self.layout.master_ui)

    def stream_apps(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """Applications of the streaming job the master knows, oldest first; those started at `since` or later."""
        apps = applications(self.spark_state(), STREAM_APP)
        if since is not None:
            cutoff = since.timestamp() * 1000 - 1000
            apps = [a for a in apps if a.get("starttime", 0) >= cutoff]
        return apps

    def executors(self, app_ids: list[str] | None) -> list[ExecutorPlacement]:
        """Where the executors of `app_ids` ran (each worker's JSON API)."""
        return executor_placements(self.spark_state(), app_ids)

    # -- Airflow --
    def api(self):
        from incident_airflow.api_client import AirflowApi

        return AirflowApi.for_embedded(self.settings)

    def admin_password(self) -> str | None:
        from incident_airflow.environment import admin_password

        return admin_password(self.settings)

    # -- status --
    def status_rows(self) -> list[dict[str, Any]]:
        """Per process: name, pid (None when not running), url, whether it answers, a detail; probed in parallel."""
        def row(name: str) -> dict[str, Any]:
            service, record = self.services[name], self.table.get(name)
            return {"name": name, "pid": record.pid if record else None, "url": service.url(self.settings),
                    "answers": service.healthy(self.settings), "detail": service.detail(self.settings)}

        with ThreadPoolExecutor(max_workers=len(self.services)) as pool:
            return list(pool.map(row, self.services))
