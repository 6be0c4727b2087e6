"""The detector's view of enriched events (view.py: the job source's enrich_batch, then events_view) against
the Spark path (enrich + prepare)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from enrich_oracle import enrich, prepare
from enrichment_cases import START_MS, canonical, odd_records, spark_row
from pyspark.sql.pandas.types import to_arrow_schema

from incident_contracts.catalog import default_catalog
from incident_stream.dead_letter import events_of
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.partials import PartialBuckets
from incident_stream.detection.view import VIEW_SCHEMA, events_view
from incident_stream.enrich_arrow import ServiceLookup, enrich_batch
from incident_stream.kafka_source import logevent_schema
from incident_stream.signature import mask_messages, signature_id
from log_generator import api

CATALOG = default_catalog()
LOGEVENT_ARROW = to_arrow_schema(logevent_schema(), timezone="UTC")


def _rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Source rows with the signature set as the Kafka source sets it."""
    rows = [spark_row(r, i) for i, r in enumerate(records)]
    for row, signature in zip(rows, mask_messages([r["message"] for r in rows]), strict=True):
        row.update(signature=signature, signature_id=signature_id(signature))
    return rows


@pytest.mark.spark
def test_the_arrow_view_gives_what_enrich_and_prepare_give_in_spark(spark: Any) -> None:
    events, _truth = api.generate("slow_dependency", rate=150, duration_s=20, seed=5, start_ms=START_MS)
    records = list(events) + odd_records()
    records += [{**records[0], "event_id": "no-service", "service": None},
                {**records[0], "event_id": "no-environment", "environment": None}]
    rows = _rows(records)
    params = DetectionParams()
    from_spark = prepare(enrich(events_of(spark.createDataFrame(rows, logevent_schema())), CATALOG), params)
    expected = from_spark.drop("event_time").toPandas()
    assert len(expected) == len(records) - 2  # prepare leaves out the rows without service or environment

    # The job's tasks never enrich those two: decoding and the source's checks reject them (dead_letter).
    accepted = [r for r in rows if r["service"] is not None and r["environment"] is not None]
    batch = pa.RecordBatch.from_pylist(accepted, schema=LOGEVENT_ARROW)
    view = events_view(enrich_batch(batch, ServiceLookup.of(CATALOG)), params.message_max_chars)

    assert view.schema == VIEW_SCHEMA
    assert view.num_rows == len(expected)
    got = view.to_pandas()
    assert not got.pop("ahead").any()  # no arrival given: every time kept
    assert got["is_error"].sum() > 0 and got["is_warn"].sum() > 0 and got["latency_ms"].notna().sum() > 100
    assert set(got["latency_ms"].dropna().round(6)) >= {81.0, 1500.0, 0.25}  # parsed from the odd messages
    assert got["message"].str.len().max() == params.message_max_chars  # the 405-character message cut
    assert (got["host"] == "unknown").sum() == 1  # the odd record without a host
    assert " order-service " not in set(got["service"]) and "order-service" in set(got["service"])
    assert set(got["tier"].dropna()) and got.loc[got.service == "not-in-catalog", "tier"].isna().all()
    pd.testing.assert_frame_equal(canonical(got), canonical(expected), check_dtype=False)


def test_an_empty_batch_gives_an_empty_view_and_no_partial_buckets() -> None:
    empty = pa.RecordBatch.from_pylist([], schema=LOGEVENT_ARROW)
    view = events_view(enrich_batch(empty, ServiceLookup.of(CATALOG)), DetectionParams().message_max_chars)
    assert view.num_rows == 0 and view.schema == VIEW_SCHEMA
    buckets = PartialBuckets(DetectionParams().bucket_ms, DetectionParams().slowest_kept)
    buckets.add(view)
    assert buckets.batch() is None


def test_times_after_the_records_arrival_are_taken_at_it_and_flagged() -> None:
    """The view as the job's tasks take it (logs_source.arrival_of: the Kafka timestamp, else the read time):
    an event dated more than the tolerance after its record's arrival (a host clock 12 min ahead) is taken at
    the arrival plus the tolerance and flagged; the others keep their time."""
    import datetime as dt

    from incident_stream.logs_source import arrival_of

    records, _truth = api.generate("mixed", rate=10, count=40, seed=3, start_ms=START_MS)
    rows = _rows(list(records))
    arrival = [r["kafka_timestamp"] for r in rows]
    for i, row in enumerate(rows):
        row["read_time"] = row["kafka_timestamp"]
        if i % 4 == 0:  # dated 12 min after its arrival
            row["timestamp"] = row["timestamp"] + dt.timedelta(minutes=12)
        if i % 3 == 0:  # no Kafka timestamp: the read time is the arrival
            row["kafka_timestamp"] = None
    batch = pa.RecordBatch.from_pylist(rows, schema=LOGEVENT_ARROW)
    params = DetectionParams()
    view = events_view(enrich_batch(batch, ServiceLookup.of(CATALOG)), params.message_max_chars,
                       arrival_of(batch), params.arrival_tolerance_ms).to_pandas()
    tolerance = params.arrival_tolerance_ms
    for i, (t_ms, ahead) in enumerate(zip(view["t_ms"], view["ahead"], strict=True)):
        arrived = int(arrival[i].timestamp() * 1000)
        if i % 4 == 0:
            assert ahead and t_ms == arrived + tolerance
        else:
            assert not ahead and t_ms == arrived
