"""Schemas of the Parquet tables under DATA_DIR: the contract between the Spark job and its readers.

The Spark job writes these tables and the dashboard, the Airflow reconciliation and the benchmarks
read them. Both sides import the schemas from here and tests check each side against them, so a
column cannot change on one side only. Timestamps are UTC with microsecond precision (Delta Lake's
timestamp type).

Tables (folder names under DATA_DIR):

* ``events``            one row per decoded log event, enriched; partitioned by event_date/event_hour
* ``incident_updates``  append-only lifecycle of incidents: opened / updated / resolved rows
* ``dead_letter``       every Kafka record that could not become an event, with the reason
  (the values of :class:`incident_contracts.dead_letter.DeadLetterReason`)
* ``metrics``           Spark streaming progress, one row per micro-batch
* ``incident_actions``  append-only audit of what people did on an incident (acknowledge, assign, note,
  snooze, resolve, reopen), written by the dashboard; the detector never writes it
* ``notifications``     delivery log of the notifier: one row per attempt round of (incident, transition, route)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")


class UpdateType(StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    RESOLVED = "resolved"


class IncidentStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Severity(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


EVENTS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_time", TS, nullable=False),
        pa.field("ingest_time", TS, nullable=False),
        pa.field("service", pa.string(), nullable=False),
        pa.field("environment", pa.string(), nullable=False),
        pa.field("host", pa.string(), nullable=False),
        pa.field("level", pa.string(), nullable=False),
        pa.field("is_error", pa.bool_(), nullable=False),
        pa.field("logger", pa.string()),
        pa.field("message", pa.string(), nullable=False),
        pa.field("trace_id", pa.string()),
        pa.field("span_id", pa.string()),
        pa.field("http_method", pa.string()),
        pa.field("http_path", pa.string()),
        pa.field("http_status", pa.int32()),
        pa.field("latency_ms", pa.float64()),
        pa.field("error_type", pa.string()),
        pa.field("signature", pa.string(), nullable=False),
        pa.field("signature_id", pa.string(), nullable=False),
        pa.field("tier", pa.string()),
        pa.field("owner", pa.string()),
        pa.field("attributes", pa.map_(pa.string(), pa.string())),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
        pa.field("event_date", pa.string(), nullable=False),
        pa.field("event_hour", pa.int32(), nullable=False),
    ]
)
EVENTS_PARTITIONS = ("event_date", "event_hour")

SIGNATURE_COUNT = pa.struct(
    [
        pa.field("signature", pa.string()),
        pa.field("signature_id", pa.string()),
        pa.field("count", pa.int64()),
        pa.field("sample", pa.string()),
    ]
)

INCIDENT_UPDATES = pa.schema(
    [
        pa.field("incident_id", pa.string(), nullable=False),
        pa.field("update_seq", pa.int32(), nullable=False),
        pa.field("update_type", pa.string(), nullable=False),  # UpdateType
        pa.field("status", pa.string(), nullable=False),  # IncidentStatus
        pa.field("update_time", TS, nullable=False),  # when this row was produced (processing time)
        pa.field("service", pa.string(), nullable=False),
        pa.field("environment", pa.string(), nullable=False),
        pa.field("tier", pa.string()),
        pa.field("owner", pa.string()),
        pa.field("severity", pa.string(), nullable=False),  # Severity
        pa.field("severity_reasons", pa.list_(pa.string())),
        pa.field("trigger", pa.string()),  # what departed from baseline: error_rate, latency, new_signature...
        pa.field("title", pa.string()),
        pa.field("opened_at", TS, nullable=False),  # event time of the first anomalous window
        pa.field("first_seen", TS, nullable=False),
        pa.field("last_seen", TS, nullable=False),
        pa.field("resolved_at", TS),
        pa.field("event_count", pa.int64()),
        pa.field("error_count", pa.int64()),
        pa.field("error_rate", pa.float64()),
        pa.field("baseline_error_rate", pa.float64()),
        pa.field("latency_p95_ms", pa.float64()),
        pa.field("baseline_latency_p95_ms", pa.float64()),
        pa.field("anomaly_score", pa.float64()),
        pa.field("top_signatures", pa.list_(SIGNATURE_COUNT)),
        pa.field("sample_messages", pa.list_(pa.string())),
        pa.field("affected_hosts", pa.list_(pa.string())),
        pa.field("origin_service", pa.string()),  # likely origin when linked to an upstream incident
        pa.field("origin_incident_id", pa.string()),
        pa.field("linked_incident_ids", pa.list_(pa.string())),
    ]
)

DEAD_LETTER = pa.schema(
    [
        pa.field("topic", pa.string(), nullable=False),
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
        pa.field("kafka_timestamp", TS),
        pa.field("key", pa.binary()),
        pa.field("raw_value", pa.binary()),  # the record's bytes, cut to a bounded prefix when giant
        pa.field("value_size", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),  # dead_letter.DeadLetterReason
        pa.field("detail", pa.string()),
        pa.field("detected_at", TS, nullable=False),
        pa.field("dl_date", pa.string(), nullable=False),
    ]
)
DEAD_LETTER_PARTITIONS = ("dl_date",)
DEAD_LETTER_MAX_RAW_BYTES = 64 * 1024

METRICS = pa.schema(
    [
        pa.field("query_name", pa.string(), nullable=False),
        pa.field("query_id", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("batch_id", pa.int64(), nullable=False),
        pa.field("timestamp", TS, nullable=False),
        pa.field("num_input_rows", pa.int64()),
        pa.field("input_rows_per_second", pa.float64()),
        pa.field("processed_rows_per_second", pa.float64()),
        pa.field("batch_duration_ms", pa.int64()),
        pa.field("state_rows", pa.int64()),
        pa.field("state_memory_bytes", pa.int64()),
        pa.field("start_offsets", pa.string()),  # JSON {partition: offset}
        pa.field("end_offsets", pa.string()),
        pa.field("latest_offsets", pa.string()),
        pa.field("lag", pa.int64()),
    ]
)


class ActionKind(StrEnum):
    """What a person did on an incident (a row of ``incident_actions``)."""

    ACKNOWLEDGE = "acknowledge"
    ASSIGN = "assign"  # argument: the assignee's name ("" unassigns)
    NOTE = "note"  # argument: the note's text
    SNOOZE = "snooze"  # argument: minutes, a whole number
    RESOLVE = "resolve"
    REOPEN = "reopen"


INCIDENT_ACTIONS = pa.schema(
    [
        pa.field("action_id", pa.string(), nullable=False),  # unique per action (a UUID)
        pa.field("incident_id", pa.string(), nullable=False),
        pa.field("action", pa.string(), nullable=False),  # ActionKind
        pa.field("argument", pa.string()),
        pa.field("actor", pa.string(), nullable=False),  # who: the signed-in user or the name they typed
        pa.field("actor_source", pa.string()),  # "login" or "typed"
        pa.field("action_time", TS, nullable=False),
        pa.field("detector_status", pa.string()),  # IncidentStatus of the incident's newest lifecycle row
        pa.field("detector_severity", pa.string()),
        pa.field("detector_update_seq", pa.int32()),
        pa.field("human_status", pa.string()),  # the human status just before this action
        pa.field("assignee", pa.string()),  # the assignee just before this action
    ]
)


NOTIFICATIONS = pa.schema(
    [
        pa.field("incident_id", pa.string(), nullable=False),
        pa.field("transition", pa.string(), nullable=False),  # opened, raised:<seq>, resolved, ack_timeout
        pa.field("route", pa.string(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),  # sent, coalesced (in a summary), failed
        pa.field("service", pa.string()),
        pa.field("severity", pa.string()),
        pa.field("attempts", pa.int32()),
        pa.field("http_status", pa.int32()),
        pa.field("error", pa.string()),
        pa.field("transition_time", TS),
        pa.field("recorded_at", TS, nullable=False),
    ]
)


@dataclass(frozen=True)
class Table:
    name: str
    schema: pa.Schema
    partitions: tuple[str, ...] = ()


TABLES: dict[str, Table] = {
    "events": Table("events", EVENTS, EVENTS_PARTITIONS),
    "incident_updates": Table("incident_updates", INCIDENT_UPDATES),
    "dead_letter": Table("dead_letter", DEAD_LETTER, DEAD_LETTER_PARTITIONS),
    "metrics": Table("metrics", METRICS),
    "incident_actions": Table("incident_actions", INCIDENT_ACTIONS),
    "notifications": Table("notifications", NOTIFICATIONS),
}


def empty_table(name: str) -> pa.Table:
    """A zero-row table with the contract's schema (handy for readers facing a missing table)."""
    return TABLES[name].schema.empty_table()


