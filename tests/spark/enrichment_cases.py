"""Events for checking the detector's view of events against the Spark enrichment: generated lines plus
lines the generator never writes (level synonyms, fields only in the message, odd spacing, nulls)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from incident_stream.detection.buckets import INPUT_COLUMNS
from incident_stream.kafka_source import logevent_schema

START_MS = 1_795_000_000_000
# Lines the generator never writes: level synonyms, fields only in the message, odd spacing, nulls.
ODD_RECORDS: list[dict[str, Any]] = [
    {"level": "warning", "message": "GET /orders/12?x=1 HTTP/1.1 503 in 81ms", "service": " order-service "},
    {"level": " Critical", "message": "disk /var/lib/db 97% full, free 1.2GB on 10.0.3.4:5432"},
    {"level": "err", "message": "upstream status=502 took 1.5s req-8f3a2"},
    {"level": None, "message": "POST /api/v1/login returned 201 latency: 250us"},
    {"level": "INFO", "message": None, "host": None},
    {"level": "NOTICE", "message": "x" * 400 + " 12345", "http_status": 404, "latency_ms": 3.5},
    {"level": "DEBUG", "message": "cache miss 0xdeadbeef for 3f2a9c1e-1b2c-4d5e-8f90-123456789abc",
     "service": "not-in-catalog"},
]


def odd_records() -> list[dict[str, Any]]:
    base = {"event_id": "odd", "timestamp": START_MS + 5_000, "service": "payment-service", "environment": "prod",
            "host": "payments-1", "logger": "x", "trace_id": None, "span_id": None, "http_method": None,
            "http_path": None, "http_status": None, "latency_ms": None, "error_type": None, "attributes": {}}
    return [{**base, **r, "event_id": f"odd-{i}", "timestamp": base["timestamp"] + i}
            for i, r in enumerate(ODD_RECORDS)]


def spark_row(record: dict[str, Any], offset: int) -> dict[str, Any]:
    row = {f.name: None for f in logevent_schema().fields}
    row.update({k: v for k, v in record.items() if k in row})
    row.update(topic="t", kafka_partition=0, kafka_offset=offset,
               kafka_timestamp=dt.datetime.fromtimestamp(record["timestamp"] / 1000, dt.UTC),
               timestamp=dt.datetime.fromtimestamp(record["timestamp"] / 1000, dt.UTC))
    return row


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[["environment", *INPUT_COLUMNS]].copy()
    frame["latency_ms"] = frame["latency_ms"].astype(float).round(9)
    for column in ("environment", "service", "host", "signature", "signature_id", "message", "tier", "owner"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    keys = ["t_ms", "service", "host", "message", "latency_ms"]
    return frame.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)
