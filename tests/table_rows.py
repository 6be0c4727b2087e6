"""Rows of the events and dead_letter tables with every required column filled, at given Kafka offsets: the
fixtures of tests that write the tables through the table store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pyarrow as pa

from incident_contracts.tables import DEAD_LETTER, EVENTS

HOUR = dt.datetime(2026, 12, 6, 5, 0, tzinfo=dt.UTC)


def event_rows(offsets: Iterable[int], partition: int = 0, hours: Iterable[int] = (0,)) -> pa.Table:
    """Rows of the events table at the given Kafka offsets, spread round-robin over HOUR + the given hours."""
    hours = list(hours)
    rows = []
    for index, offset in enumerate(offsets):
        when = HOUR + dt.timedelta(hours=hours[index % len(hours)], seconds=offset % 3600)
        rows.append({"event_id": f"evt-{partition}-{offset}", "event_time": when, "ingest_time": when,
                     "service": "payments", "environment": "prod", "host": "host-1", "level": "INFO",
                     "is_error": False, "message": f"message {offset}", "signature": "message <n>",
                     "signature_id": "sig", "topic": "logs", "kafka_partition": partition, "kafka_offset": offset,
                     "event_date": when.strftime("%Y-%m-%d"), "event_hour": when.hour})
    return pa.Table.from_pylist(rows, schema=EVENTS)


def dead_letter_rows(offsets: Iterable[int], partition: int = 0) -> pa.Table:
    """Rows of the dead_letter table at the given Kafka offsets."""
    rows = [{"topic": "logs", "kafka_partition": partition, "kafka_offset": offset, "kafka_timestamp": HOUR,
             "raw_value": b"junk", "value_size": 4, "reason": "bad_magic", "detected_at": HOUR,
             "dl_date": HOUR.strftime("%Y-%m-%d")} for offset in offsets]
    return pa.Table.from_pylist(rows, schema=DEAD_LETTER)
