"""The one place configuration is read: environment variables, then `.env`, then defaults.

Every variable is listed, with its default and a comment, in `.env.example`; a test keeps the two in
step. A wrong value fails at start with a message naming the variable, the bad value and what is
expected, instead of surfacing later as an obscure error deep inside Kafka, Spark or Airflow.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Port = Annotated[int, Field(ge=1, le=65535)]

_SPARK_MASTER = re.compile(r"^(local(\[(\*|\d+)(,\s*\d+)?\])?|spark://[\w.\-]+:\d+(,[\w.\-]+:\d+)*|yarn|k8s://.+)$")
_HOST_PORT = re.compile(r"^[\w.\-]+:\d{1,5}$")


class SettingsError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class StartingOffsets(StrEnum):
    EARLIEST = "earliest"
    LATEST = "latest"


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    SNAPPY = "snappy"
    LZ4 = "lz4"
    ZSTD = "zstd"


def project_root() -> Path:
    """The checkout's root: PROJECT_ROOT if set, else the nearest parent holding `.env.example`."""
    explicit = os.environ.get("PROJECT_ROOT")
    if explicit:
        return Path(explicit).resolve()
    for candidate in (Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents):
        if (candidate / ".env.example").is_file() and (candidate / "schemas").is_dir():
            return candidate
    return Path.cwd()


class ObjectLocation(str):
    """An object-storage location such as ``s3://bucket/prefix``; ``/`` joins like a path."""

    def __truediv__(self, name: str) -> ObjectLocation:
        return ObjectLocation(f"{self.rstrip('/')}/{name}")

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]


_OBJECT_LOCATION = re.compile(r"^s3a?://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\s]*)?$")


