"""Detection on the log generator's scenarios, and the offline path against the Spark enrichment."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest

from incident_contracts.catalog import default_catalog
from incident_stream.dead_letter import events_of
from incident_stream.detection import scoring
from incident_stream.detection.buckets import INPUT_COLUMNS
from incident_stream.detection.offline import Preparer, replay
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.stream import prepare
from incident_stream.enrich import enrich
from incident_stream.kafka_source import logevent_schema
from log_generator import api
from log_generator.scenarios import REAL_SCENARIOS

START_MS = 1_795_000_000_000
CATALOG = default_catalog()

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


def _odd_records() -> list[dict[str, Any]]:
    base = {"event_id": "odd", "timestamp": START_MS + 5_000, "service": "payment-service", "environment": "prod",
            "host": "payments-1", "logger": "x", "trace_id": None, "span_id": None, "http_method": None,
            "http_path": None, "http_status": None, "latency_ms": None, "error_type": None, "attributes": {}}
    return [{**base, **r, "event_id": f"odd-{i}", "timestamp": base["timestamp"] + i}
            for i, r in enumerate(ODD_RECORDS)]


def _spark_row(record: dict[str, Any], offset: int) -> dict[str, Any]:
    row = {f.name: None for f in logevent_schema().fields}
    row.update({k: v for k, v in record.items() if k in row})
    row.update(topic="t", kafka_partition=0, kafka_offset=offset,
               kafka_timestamp=dt.datetime.fromtimestamp(record["timestamp"] / 1000, dt.UTC),
               timestamp=dt.datetime.fromtimestamp(record["timestamp"] / 1000, dt.UTC))
    return row


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[["environment", *INPUT_COLUMNS]].copy()
    frame["latency_ms"] = frame["latency_ms"].astype(float).round(9)
    for column in ("environment", "service", "host", "signature", "signature_id", "message", "tier", "owner"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    keys = ["t_ms", "service", "host", "message", "latency_ms"]
    return frame.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)


def test_offline_preparation_gives_what_the_spark_enrichment_gives(spark: Any) -> None:
    events, _truth = api.generate("bad_deploy", rate=150, duration_s=20, seed=5, start_ms=START_MS)
    records = list(events) + _odd_records()
    assert any(r["http_status"] and r["http_status"] >= 500 for r in records)  # the incident's errors are there
    df = spark.createDataFrame([_spark_row(r, i) for i, r in enumerate(records)], logevent_schema())
    params = DetectionParams()
    from_spark = prepare(enrich(events_of(df), CATALOG), params).drop("event_time").toPandas()
    offline = Preparer(CATALOG, params).frame(records)
    assert len(offline) == len(records) == len(from_spark)
    assert offline["is_error"].sum() > 20 and offline["is_warn"].sum() > 0
    pd.testing.assert_frame_equal(_canonical(offline), _canonical(from_spark), check_dtype=False)


def _run(scenario: str) -> tuple[list[scoring.Truth], list[scoring.Detected], list[dict]]:
    events, truth = api.generate(scenario, rate=60, duration_s=330, seed=3, start_ms=START_MS)
    rows = replay(Preparer(CATALOG).frame(events), CATALOG)
    return scoring.truths_from_manifest(truth.to_dict()), scoring.detected_from_updates(rows), rows


@pytest.mark.integration
@pytest.mark.parametrize("scenario", REAL_SCENARIOS)
def test_each_scenario_opens_an_incident_on_its_origin_linked_to_it(scenario: str) -> None:
    truths, detected, rows = _run(scenario)
    (truth,) = truths
    result = scoring.score(detected, truths)
    assert result.found == 1 and result.origin_found == 1, (scenario, [(d.service, d.opened_at_ms) for d in detected])
    assert result.true_positives == result.detected  # nothing outside the incident's services and span
    origin = [d for d in detected if d.service == truth.origin_service]
    assert truth.start_ms <= min(d.opened_at_ms for d in origin) <= truth.end_ms
    assert all(d.origin_service in truth.services for d in detected)  # linked inside the incident
    if len(detected) > 1:  # the origin's own incident is the origin of its group
        assert {d.origin_service for d in origin} == {truth.origin_service}
    opened = [r for r in rows if r["update_type"] == "opened"]
    assert {r["incident_id"] for r in opened} == {d.incident_id for d in detected}


@pytest.mark.integration
@pytest.mark.parametrize("scenario", ["flapping", "none"])
def test_the_flapping_service_and_normal_traffic_open_nothing(scenario: str) -> None:
    truths, detected, rows = _run(scenario)
    assert [t.expect_incident for t in truths] == ([False] if scenario == "flapping" else [])
    assert rows == [] and detected == []
