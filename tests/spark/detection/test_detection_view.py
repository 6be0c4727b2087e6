"""The detector's view computed on Arrow batches (view.py) against the Spark path (enrich + prepare)."""

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
from incident_stream.detection.view import VIEW_SCHEMA, DetectorView, detector_view
from incident_stream.kafka_source import logevent_schema
from incident_stream.signature import mask_messages, signature_id
from log_generator import api

CATALOG = default_catalog()


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

    batch = pa.RecordBatch.from_pylist(rows, schema=to_arrow_schema(logevent_schema(), timezone="UTC"))
    view = detector_view(batch, DetectorView.of(CATALOG, params.message_max_chars))

    assert view.schema == VIEW_SCHEMA
    assert view.num_rows == len(records) - 2 == len(expected)  # the rows without service or environment dropped
    got = view.to_pandas()
    assert got["is_error"].sum() > 0 and got["latency_ms"].notna().sum() > 100
    assert set(got["latency_ms"].dropna().round(6)) >= {81.0, 1500.0, 0.25}  # parsed from the odd messages
    assert set(got["tier"].dropna()) and got.loc[got.service == "not-in-catalog", "tier"].isna().all()
    pd.testing.assert_frame_equal(canonical(got), canonical(expected), check_dtype=False)


def test_an_empty_or_all_filtered_batch_gives_an_empty_view() -> None:
    schema = to_arrow_schema(logevent_schema(), timezone="UTC")
    row = {f.name: None for f in logevent_schema().fields}
    view = detector_view(pa.RecordBatch.from_pylist([row], schema=schema), DetectorView())
    assert view.num_rows == 0 and view.schema == VIEW_SCHEMA
