"""Apache Kafka brokers as plain processes: KRaft nodes (broker and controller in one JVM) on disk.

The jars come from Maven Central (:mod:`incident_stack.jars`, set ``kafka``). A node's storage is
formatted once, at its first start, with the cluster's id; afterwards its log directory holds the
topics, records and committed offsets across restarts and ``kill -9`` (Kafka recovers the log
segments at the next start). One node is the embedded stack; three with replication factor 3 are
the cluster tier.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from incident_contracts.settings import inherited_env
from incident_stack.jars import classpath

DEFAULT_HEAP = "512m"
META_FILE = "meta.properties"

LOG4J2 = """\
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.clients.name = org.apache.kafka
logger.clients.level = INFO
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node: client port, controller port and its own folder (config and log directory)."""

    node_id: int
    host: str
    port: int
    controller_port: int
    home: Path

    @property
    def log_dir(self) -> Path:
        return self.home / "data"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


def bootstrap_of(nodes: Sequence[KafkaNode]) -> str:
    return ",".join(node.bootstrap for node in nodes)


def server_properties(node: KafkaNode, quorum: Sequence[KafkaNode]) -> str:
    """The node's server.properties; replication of the internal topics follows the cluster's size."""
    size = len(quorum)
    replicas, min_isr = min(3, size), min(2, size)
    voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in quorum)
    settings = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{node.host}:{node.port},CONTROLLER://{node.host}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{node.host}:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": node.log_dir,
        # Topics are created on purpose (by `make up`, the DAG, the tests), never by a metadata request.
        "auto.create.topics.enable": "false",
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": 0,
        "log.retention.hours": 168,
        # A killed node is back within seconds; let it lead again so leadership spreads out.
        "auto.leader.rebalance.enable": "true",
        "leader.imbalance.check.interval.seconds": 30,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (what `random-uuid` prints).

    Like Kafka's own generator, never one starting with "-", which command lines would read as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def formatted_cluster_id(node: KafkaNode) -> str | None:
    """The cluster id a node's log directory was formatted with, or None when it is not formatted."""
    meta = node.log_dir / META_FILE
    if not meta.is_file():
        return None
    for line in meta.read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    return None


def _java(node_home: Path, heap: str) -> list[str]:
    return ["java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={node_home / 'log4j2.properties'}",
            "-cp", classpath("kafka")]


def prepare_node(node: KafkaNode, quorum: Sequence[KafkaNode], cluster_id: str, heap: str = DEFAULT_HEAP) -> None:
    """Write the node's configuration and format its storage if it has none yet (a first start)."""
    node.home.mkdir(parents=True, exist_ok=True)
    node.config_file.write_text(server_properties(node, quorum))
    (node.home / "log4j2.properties").write_text(LOG4J2)
    existing = formatted_cluster_id(node)
    if existing is not None:
        if existing != cluster_id:
            raise RuntimeError(f"the Kafka log directory {node.log_dir} belongs to cluster {existing}, not "
                               f"{cluster_id}; remove it (make clean) or point it elsewhere")
        return
    result = subprocess.run([*_java(node.home, "256m"), "kafka.tools.StorageTool", "format", "--ignore-formatted",
                             f"--cluster-id={cluster_id}", "--config", str(node.config_file)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
        raise RuntimeError(f"formatting the Kafka log directory {node.log_dir} failed:\n{tail}")


def node_command(node: KafkaNode, heap: str = DEFAULT_HEAP) -> list[str]:
    """The command that runs a prepared node in the foreground."""
    return [*_java(node.home, heap), "kafka.Kafka", str(node.config_file)]


def cluster_id_for(home: Path) -> str:
    """The cluster id kept in `home/cluster.id`, created on first use."""
    path = home / "cluster.id"
    if path.is_file():
        return path.read_text().strip()
    home.mkdir(parents=True, exist_ok=True)
    cluster_id = new_cluster_id()
    path.write_text(cluster_id + "\n")
    return cluster_id


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def launch(node: KafkaNode, log_file: Path, heap: str = DEFAULT_HEAP) -> subprocess.Popen[bytes]:
    """Start a prepared node in its own process group, logging to log_file. The caller waits for readiness."""
    for port in (node.port, node.controller_port):
        if port_in_use(node.host, port):
            raise OSError(f"port {port} on {node.host} is already in use; stop what holds it or change "
                          "KAFKA_BOOTSTRAP_SERVERS / KAFKA_CONTROLLER_PORT")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        return subprocess.Popen(node_command(node, heap), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=inherited_env())


def start_broker(host: str, port: int, log_file: Path, home: Path | None = None) -> subprocess.Popen[bytes]:
    """A one-node Kafka on `port` (controller on a free port), its files beside log_file unless `home` is given.

    For tests and benchmarks: the caller waits for readiness and stops the process group.
    """
    home = home or log_file.parent / f"kafka-{port}"
    node = KafkaNode(1, host, port, free_port(host), home)
    prepare_node(node, [node], cluster_id_for(home))
    return launch(node, log_file)