class Settings(BaseSettings):
    """All configuration of the platform. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    # --- general ---------------------------------------------------------------------------
    log_level: LogLevel = LogLevel.INFO
    environment: str = "prod"
    # A folder, or s3://bucket/prefix (then the job's checkpoints default to RUNTIME_DIR/checkpoints).
    data_dir: Path | ObjectLocation = Path("data")
    runtime_dir: Path = Path("runtime")
    # Address the Prometheus endpoints of the streaming job and the notifier listen on (0.0.0.0: every interface).
    metrics_host: str = "127.0.0.1"

    # --- log formats (replay of log files; docs/log-formats.md) ------------------------------
    # A YAML or TOML file of log formats that add to the bundled presets or replace them by name; empty: none.
    log_formats_file: Path | None = None
    # Zone of log timestamps that carry none, when their format declares none: UTC, an IANA name or +HH:MM.
    log_timezone: str = "UTC"

    # --- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_logs: str = "logs.events"
    kafka_topic_partitions: Annotated[int, Field(ge=1, le=1024)] = 2
    kafka_replication_factor: Annotated[int, Field(ge=1, le=16)] = 1
    # Replicas that must have a record before a producer with acks=all is told it is written (topic config).
    kafka_min_insync_replicas: Annotated[int, Field(ge=1, le=16)] = 1
    kafka_compression: Compression = Compression.LZ4
    kafka_consumer_group: str = "incident-stream"
    schema_registry_url: str = ""
    kafka_ui_url: str = ""
    # The embedded Apache Kafka node (KRaft): its controller listener and its JVM heap.
    kafka_controller_port: Port = 9093
    kafka_heap: str = "512m"

    # --- Spark -----------------------------------------------------------------------------
    spark_master: str = "local[*]"
    spark_ui_port: Port = 4040
    spark_driver_memory: str = "1g"
    # Start Spark's JVMs from the class-data archive `make setup` builds (incident_contracts.class_data).
    spark_class_data: bool = True
    # The job's only shuffle is the detection operator, keyed by environment: more partitions than
    # environments only add per-partition state-store and Python-worker work to every micro-batch.
    spark_shuffle_partitions: Annotated[int, Field(ge=1, le=10_000)] = 1
    stream_trigger_seconds: Annotated[float, Field(gt=0, le=3600)] = 2.0
    stream_max_records_per_trigger: Annotated[int, Field(ge=1)] = 500_000
    stream_starting_offsets: StartingOffsets = StartingOffsets.EARLIEST
    stream_fail_on_data_loss: bool = True
    stream_idle_stop_seconds: Annotated[float, Field(ge=0)] = 0.0
    stream_max_event_age_hours: Annotated[float, Field(ge=0)] = 168.0
    stream_max_future_seconds: Annotated[float, Field(ge=0)] = 900.0
    # Port of the streaming job's Prometheus endpoint (METRICS_HOST:<port>/metrics while a job runs); 0: off.
    stream_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 8612
    checkpoint_dir: Path | None = None

    # --- incident detection (the streaming job) ---------------------------------------------
    detection_allowed_lateness_seconds: Annotated[float, Field(ge=0, le=600)] = 2.0
    # Events later than the allowed lateness, but at most this far behind, are counted when they arrive; older
    # ones are left out of detection (counted per service). Spark keeps this much event-time state.
    detection_late_horizon_seconds: Annotated[float, Field(ge=0, le=86_400)] = 600.0
    detection_open_score: Annotated[float, Field(gt=0, le=1000)] = 6.0
    detection_quiet_period_seconds: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    # Tier (1-3) given to a service that is not in the catalog (a "discovered" service): its severity
    # and absolute floors are those of this tier. Not the lowest tier, so an unknown service can escalate.
    default_service_tier: Annotated[int, Field(ge=1, le=3)] = 2

    # --- Airflow ---------------------------------------------------------------------------
    airflow_port: Port = 8070
    airflow_parallelism: Annotated[int, Field(ge=1, le=64)] = 4
    # The only folder a pipeline run's `replay_file` may name a file in (relative to the project root).
    replay_dir: Path = Path("replay")

    # --- dashboard -------------------------------------------------------------------------
    dashboard_port: Port = 8501
    dashboard_cache_ttl_seconds: Annotated[float, Field(ge=0, le=3600)] = 5.0
    # Root-cause analyses (Gemini calls) one user may start per window; 0 means no limit.
    analysis_limit_per_user: Annotated[int, Field(ge=0, le=10_000)] = 10
    analysis_limit_window_seconds: Annotated[float, Field(gt=0, le=86_400 * 7)] = 3600.0

    # --- notifications (incident_dashboard.notify; docs/operations.md) ----------------------
    # Generic JSON webhook that receives every P1/P2 transition; empty: only the routes of NOTIFY_RULES_FILE.
    # A secret (a Slack incoming-webhook URL lets anyone post to the channel): only the notifier gets it.
    notify_webhook_url: SecretStr | None = None
    # YAML file of routes (kind, url, severities, services, owners, tiers, events, rate limit); empty: none.
    notify_rules_file: Path | None = None
    # Base URL of the dashboard as receivers reach it (the incident link in messages).
    notify_dashboard_url: str = "http://localhost:8501"
    # Port of the notifier's health endpoint (127.0.0.1:<port>/healthz; `make up` waits for it).
    notify_port: Port = 8610
    # Port of the notifier's Prometheus endpoint (METRICS_HOST:<port>/metrics); 0: off.
    notify_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 8611
    # Seconds between two reads of incident_updates by the notifier.
    notify_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    # Transitions older than this when the notifier first sees them are not sent (no flood of history).
    notify_lookback_minutes: Annotated[float, Field(gt=0, le=10_080)] = 60.0
    # A P1/P2 incident nobody acknowledged (or snoozed, or resolved) this long after it opened; 0: off.
    notify_ack_timeout_minutes: Annotated[float, Field(ge=0, le=10_080)] = 15.0
    # Messages per route and minute at most (a route's rate_limit_per_minute overrides it); more wait.
    notify_rate_limit_per_minute: Annotated[int, Field(ge=1, le=10_000)] = 20
    # After a message about a service, further transitions of that service on the same route within this
    # many seconds are sent as one summary when the window closes (a flapping service sends no storm).
    notify_coalesce_seconds: Annotated[float, Field(ge=0, le=86_400)] = 300.0
    # Attempts per delivery (with exponential backoff from NOTIFY_RETRY_BACKOFF_SECONDS) and per-request timeout.
    notify_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    notify_retry_backoff_seconds: Annotated[float, Field(ge=0, le=60)] = 1.0
    notify_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 5.0

    # --- log ingest service (log-ingest: OTLP/HTTP, JSON lines and raw lines into the log topic) ---
    ingest_host: str = "127.0.0.1"
    ingest_port: Port = 4318
    # Bearer token clients must send (Authorization: Bearer ...); empty: no authentication.
    ingest_token: SecretStr | None = None
    # Largest request body accepted, in bytes, before and after gzip decompression.
    ingest_max_body_bytes: Annotated[int, Field(ge=1024, le=1_073_741_824)] = 16_777_216
    # How long a request waits for Kafka to acknowledge its records before answering 503.
    ingest_delivery_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    # Records queued towards Kafka at most; a request that would exceed it is answered 429.
    ingest_max_queued_records: Annotated[int, Field(ge=1000, le=10_000_000)] = 500_000
    # Processes serving the ingest port, each with its own Kafka producer (/metrics adds theirs up).
    ingest_workers: Annotated[int, Field(ge=1, le=32)] = 1
    # JSON endpoint (/v1/json): the keys holding each field, first present wins (a dotted key also
    # looks into nested objects); the service may also come from the request (?service=...).
    ingest_json_timestamp_keys: str = "timestamp,@timestamp,date,time,ts"
    ingest_json_message_keys: str = "message,msg,log"
    ingest_json_level_keys: str = "level,severity,log.level,levelname"
    ingest_json_service_keys: str = "service,service.name,app"
    ingest_json_host_keys: str = "host,hostname,host.name"
    ingest_json_environment_keys: str = "environment,env"

    # --- cluster tier (`make cluster-up`: Kafka brokers, Spark standalone, Airflow on Postgres) ---
    # Ports of the cluster tier's processes, all on 127.0.0.1; incident_stack.cluster derives the
    # tier's settings (broker list, Spark master, ports, folders) from these.
    cluster_kafka_ports: str = "19092,19093,19094"
    cluster_kafka_controller_ports: str = "19192,19193,19194"
    cluster_kafka_topic_partitions: Annotated[int, Field(ge=1, le=1024)] = 6
    cluster_spark_master_port: Port = 7077
    cluster_spark_master_ui_port: Port = 8080
    cluster_spark_worker_ui_ports: str = "8081,8082"
    cluster_spark_worker_cores: Annotated[int, Field(ge=1, le=256)] = 1
    cluster_spark_worker_memory: str = "1g"
    cluster_spark_ui_port: Port = 4041
    cluster_postgres_port: Port = 15432
    cluster_airflow_port: Port = 8071
    cluster_airflow_worker_log_port: Port = 18793
    cluster_airflow_trigger_log_port: Port = 18794
    cluster_dashboard_port: Port = 8502
    cluster_ingest_port: Port = 4319
    cluster_notify_port: Port = 8620
    cluster_notify_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 8621
    cluster_stream_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 8622

    # --- tables: Delta Lake, compaction and retention (table_maintenance) -------------------
    # Object storage for DATA_DIR=s3://...: endpoint (empty: AWS), region and credentials.
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    # Days of rows kept, by the date of the row (0 keeps everything); incident_updates are always kept.
    retention_days_events: Annotated[int, Field(ge=0, le=36_500)] = 30
    retention_days_dead_letter: Annotated[int, Field(ge=0, le=36_500)] = 30
    retention_days_metrics: Annotated[int, Field(ge=0, le=36_500)] = 14
    # Files no table version references are deleted once older than this (readers of older snapshots
    # and a micro-batch being written must not lose their files).
    table_vacuum_retain_hours: Annotated[float, Field(ge=1, le=8760)] = 24.0
    # Cron schedule of the table_maintenance DAG (compaction, retention, vacuum).
    table_maintenance_schedule: str = "17 * * * *"

    # --- Gemini ----------------------------------------------------------------------------
    gemini_api_key: SecretStr | None = None
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: str = ""
    gemini_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0

    @field_validator("spark_master")
    @classmethod
    def _check_spark_master(cls, value: str) -> str:
        if not _SPARK_MASTER.match(value.strip()):
            raise ValueError("expected local, local[N], local[*], spark://HOST:PORT, yarn or k8s://URL")
        return value.strip()

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("expected HOST:PORT[,HOST:PORT...]")
        for server in servers:
            if not _HOST_PORT.match(server) or not 1 <= int(server.rsplit(":", 1)[1]) <= 65535:
                raise ValueError(f"{server!r} is not HOST:PORT with a port from 1 to 65535")
        return ",".join(servers)

    @field_validator("schema_registry_url", "gemini_base_url", "kafka_ui_url", "s3_endpoint_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("expected an http:// or https:// URL, or empty")
        return value

    @field_validator("kafka_min_insync_replicas")
    @classmethod
    def _check_min_insync(cls, value: int, info: ValidationInfo) -> int:
        replicas = info.data.get("kafka_replication_factor")
        if replicas is not None and value > replicas:
            raise ValueError(f"must not exceed KAFKA_REPLICATION_FACTOR ({replicas}): a topic could never "
                             "accept a write acknowledged by all in-sync replicas")
        return value

    @field_validator("cluster_kafka_ports", "cluster_kafka_controller_ports", "cluster_spark_worker_ui_ports")
    @classmethod
    def _check_port_list(cls, value: str) -> str:
        ports = [p.strip() for p in value.split(",") if p.strip()]
        if not ports:
            raise ValueError("expected one or more ports, comma-separated")
        for port in ports:
            if not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"{port!r} is not a port from 1 to 65535 (expected PORT[,PORT...])")
        return ",".join(ports)

    @field_validator("spark_driver_memory", "kafka_heap", "cluster_spark_worker_memory")
    @classmethod
    def _check_memory(cls, value: str) -> str:
        if not re.match(r"^\d+[kmgt]?$", value.strip().lower()):
            raise ValueError("expected a JVM memory size such as 512m or 2g")
        return value.strip().lower()

    @field_validator("data_dir", mode="before")
    @classmethod
    def _check_data_dir(cls, value: object) -> object:
        if isinstance(value, str) and "://" in value:
            text = value.strip().rstrip("/")
            if not _OBJECT_LOCATION.match(text):
                raise ValueError("expected a folder or s3://BUCKET[/PREFIX] (a lower-case bucket name)")
            return ObjectLocation(text.replace("s3a://", "s3://", 1))
        return value

    @field_validator("log_formats_file", "notify_rules_file", mode="before")
    @classmethod
    def _empty_formats_file_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        text = value.strip()
        if text.upper() in ("UTC", "Z", "GMT") or re.fullmatch(r"[+-]\d{2}:?\d{2}", text):
            return text
        try:
            ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("expected UTC, an IANA time zone such as Europe/Paris, or an offset such as +02:00") \
                from None
        return text

    @field_validator("checkpoint_dir", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ingest_json_timestamp_keys", "ingest_json_message_keys", "ingest_json_level_keys",
                     "ingest_json_service_keys", "ingest_json_host_keys", "ingest_json_environment_keys")
    @classmethod
    def _check_key_list(cls, value: str) -> str:
        keys = [k.strip() for k in value.split(",") if k.strip()]
        if not keys:
            raise ValueError("expected one or more JSON keys, comma-separated (e.g. message,msg,log)")
        return ",".join(keys)

    @field_validator("gemini_api_key", "aws_access_key_id", "aws_secret_access_key", "ingest_token",
                     "notify_webhook_url")
    @classmethod
    def _empty_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return value

    # --- derived paths ---------------------------------------------------------------------
    @property
    def data_is_local(self) -> bool:
        return not isinstance(self.data_dir, ObjectLocation)

    @property
    def files_dir(self) -> Path:
        """Where the platform's plain files go (run folders, stored analyses): DATA_DIR when it is a folder,
        RUNTIME_DIR when the tables are in object storage."""
        return self.runtime_dir if isinstance(self.data_dir, ObjectLocation) else self.data_dir

    @property
    def replay_folder(self) -> Path:
        """REPLAY_DIR as an absolute path (relative to the project root); it is not created."""
        return self.replay_dir if self.replay_dir.is_absolute() else project_root() / self.replay_dir

    @property
    def log_formats_path(self) -> Path | None:
        """LOG_FORMATS_FILE as an absolute path (relative to the project root), or None when unset."""
        if self.log_formats_file is None:
            return None
        return self.log_formats_file if self.log_formats_file.is_absolute() else project_root() / self.log_formats_file

    @property
    def checkpoint_root(self) -> Path:
        """Spark checkpoints need a file system: DATA_DIR/_checkpoints, or RUNTIME_DIR/checkpoints when the
        tables are in object storage."""
        if self.checkpoint_dir:
            return self.checkpoint_dir
        if isinstance(self.data_dir, ObjectLocation):
            return self.runtime_dir / "checkpoints"
        return self.data_dir / "_checkpoints"

    def storage_options(self) -> dict[str, str]:
        """Options of an S3 object store (the deltalake/object_store names) for tables at s3://..."""
        options = {"AWS_REGION": self.s3_region}
        if self.s3_endpoint_url:
            options["AWS_ENDPOINT_URL"] = self.s3_endpoint_url
            if self.s3_endpoint_url.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        if self.aws_access_key_id and self.aws_secret_access_key:
            options["AWS_ACCESS_KEY_ID"] = self.aws_access_key_id.get_secret_value()
            options["AWS_SECRET_ACCESS_KEY"] = self.aws_secret_access_key.get_secret_value()
        return options

    @property
    def uses_schema_registry(self) -> bool:
        return bool(self.schema_registry_url)

    def topic_configs(self) -> dict[str, str]:
        """Topic-level configuration the log topic is created with."""
        return {"min.insync.replicas": str(self.kafka_min_insync_replicas)}

    def resolved(self) -> Settings:
        """A copy with relative directories made absolute against the project root, created if missing."""
        root = project_root()
        updates: dict[str, Path] = {}
        for name in ("data_dir", "runtime_dir", "checkpoint_dir"):
            path = getattr(self, name)
            if path is None or isinstance(path, ObjectLocation):
                continue
            path = path if path.is_absolute() else (root / path)
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SettingsError(
                    f"{name.upper()}={path}: the directory does not exist and cannot be created ({exc.strerror}). "
                    f"Point {name.upper()} at a writable folder."
                ) from exc
            if not os.access(path, os.W_OK):
                raise SettingsError(f"{name.upper()}={path}: the directory is not writable. Fix its permissions "
                                    f"or point {name.upper()} elsewhere.")
            updates[name] = path
        return self.model_copy(update=updates)


