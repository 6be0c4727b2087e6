"""Detection on the log generator's scenarios, and the offline path against the Spark enrichment."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from enrich_oracle import enrich, prepare
from enrichment_cases import canonical, odd_records, spark_row

from incident_contracts.catalog import default_catalog
from incident_stream.dead_letter import events_of
from incident_stream.detection import scoring
from incident_stream.detection.offline import Preparer, replay
from incident_stream.detection.params import DetectionParams
from incident_stream.kafka_source import logevent_schema
from log_generator import api
from log_generator.scenarios import REAL_SCENARIOS

START_MS = 1_795_000_000_000
CATALOG = default_catalog()


@pytest.mark.spark
def test_offline_preparation_gives_what_the_spark_enrichment_gives(spark: Any) -> None:
    events, _truth = api.generate("bad_deploy", rate=150, duration_s=20, seed=5, start_ms=START_MS)
    records = list(events) + odd_records()
    assert any(r["http_status"] and r["http_status"] >= 500 for r in records)  # the incident's errors are there
    df = spark.createDataFrame([spark_row(r, i) for i, r in enumerate(records)], logevent_schema())
    params = DetectionParams()
    from_spark = prepare(enrich(events_of(df), CATALOG), params).drop("event_time").toPandas()
    offline = Preparer(CATALOG, params).frame(records)
    assert len(offline) == len(records) == len(from_spark)
    assert offline["is_error"].sum() > 20 and offline["is_warn"].sum() > 0
    pd.testing.assert_frame_equal(canonical(offline), canonical(from_spark), check_dtype=False)


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


@pytest.mark.parametrize("scenario", ["bad_deploy", "db_pool_exhaustion", "disk_full", "tls_expired"])
def test_a_fresh_job_pages_a_gross_failure_within_its_first_minute(scenario: str) -> None:
    """A 60-second run from an empty detector (no service has a baseline): the injected failure, which
    starts 12 s in, is paged on the absolute floors before the run ends, and nothing else is."""
    events, truth = api.generate(scenario, rate=100, duration_s=60, seed=3, start_ms=START_MS)
    rows = replay(Preparer(CATALOG).frame(events), CATALOG)
    truths = scoring.truths_from_manifest(truth.to_dict())
    detected = scoring.detected_from_updates(rows)
    result = scoring.score(detected, truths)
    assert result.found == 1 and result.true_positives == result.detected, [(d.service, d.opened_at_ms)
                                                                            for d in detected]
    assert min(d.opened_at_ms for d in detected) - START_MS <= 60_000
    first = min((r for r in rows if r["update_type"] == "opened"), key=lambda r: r["opened_at"])
    assert any("no healthy baseline yet" in reason for reason in first["severity_reasons"]), first
