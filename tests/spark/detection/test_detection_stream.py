"""`detect` on real Spark: partial buckets from several tasks, shuffled to the stateful processor, give the
rows the detector gives on the same events in one piece."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from detection_synthetic import Episode, Profile, Scenario, events
from engine_input import ingest
from enrich_oracle import detect

from incident_contracts.catalog import default_catalog
from incident_contracts.settings import Settings
from incident_stream.detection.engine import EnvironmentDetector
from incident_stream.detection.linking import DependencyGraph
from incident_stream.detection.stream import params_from_settings

pytestmark = pytest.mark.integration

CATALOG = default_catalog()
SCENARIO = Scenario({"order-service": Profile(30, 0.004, 35, 140), "postgres-primary": Profile(20, 0.001, 3, 15)},
                    240, [Episode("postgres-primary", 120, 200, error_rate=0.5),
                          Episode("order-service", 122, 200, error_rate=0.3)])


def _events_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The detector's input as rows of the events table (the columns detect() reads)."""
    return pd.DataFrame({
        "event_time": pd.to_datetime(frame["t_ms"], unit="ms", utc=True),
        "service": frame["service"], "environment": "prod", "host": frame["host"],
        "level": np.where(frame["is_error"], "ERROR", np.where(frame["is_warn"], "WARN", "INFO")),
        "is_error": frame["is_error"], "latency_ms": frame["latency_ms"], "message": frame["message"],
        "signature": frame["signature"], "signature_id": frame["signature_id"], "tier": frame["tier"],
        "owner": frame["owner"],
    })


def test_detect_on_spark_matches_the_detector_on_the_same_events(spark: Any) -> None:
    frame = events(SCENARIO, seed=5)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    params = params_from_settings(settings)
    df = spark.createDataFrame(_events_table(frame)).repartition(3)  # three reading tasks, events mixed
    produced = detect(df, CATALOG, settings).toPandas()

    engine = EnvironmentDetector("prod", params, DependencyGraph({s.name: s.depends_on for s in CATALOG.services}),
                                 {s.name: s.tier for s in CATALOG.services})
    ingest(engine, frame)
    expected = engine.advance(now_ms=0)
    assert {r["service"] for r in expected if r["update_type"] == "opened"} == {"order-service", "postgres-primary"}
    key = ["incident_id", "update_type", "update_seq", "event_count", "error_count", "severity"]
    got = produced[key].sort_values(["incident_id", "update_seq"]).to_dict("records")
    want = sorted(({k: r[k] for k in key} for r in expected), key=lambda r: (r["incident_id"], r["update_seq"]))
    assert got == want
    origin = produced.loc[produced.service == "order-service", "origin_service"].dropna()
    assert set(origin) == {"postgres-primary"}