# --- what a child process gets ----------------------------------------------------------------------

# Secret settings by the need that justifies them: "gemini" for the processes that run root-cause analysis
# (the dashboard, the Airflow process that runs triage), "tables" for those that read or write the tables
# in object storage (the dashboard, Airflow's tasks, the Spark job and its executors), "ingest" for the log
# ingest service (the token its clients present), "notify" for the notifier (the webhook URL it posts to).
SECRET_GRANTS: dict[str, tuple[str, ...]] = {
    "gemini": ("gemini_api_key",),
    "tables": ("aws_access_key_id", "aws_secret_access_key"),
    "ingest": ("ingest_token",),
    "notify": ("notify_webhook_url",),
}
# Secrets a process may hold in its own environment beside the settings, passed on only with the grant.
_INHERITED_GRANTS: dict[str, tuple[str, ...]] = {"tables": ("AWS_SESSION_TOKEN",)}
# Names that are never inherited without a grant: the settings' secrets, the distributed stack's, and
# anything named like a credential.
_SECRET_NAME = re.compile(r"(?i)(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|FERNET)")


def _check_grants(grants: tuple[str, ...]) -> None:
    unknown = set(grants) - set(SECRET_GRANTS)
    if unknown:
        raise ValueError(f"unknown secret grants {sorted(unknown)}; known: {sorted(SECRET_GRANTS)}")


