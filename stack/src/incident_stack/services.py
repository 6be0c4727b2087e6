"""The services of the embedded stack: how to start each, where it answers, and how to tell it is healthy."""

from __future__ import annotations

import signal
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from incident_contracts.kafka import BrokerUnavailable, TopicSpec, check_broker, ensure_topics
from incident_contracts.settings import Settings, inherited_env, project_root, settings_env
from incident_stack.broker import KafkaNode, cluster_id_for, node_command, prepare_node

__all__ = ["ORDER", "SERVICES", "Service", "http_ok", "settings_env"]

DASHBOARD_ENTRY = Path("dashboard") / "app.py"


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (OSError, ValueError):
        return False


def broker_host_port(settings: Settings) -> tuple[str, int]:
    first = settings.kafka_bootstrap_servers.split(",")[0]
    host, port = first.rsplit(":", 1)
    return host, int(port)


@dataclass(frozen=True)
class Service:
    """A supervised background process: how to start it, where it answers, how to tell it is healthy."""

    name: str
    description: str
    port: Callable[[Settings], int]
    url: Callable[[Settings], str]
    command: Callable[[Settings], list[str]]
    healthy: Callable[[Settings], bool]
    extra_env: Callable[[Settings], dict[str, str]] = lambda s: {}
    prepare: Callable[[Settings], None] = lambda s: None  # runs before each start (e.g. first-time setup)
    start_timeout: float = 60.0
    # Services that must answer before this one starts (and that stop only after it has stopped).
    requires: tuple[str, ...] = ()
    # Every port the process listens on, when more than `port` (checked free before it starts).
    ports: Callable[[Settings], list[int]] | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 20.0
    # A short note for status output (e.g. how many workers a master has), or "" when there is none.
    detail: Callable[[Settings], str] = lambda s: ""
    # The secrets the process needs (incident_contracts.settings.SECRET_GRANTS: "gemini", "tables", "ingest",
    # "notify"); it gets no other, neither from the settings nor from this process's environment.
    secrets: tuple[str, ...] = ()

    def environment(self, settings: Settings) -> dict[str, str]:
        """The process's environment: this one's without secrets, the settings, the granted secrets, and
        the service's own variables."""
        env = inherited_env(self.secrets)
        env.update(settings_env(settings, self.secrets))
        env.update(self.extra_env(settings))
        return env

    def listen_ports(self, settings: Settings) -> list[int]:
        return self.ports(settings) if self.ports is not None else [self.port(settings)]


def embedded_kafka_node(settings: Settings) -> KafkaNode:
    """The embedded one-node Kafka: its files (configuration and log directory) under RUNTIME_DIR/kafka."""
    host, port = broker_host_port(settings)
    return KafkaNode(1, host, port, settings.kafka_controller_port, settings.runtime_dir / "kafka")


def _prepare_broker(settings: Settings) -> None:
    node = embedded_kafka_node(settings)
    prepare_node(node, [node], cluster_id_for(node.home), settings.kafka_heap)


def _broker_healthy(settings: Settings) -> bool:
    try:
        check_broker(settings.kafka_bootstrap_servers, timeout=2)
        return True
    except BrokerUnavailable:
        return False


def _airflow_env(settings: Settings) -> dict[str, str]:
    from incident_airflow.environment import airflow_env

    return airflow_env(settings)


def _dashboard_command(settings: Settings) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(project_root() / DASHBOARD_ENTRY),
            "--server.port", str(settings.dashboard_port), "--server.address", "127.0.0.1",
            "--server.headless", "true", "--browser.gatherUsageStats", "false"]


def _ensure_log_topic(settings: Settings) -> None:
    """The log topic, created when missing (idempotent): log-ingest is ready only once it exists."""
    ensure_topics(settings.kafka_bootstrap_servers, [TopicSpec(
        settings.kafka_topic_logs, settings.kafka_topic_partitions, settings.kafka_replication_factor,
        settings.topic_configs())])


def _ingest_url(settings: Settings) -> str:
    host = settings.ingest_host if settings.ingest_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{host}:{settings.ingest_port}"


SERVICES: dict[str, Service] = {
    "broker": Service(
        name="broker",
        description="Apache Kafka (one KRaft node, log directory under RUNTIME_DIR/kafka)",
        port=lambda s: broker_host_port(s)[1],
        url=lambda s: f"kafka://{s.kafka_bootstrap_servers}",
        command=lambda s: node_command(embedded_kafka_node(s), s.kafka_heap),
        healthy=_broker_healthy,
        prepare=_prepare_broker,
        start_timeout=90,
    ),
    "log-ingest": Service(
        name="log-ingest",
        description="Log ingest (OTLP/HTTP /v1/logs, JSON lines /v1/json, text lines /v1/lines) into the log topic",
        port=lambda s: s.ingest_port,
        url=_ingest_url,
        command=lambda s: [sys.executable, "-m", "incident_ingest.cli"],
        healthy=lambda s: http_ok(f"{_ingest_url(s)}/readyz"),  # answers, reaches the broker, topic exists
        requires=("broker",),
        prepare=_ensure_log_topic,
        secrets=("ingest",),  # the token its clients present; no other secret
        start_timeout=60,
    ),
    "airflow": Service(
        name="airflow",
        description="Apache Airflow (standalone: api-server, scheduler, dag-processor, triggerer)",
        port=lambda s: s.airflow_port,
        url=lambda s: f"http://127.0.0.1:{s.airflow_port}",
        command=lambda s: [str(Path(sys.executable).parent / "airflow"), "standalone"],
        healthy=lambda s: http_ok(f"http://127.0.0.1:{s.airflow_port}/api/v2/monitor/health"),
        extra_env=_airflow_env,
        secrets=("gemini", "tables"),  # its tasks run triage (Gemini) and read and write the tables
        start_timeout=300,
    ),
    "dashboard": Service(
        name="dashboard",
        description="Streamlit dashboard",
        port=lambda s: s.dashboard_port,
        url=lambda s: f"http://127.0.0.1:{s.dashboard_port}",
        command=_dashboard_command,
        healthy=lambda s: http_ok(f"http://127.0.0.1:{s.dashboard_port}/_stcore/health"),
        secrets=("gemini", "tables"),
        start_timeout=60,
    ),
    "notifier": Service(
        name="notifier",
        description="Notifier (incident transitions to webhooks, Slack, Alertmanager; docs/operations.md)",
        port=lambda s: s.notify_port,
        url=lambda s: f"http://127.0.0.1:{s.notify_port}/healthz",
        command=lambda s: [sys.executable, "-m", "incident_dashboard.notify"],
        healthy=lambda s: http_ok(f"http://127.0.0.1:{s.notify_port}/healthz"),
        ports=lambda s: [s.notify_port] + ([s.notify_metrics_port] if s.notify_metrics_port else []),
        secrets=("tables", "notify"),  # reads incident_updates, writes its delivery log; NOTIFY_WEBHOOK_URL
        start_timeout=60,
    ),
}

ORDER = ("broker", "log-ingest", "airflow", "dashboard", "notifier")


def host_of(url: str) -> str:
    return urlsplit(url).hostname or "127.0.0.1"
