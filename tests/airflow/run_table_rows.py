"""Rows of the events and dead_letter tables for reconciliation tests: the shared fixture rows (tests/table_rows.py)
at the given (partition, offset) pairs, of the given topic and stamped at the given time (reconciliation's
`since` filter reads ingest_time / detected_at)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa
from table_rows import dead_letter_rows, event_rows

TIME_COLUMN = {"events": "ingest_time", "dead_letter": "detected_at"}


def kafka_rows(table: str, topic: str, rows: Sequence[tuple[int, int]], stamp: datetime | None = None) -> pa.Table:
    """`rows` (partition, offset) of `topic` as rows of `table`, stamped `stamp` (default: now)."""
    make = event_rows if table == "events" else dead_letter_rows
    partitions = sorted({p for p, _ in rows})
    data = pa.concat_tables([make([o for p, o in rows if p == partition], partition=partition)
                             for partition in partitions]) if rows else make([])
    count, time_column = data.num_rows, TIME_COLUMN[table]
    data = data.set_column(data.schema.get_field_index("topic"), "topic", pa.array([topic] * count, pa.string()))
    stamps = pa.array([stamp or datetime.now(UTC)] * count, data.schema.field(time_column).type)
    return data.set_column(data.schema.get_field_index(time_column), time_column, stamps)