def check_schema(name: str, actual: pa.Schema, *, ignore_nullability: bool = True) -> list[str]:
    """Differences between a schema read from disk and the contract; an empty list means it conforms."""
    expected = TABLES[name].schema
    problems: list[str] = []
    actual_fields = {f.name: f for f in actual}
    for field in expected:
        got = actual_fields.get(field.name)
        if got is None:
            problems.append(f"{name}.{field.name}: missing")
            continue
        if not _same_type(got.type, field.type):
            problems.append(f"{name}.{field.name}: type {got.type} != contract {field.type}")
        if not ignore_nullability and got.nullable != field.nullable:
            problems.append(f"{name}.{field.name}: nullable={got.nullable} != contract {field.nullable}")
    for extra in set(actual_fields) - {f.name for f in expected}:
        problems.append(f"{name}.{extra}: not in the contract")
    return problems


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    """Type equality that ignores nested field names/nullability and dictionary encoding of strings."""
    if pa.types.is_dictionary(a):
        a = a.value_type
    if pa.types.is_large_string(a):
        a = pa.string()
    if pa.types.is_large_binary(a):
        a = pa.binary()
    if pa.types.is_timestamp(a) and pa.types.is_timestamp(b):
        return True  # units and zone are normalised by readers; Spark writes micros
    if pa.types.is_list(a) or pa.types.is_large_list(a):
        return (pa.types.is_list(b) or pa.types.is_large_list(b)) and _same_type(a.value_type, b.value_type)
    if pa.types.is_map(a):
        return pa.types.is_map(b) and _same_type(a.key_type, b.key_type) and _same_type(a.item_type, b.item_type)
    if pa.types.is_struct(a):
        return pa.types.is_struct(b) and [f.name for f in a] == [f.name for f in b] and all(
            _same_type(x.type, y.type) for x, y in zip(a, b, strict=True))
    return a.equals(b)
