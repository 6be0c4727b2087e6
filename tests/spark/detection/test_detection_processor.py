"""The Spark stateful processor, driven by PySpark's TwsTester (no cluster): state, output, timers."""

from __future__ import annotations

import pandas as pd
from detection_synthetic import T0_MS, Episode, Profile, Scenario, events, task_partials
from engine_input import ingest
from pyspark.sql.streaming.tws_tester import TwsTester

from incident_contracts.tables import INCIDENT_UPDATES
from incident_stream.detection.engine import EnvironmentDetector
from incident_stream.detection.linking import DependencyGraph
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.processor import IncidentDetectorProcessor

PARAMS = DetectionParams()
DEPS = {"orders": ["db"], "db": []}
TIERS = {"orders": 1, "db": 1}
SCENARIO = Scenario({"orders": Profile(30, 0.004, 35, 140), "db": Profile(20, 0.001, 3, 15)}, 240,
                    [Episode("db", 120, 200, error_rate=0.5), Episode("orders", 122, 200, error_rate=0.3)])


def test_processor_matches_the_engine_keeps_state_and_resolves_on_the_watermark():
    frame = events(SCENARIO, seed=5)
    tester = TwsTester(IncidentDetectorProcessor(PARAMS, DEPS, TIERS), timeMode="EventTime",
                       eventTimeExtractor=lambda row: int(row["newest_ms"]))
    outputs = []
    for lo in range(0, 240_000, 5_000):
        chunk = frame[(frame.t_ms >= T0_MS + lo) & (frame.t_ms < T0_MS + lo + 5_000)].reset_index(drop=True)
        result = tester.testInPandas("prod", task_partials(chunk, tasks=2))
        if len(result):
            outputs.append(result)
    produced = pd.concat(outputs, ignore_index=True)
    assert list(produced.columns) == INCIDENT_UPDATES.names
    assert set(produced.update_type) == {"opened", "updated"}

    engine = EnvironmentDetector("prod", PARAMS, DependencyGraph(DEPS), TIERS)
    ingest(engine, frame)
    expected = engine.advance(now_ms=0)
    assert produced["incident_id"].tolist() == [r["incident_id"] for r in expected]
    assert produced["update_type"].tolist() == [r["update_type"] for r in expected]
    assert produced["event_count"].tolist() == [r["event_count"] for r in expected]
    assert produced["opened_at"].iloc[0] == pd.Timestamp(expected[0]["opened_at"], unit="ms", tz="UTC")

    blob = tester.peekValueState("detector", "prod")[0]
    state = EnvironmentDetector.from_bytes(blob, PARAMS, DependencyGraph(DEPS), TIERS)
    assert set(state.services) == {"orders", "db"}
    assert {t.incident.service for t in state.services.values() if t.incident} == {"orders", "db"}

    # no more events: the watermark moving on (other environments' events) closes the buckets
    fired = tester.setWatermark(T0_MS + 600_000)
    assert sorted(fired.loc[fired.update_type == "resolved", "service"]) == ["db", "orders"]
    resolved = fired[fired.update_type == "resolved"]
    assert (resolved.status == "resolved").all() and resolved.resolved_at.notna().all()
    assert (resolved.resolved_at <= pd.Timestamp(T0_MS + 240_000, unit="ms", tz="UTC")).all()