def settings_env(settings: Settings, grants: tuple[str, ...] = ()) -> dict[str, str]:
    """The settings as environment variables for a child process, with the secrets of `grants` only.

    A secret not granted is set empty rather than left out: the child then does not read it from `.env`
    either (variables win over the file)."""
    _check_grants(grants)
    granted = {name for grant in grants for name in SECRET_GRANTS[grant]}
    secret_fields = {name for names in SECRET_GRANTS.values() for name in names}
    env: dict[str, str] = {"PROJECT_ROOT": str(project_root())}
    for name, value in settings.model_dump().items():
        if name in secret_fields or isinstance(value, SecretStr):
            secret = getattr(settings, name)
            env[name.upper()] = secret.get_secret_value() if name in granted and secret is not None else ""
            continue
        if value is None:
            continue
        env[name.upper()] = str(value.value if hasattr(value, "value") else value)
    return env


def inherited_env(grants: tuple[str, ...] = (), environ: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment (or `environ`) without secrets, except those `grants` allow: the base a
    child's environment is built on."""
    _check_grants(grants)
    source = dict(os.environ if environ is None else environ)
    allowed = {name.upper() for grant in grants for name in SECRET_GRANTS[grant] + _INHERITED_GRANTS.get(grant, ())}
    secret_names = {name.upper() for names in SECRET_GRANTS.values() for name in names}
    secret_names |= {name for names in _INHERITED_GRANTS.values() for name in names}
    return {key: value for key, value in source.items()
            if key.upper() in allowed or not (key.upper() in secret_names or _SECRET_NAME.search(key))}


def _explain(exc: ValidationError) -> str:
    lines = ["Invalid configuration (environment variables or .env):"]
    for error in exc.errors():
        variable = "_".join(str(part) for part in error["loc"]).upper() or "?"
        value = error.get("input")
        shown = "<hidden>" if "KEY" in variable or "TOKEN" in variable else repr(value)
        lines.append(f"  {variable}={shown}: {error['msg']}")
    lines.append("See .env.example for every variable, its default and what it accepts.")
    return "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Read, validate and resolve the settings; raise SettingsError naming the variable on a bad value."""
    env_file = os.environ.get("ENV_FILE") or str(project_root() / ".env")
    try:
        settings = Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None
    return settings.resolved()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, loaded once."""
    return load_settings()
