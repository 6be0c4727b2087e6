"""Partial buckets computed by the reading tasks: the detector gets the same buckets as from the events."""

from __future__ import annotations

import pandas as pd
from detection_synthetic import T0_MS, Episode, Profile, Scenario, aggregate, events, task_partials
from engine_input import ingest
from hypothesis import given, settings
from hypothesis import strategies as st

from incident_stream.detection.engine import EnvironmentDetector
from incident_stream.detection.linking import DependencyGraph
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.partials import (
    decode,
    encode,
    parts_of,
)

PARAMS = DetectionParams()


def _stream() -> pd.DataFrame:
    scenario = Scenario({"a": Profile(40, 0.2, hosts=("h1", "h2", "h3")), "b": Profile(10, 0.05)}, 12)
    return events(scenario, seed=3)


def test_one_row_per_environment_service_and_bucket_with_the_newest_event_time():
    frame = _stream()
    frame["environment"] = ["prod" if i % 3 else "staging" for i in range(len(frame))]
    out = task_partials(frame)
    keys = frame.assign(bucket=frame.t_ms // 1000)[["environment", "service", "bucket"]].drop_duplicates()
    assert len(out) == len(keys)
    assert set(map(tuple, out[["environment", "service", "bucket"]].values.tolist())) == set(
        map(tuple, keys.values.tolist()))
    for env, rows in out.groupby("environment"):
        newest = int(frame.loc[frame.environment == env, "t_ms"].max())
        assert (rows.newest_ms == newest).all()
        assert (rows.event_time == pd.Timestamp(newest, unit="ms", tz="UTC")).all()
    assert int(out["agg"].map(lambda blob: decode(blob).n).sum()) == len(frame)


@settings(max_examples=20, deadline=None)
@given(tasks=st.integers(1, 4), batch_rows=st.integers(1, 400), seed=st.integers(0, 1000))
def test_partials_of_any_split_merge_to_the_buckets_of_all_events(tasks, batch_rows, seed):
    frame = _stream().sample(frac=1.0, random_state=seed).reset_index(drop=True).assign(environment="prod")
    whole = aggregate(frame, PARAMS.bucket_ms, PARAMS.slowest_kept)
    detector = EnvironmentDetector("prod", PARAMS, DependencyGraph({}))
    for task in range(tasks):
        parts, newest = parts_of(task_partials(frame.iloc[task::tasks], batch_rows=batch_rows))
        detector.ingest_parts(parts, newest)
    assert sorted(detector.pending) == sorted(whole)
    for key, agg in whole.items():
        assert detector.pending[key].finalize().to_json() == agg.finalize().to_json()
    assert detector.max_event_ms == int(frame.t_ms.max())


def test_encoding_round_trips():
    agg = aggregate(_stream(), 1000, 3)[("a", T0_MS // 1000)]
    assert decode(encode(agg)).to_json() == agg.to_json()


def test_detector_on_partials_writes_the_rows_it_writes_on_events():
    scenario = Scenario({"orders": Profile(30, 0.004, 35, 140), "db": Profile(20, 0.001, 3, 15)}, 240,
                        [Episode("db", 120, 200, error_rate=0.5), Episode("orders", 122, 200, error_rate=0.3)])
    frame = events(scenario, seed=5).assign(environment="prod")
    graph = DependencyGraph({"orders": ["db"], "db": []})
    on_events = EnvironmentDetector("prod", PARAMS, graph)
    on_partials = EnvironmentDetector("prod", PARAMS, graph)
    for lo in range(0, 240_000, 4_000):
        chunk = frame[(frame.t_ms >= T0_MS + lo) & (frame.t_ms < T0_MS + lo + 4_000)]
        ingest(on_events, chunk)
        parts, newest = parts_of(task_partials(chunk))
        on_partials.ingest_parts(parts, newest)
    expected, got = on_events.advance(now_ms=0), on_partials.advance(now_ms=0)
    assert {r["service"] for r in expected if r["update_type"] == "opened"} == {"orders", "db"}
    assert got == expected
