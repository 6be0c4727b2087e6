"""Parsing and enrichment as pure DataFrame functions on small in-memory frames."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from enrich_oracle import enrich

from incident_contracts.catalog import Catalog, ServiceSpec
from incident_contracts.tables import DEAD_LETTER, EVENTS
from incident_stream.dead_letter import dead_letters, events_of
from incident_stream.kafka_source import logevent_schema
from incident_stream.signature import mask_message, signature_id

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=dt.UTC)
CATALOG = Catalog(services=[
    ServiceSpec(name="payments", tier=1, owner="team-pay", hosts=["pay-1"]),
    ServiceSpec(name="search", tier=3, owner="team-find", hosts=["s-1"]),
])


def decoded(**fields: Any) -> dict[str, Any]:
    row = {name: None for name in logevent_schema().names}
    row.update(topic="logs.events", kafka_partition=1, kafka_offset=42, kafka_timestamp=T0, read_time=T0,
               event_id="e-1",
               timestamp=T0, service="payments", environment="prod", host="pay-1", level="INFO",
               message="ok", attributes={"region": "eu"})
    row.update(fields)
    return row


def run(spark: Any, *rows: dict[str, Any]) -> list[dict[str, Any]]:
    frame = spark.createDataFrame(list(rows), logevent_schema())
    return [r.asDict() for r in enrich(events_of(frame), CATALOG).orderBy("kafka_offset").collect()]


def test_output_has_exactly_the_events_columns(spark: Any) -> None:
    frame = spark.createDataFrame([decoded()], logevent_schema())
    assert enrich(frame, CATALOG).columns == EVENTS.names


def test_event_fields_tier_owner_partitions_and_signature(spark: Any) -> None:
    [row] = run(spark, decoded(message="Timeout after 3000ms calling 10.0.0.1:5432", level="ERROR",
                               error_type="TimeoutError"))
    assert dt.datetime.fromtimestamp(row["event_time"].timestamp(), dt.UTC) == T0  # naive local time back
    assert (row["service"], row["tier"], row["owner"]) == ("payments", "1", "team-pay")
    assert (row["event_date"], row["event_hour"]) == ("2026-03-14", 15)
    assert row["is_error"] is True and row["level"] == "ERROR"
    assert row["signature"] == mask_message(row["message"]) == "Timeout after <num>ms calling <ip>"
    assert row["signature_id"] == signature_id(row["signature"])
    assert (row["topic"], row["kafka_partition"], row["kafka_offset"]) == ("logs.events", 1, 42)
    assert row["attributes"] == {"region": "eu"}
    assert row["ingest_time"] is not None


LEVELS = {"warning": "WARN", "Warn": "WARN", " error ": "ERROR", "CRITICAL": "FATAL", "severe": "ERROR",
          "notice": "INFO", "debug": "DEBUG", "finest": "TRACE", "FATAL": "FATAL", "gibberish": "INFO"}


def test_levels_are_normalised(spark: Any) -> None:
    rows = run(spark, *[decoded(kafka_offset=i, level=level) for i, level in enumerate(LEVELS)])
    assert [r["level"] for r in rows] == list(LEVELS.values())
    assert [r["is_error"] for r in rows] == [v in ("ERROR", "FATAL") for v in LEVELS.values()]


def test_http_fields_parsed_from_the_message_when_missing(spark: Any) -> None:
    rows = run(spark,
               decoded(kafka_offset=1, message='10.1.2.3 - "POST /api/v1/orders?id=7 HTTP/1.1" 502 took 1.5s'),
               decoded(kafka_offset=2, message="GET /health returned 200 in 12.5ms"),
               decoded(kafka_offset=3, message="upstream failed with status=504 latency=250 us"),
               decoded(kafka_offset=4, message="GET /x 200", http_method="put", http_path="/given?q=1",
                       http_status=201, latency_ms=7.0),
               decoded(kafka_offset=5, message="nothing http here, 42 apples"))
    parsed = [(r["http_method"], r["http_path"], r["http_status"], r["latency_ms"], r["is_error"]) for r in rows]
    assert parsed == [
        ("POST", "/api/v1/orders", 502, 1500.0, True),
        ("GET", "/health", 200, 12.5, False),
        (None, None, 504, 0.25, True),
        ("PUT", "/given", 201, 7.0, False),
        (None, None, None, None, False),
    ]


def test_unknown_service_has_no_tier_or_owner(spark: Any) -> None:
    [row] = run(spark, decoded(service=" ghost "))
    assert (row["service"], row["tier"], row["owner"]) == ("ghost", None, None)


def test_rejected_rows_become_dead_letters_with_the_contract_columns(spark: Any) -> None:
    rows = [decoded(kafka_offset=1),
            {**{n: None for n in logevent_schema().names}, "topic": "logs.events", "kafka_partition": 0,
             "kafka_offset": 9, "kafka_timestamp": T0, "reject_reason": "bad_magic", "reject_detail": "first bytes",
             "key": b"k", "raw_value": b"garbage", "value_size": 7}]
    frame = spark.createDataFrame(rows, logevent_schema())
    assert events_of(frame).count() == 1
    letters = dead_letters(frame)
    assert letters.columns == DEAD_LETTER.names
    [letter] = [r.asDict() for r in letters.collect()]
    assert (letter["reason"], letter["raw_value"], letter["value_size"], letter["dl_date"]) == (
        "bad_magic", bytearray(b"garbage"), 7, "2026-03-14")


def test_dead_letter_batch_gives_the_rows_of_dead_letters_on_spark(spark: Any) -> None:
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    from incident_stream.dead_letter import dead_letter_batch

    def reject(offset: int, stamp: dt.datetime | None, reason: str) -> dict[str, Any]:
        return {**{n: None for n in logevent_schema().names}, "topic": "logs.events", "kafka_partition": 1,
                "kafka_offset": offset, "kafka_timestamp": stamp, "reject_reason": reason,
                "reject_detail": f"detail {offset}", "key": b"k%d" % offset, "raw_value": b"raw", "value_size": 3}

    rows = [reject(1, T0, "bad_magic"), reject(2, None, "empty"),
            reject(3, dt.datetime(2026, 3, 14, 23, 59, 59, 999000, tzinfo=dt.UTC), "too_large")]
    expected = [r.asDict() for r in dead_letters(spark.createDataFrame(rows, logevent_schema())).collect()]
    detected = dt.datetime.now(dt.UTC)
    got = dead_letter_batch(pa.RecordBatch.from_pylist(rows, schema=to_arrow_schema(logevent_schema(), timezone="UTC")),
                            detected_us=int(detected.timestamp() * 1_000_000))
    assert got.schema.names == DEAD_LETTER.names
    got_rows = got.to_pylist()
    for row in (*expected, *got_rows):
        row.pop("detected_at")  # the time of writing: Spark's batch time vs the task's
        row["key"], row["raw_value"] = bytes(row["key"]), bytes(row["raw_value"])
        if row["kafka_timestamp"] is not None:  # Spark collects naive UTC datetimes
            row["kafka_timestamp"] = row["kafka_timestamp"].replace(tzinfo=None)
    no_timestamp = detected.strftime("%Y-%m-%d")  # the date of detection
    assert [r["dl_date"] for r in got_rows] == ["2026-03-14", no_timestamp, "2026-03-14"]
    assert got_rows == expected
