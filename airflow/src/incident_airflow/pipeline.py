"""The steps of the `incident_processing_pipeline` DAG as plain functions (the DAG file only wires them).

Each step takes the settings and the results of earlier steps (JSON-able dicts passed through XCom),
says what it did in plain words on the logger, and returns its own result.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaException

from incident_airflow import producer
from incident_airflow.params import RunRequest
from incident_airflow.runs import offset_ranges, run_dir
from incident_airflow.summary import RunSummary, build_summary
from incident_contracts.kafka import (
    BrokerUnavailable,
    TopicMissing,
    TopicSpec,
    check_broker,
    end_offsets,
    ensure_topics,
    offsets_without_records,
    partitions_of,
)
from incident_contracts.settings import Settings, load_settings

if TYPE_CHECKING:
    from incident_airflow.reconcile import Reconciliation

log = logging.getLogger(__name__)

KAFKA_CONN_ID = "kafka_default"
# Rows stamped earlier than this before the run started belong to an earlier life of the topic.
CLOCK_MARGIN = timedelta(seconds=5)
ESCALATE_SEVERITIES = ("P1", "P2")
OFFSETS_FILE = "offsets.json"  # the run's offset ranges and the generator's summary, in the run folder


class ReconciliationFailed(RuntimeError):
    """Records of the run are missing or duplicated; the message names the partitions and offsets."""


def pipeline_settings() -> Settings:
    """The project's settings, with the broker and topic taken from Airflow's `kafka_default` connection.

    The connection is generated from the same settings (see environment.py), so the two agree; reading
    it here lets a deployment point the DAG at another broker through Airflow alone.
    """
    settings = load_settings()
    try:
        from airflow.sdk import BaseHook

        extra = BaseHook.get_connection(KAFKA_CONN_ID).extra_dejson
    except Exception as exc:  # the connection is optional
        log.info("connection %s not defined (%s); using KAFKA_BOOTSTRAP_SERVERS from the settings",
                 KAFKA_CONN_ID, type(exc).__name__)
        return settings
    updates: dict[str, Any] = {}
    if extra.get("bootstrap.servers"):
        updates["kafka_bootstrap_servers"] = extra["bootstrap.servers"]
    if extra.get("topic"):
        updates["kafka_topic_logs"] = extra["topic"]
    if "schema.registry.url" in extra:
        updates["schema_registry_url"] = extra["schema.registry.url"]
    return settings.model_copy(update=updates)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


# --- prepare -----------------------------------------------------------------------------------

def prepare_topic(settings: Settings) -> dict[str, Any]:
    """Check the broker answers and create the topic if missing; BrokerUnavailable is worth a retry."""
    bootstrap, topic = settings.kafka_bootstrap_servers, settings.kafka_topic_logs
    topics = check_broker(bootstrap, timeout=10)
    log.info("Kafka broker at %s answered (%d topics).", bootstrap, len(topics))
    outcome = ensure_topics(bootstrap, [TopicSpec(topic, settings.kafka_topic_partitions,
                                                  settings.kafka_replication_factor, settings.topic_configs())])
    partitions = partitions_of(bootstrap, topic)
    log.info("Topic %s: %s; partitions %s.", topic, outcome.get(topic, "exists"), partitions)
    return {"bootstrap": bootstrap, "topic": topic, "partitions": partitions, "outcome": outcome.get(topic)}


# --- produce -----------------------------------------------------------------------------------

def produce(settings: Settings, request: RunRequest, key: str) -> dict[str, Any]:
    """Note the topic's end offsets, run the generator, note them again: the run's offset ranges.

    The end offsets are high watermarks, not last stable offsets: a transaction another producer holds
    open must not cut the run's own records out of its range (the job reads them once it ends).
    """
    bootstrap, topic = settings.kafka_bootstrap_servers, settings.kafka_topic_logs
    partitions = partitions_of(bootstrap, topic)
    start = end_offsets(bootstrap, topic, partitions)
    started_at = datetime.now(UTC)
    log.info("Topic %s ends at offsets %s before producing. Producing %s.", topic, start, request.describe())
    summary = producer.run_generator(settings, request, key)
    end = end_offsets(bootstrap, topic, partitions)
    grown = {p: end[p] - start[p] for p in partitions}
    log.info("The generator delivered %s of %s events (%s failed) in %.1fs (%.0f/s). Topic %s now ends at %s: "
             "%d new records (%s per partition).", summary.get("delivered"), summary.get("events_sent"),
             summary.get("failed"), summary.get("duration_s") or 0.0, summary.get("actual_rate") or 0.0,
             topic, end, sum(grown.values()), grown)
    if summary.get("interrupted"):
        raise producer.ProducerFailed("the generator was interrupted before the end of the run (the task was "
                                      "asked to stop); the run's records are incomplete")
    failed = int(summary.get("failed") or 0)
    if failed:
        raise producer.ProducerFailed(
            f"{failed} of {summary.get('events_sent')} events could not be delivered to {bootstrap}; the broker "
            "may have been unavailable. The task is retried; if it keeps failing check the broker (`make status`).")
    produced = {"topic": topic, "run_key": key, "started_at": _iso(started_at),
                "finished_at": _iso(datetime.now(UTC)), "start_offsets": {str(p): o for p, o in start.items()},
                "end_offsets": {str(p): o for p, o in end.items()}, "generator": summary}
    folder = run_dir(settings, key)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OFFSETS_FILE).write_text(json.dumps(produced, indent=2, default=str))
    return produced


# --- reconcile ---------------------------------------------------------------------------------

def check_run(settings: Settings, produced: dict[str, Any]) -> Reconciliation:
    """Compare the run's offset ranges with what `events` and `dead_letter` hold (no side effects).

    Offsets in neither table are asked about in Kafka, and only then (the common case reads no record):
    where Kafka holds no committed record (transaction markers, aborted or compacted records) they
    are gaps, not lost records.
    """
    # Imported here (pyarrow, numpy): the DAG files import this module at every parse.
    from incident_airflow.reconcile import ProducerReport, reconcile
    from incident_airflow.run_tables import offsets_in_ranges
    from incident_contracts.table_store import TableStore

    topic = produced["topic"]
    ranges = offset_ranges(produced)
    since = datetime.fromisoformat(produced["started_at"]) - CLOCK_MARGIN
    store = TableStore.from_settings(settings)
    events = offsets_in_ranges(store, "events", topic, ranges, since, "ingest_time")
    dead = offsets_in_ranges(store, "dead_letter", topic, ranges, since, "detected_at")
    generator = produced.get("generator") or {}
    per_partition = generator.get("partitions")
    report = ProducerReport(
        delivered=int(generator.get("delivered", 0)), failed=int(generator.get("failed") or 0),
        per_partition={int(p): int(n) for p, n in per_partition.items()} if per_partition else None,
    ) if generator else None
    result = reconcile(topic, ranges, events, dead, report)
    if result.missing == 0:
        return result
    return _with_kafka_gaps(settings, result, ranges, events, dead, report)


def _with_kafka_gaps(settings: Settings, first: Reconciliation, ranges: dict[int, tuple[int, int]],
                     events: dict, dead: dict, report: Any) -> Reconciliation:
    """Reconcile again with the offsets Kafka holds no committed record for (read_committed probe)."""
    from incident_airflow.reconcile import missing_ranges, reconcile

    topic = first.topic
    asked = missing_ranges(ranges, events, dead)
    started = time.monotonic()
    try:
        gaps = offsets_without_records(settings.kafka_bootstrap_servers, topic, asked)
    except (BrokerUnavailable, TopicMissing, KafkaException, RuntimeError) as exc:
        log.warning("Could not ask Kafka about the %d offsets in neither table: %s", first.missing, exc)
        note = (f"{first.missing} offsets are in neither events nor dead_letter and Kafka could not be asked "
                f"whether they hold records ({exc}); they count as missing. Check the broker (`make status`) "
                "and reconcile again.")
        return replace(first, notes=(*first.notes, note))
    result = reconcile(topic, ranges, events, dead, report, gaps)
    log.info("%d offsets were in neither table; Kafka holds no committed record at %d of them (asked in %.2fs).",
             first.missing, result.gaps, time.monotonic() - started)
    return result


def reconcile_run(settings: Settings, produced: dict[str, Any]) -> dict[str, Any]:
    """Reconcile, write the result next to the generator's manifest, raise ReconciliationFailed on a gap."""
    started = time.monotonic()
    result = check_run(settings, produced)
    folder = run_dir(settings, produced["run_key"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reconciliation.json").write_text(json.dumps(result.to_dict(), indent=2))
    for line in result.describe().splitlines():
        log.info("%s", line)
    log.info("Reconciliation read the tables in %.2fs; written to %s.", time.monotonic() - started,
             folder / "reconciliation.json")
    if not result.ok:
        raise ReconciliationFailed("reconciliation failed: " + "; ".join(result.problems))
    return result.to_dict()


# --- publish -----------------------------------------------------------------------------------

def incident_digest(settings: Settings, produced: dict[str, Any]) -> dict[str, Any]:
    """Incidents the run opened or updated (by severity), and the P1/P2 ones to triage."""
    from incident_airflow.run_tables import incidents_updated_since
    from incident_contracts.table_store import TableStore

    since = datetime.fromisoformat(produced["started_at"]) - CLOCK_MARGIN
    digest = incidents_updated_since(TableStore.from_settings(settings), since)
    escalate = digest.ids_with_severity(ESCALATE_SEVERITIES)
    log.info("Incidents opened or updated by this run: %d (%s); %d open, %d resolved.", digest.total,
             ", ".join(f"{s} {n}" for s, n in digest.by_severity.items()) or "none", digest.open_count,
             digest.resolved_count)
    for incident in digest.incidents[:20]:
        log.info("  %s %s [%s] %s: %s", incident["severity"], incident["incident_id"], incident["status"],
                 incident["service"], incident["title"])
    return {"by_severity": digest.by_severity, "open": digest.open_count, "resolved": digest.resolved_count,
            "total": digest.total, "escalate": escalate}


# --- summarise ---------------------------------------------------------------------------------

def summarize(settings: Settings, run_id: str, request: RunRequest, produced: dict[str, Any],
              reconciliation: dict[str, Any], incidents: dict[str, Any],
              stream: dict[str, Any] | None) -> RunSummary:
    summary = build_summary(run_id, request.describe(), produced, reconciliation, incidents, stream)
    folder = run_dir(settings, produced["run_key"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run_summary.json").write_text(json.dumps(summary.to_dict(), indent=2, default=str))
    for line in summary.lines():
        log.info("%s", line)
    return summary
