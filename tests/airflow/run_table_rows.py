"""Rows of the events and dead_letter tables for reconciliation tests: the Kafka columns as given, every
other required column a placeholder (the tables' own writer, TableStore.append, fills the nullable ones)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa

from incident_contracts.tables import TABLES

TIME_COLUMN = {"events": "ingest_time", "dead_letter": "detected_at"}


def _placeholder(field: pa.Field, count: int, stamp: datetime) -> pa.Array:
    if pa.types.is_timestamp(field.type):
        return pa.array([stamp] * count, field.type)
    if pa.types.is_string(field.type):
        return pa.array(["x"] * count, field.type)
    if pa.types.is_boolean(field.type):
        return pa.array([False] * count, field.type)
    return pa.array([0] * count, field.type)


def kafka_rows(table: str, topic: str, rows: Sequence[tuple[int, int]], stamp: datetime | None = None,
               day: str = "2026-12-06") -> pa.Table:
    """`rows` (partition, offset) of `topic` as rows of `table`, stamped `stamp` (default: now)."""
    stamp = stamp or datetime.now(UTC)
    count = len(rows)
    given = {
        "topic": pa.array([topic] * count),
        "kafka_partition": pa.array([p for p, _ in rows], pa.int32()),
        "kafka_offset": pa.array([o for _, o in rows], pa.int64()),
        "event_date": pa.array([day] * count), "dl_date": pa.array([day] * count),
        "reason": pa.array(["malformed_body"] * count),
    }
    columns = {}
    for field in TABLES[table].schema:
        if field.name in given:
            columns[field.name] = given[field.name]
        elif not field.nullable:
            columns[field.name] = _placeholder(field, count, stamp)
    return pa.table(columns)
