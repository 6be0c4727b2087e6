"""Events later than the allowed lateness: a host whose clock is behind, a shipper that sends in batches.

They are counted at their arrival, in the oldest bucket still open (up to `late_horizon_s` behind), so
a failure they carry still pages; older ones are left out; both are counted per service.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from detection_synthetic import T0_MS, Episode, Profile, Scenario, events, task_partials
from engine_input import ingest

from incident_contracts.catalog import default_catalog
from incident_contracts.tables import INCIDENT_UPDATES
from incident_stream.detection.engine import (
    CLOCK_AHEAD,
    ENVIRONMENT_SILENT,
    LATE_COUNTED,
    LATE_EXCLUDED,
    EnvironmentDetector,
)
from incident_stream.detection.linking import DependencyGraph
from incident_stream.detection.offline import OfflineDetector, replay
from incident_stream.detection.output import COUNTER_UPDATE
from incident_stream.detection.params import DetectionParams

CATALOG = default_catalog()
HOSTS = ("s-1", "s-2", "s-3", "s-4")
SKEWED, SKEW_MS = "s-4", 40_000
FAIL_S, FAIL_END_S = 300, 410  # true time of the skewed host's failure (50% errors)


def skewed_host_run() -> pd.DataFrame:
    """`search` on four hosts; s-4's clock is 40 s behind and it fails at 50% errors for almost two minutes.
    `arrival` is when each event reached the pipeline (its true time plus 50 ms)."""
    scenario = Scenario({"search": Profile(120, 0.005, 20, 80, hosts=HOSTS)}, 600,
                        [Episode("search", FAIL_S, FAIL_END_S, error_rate=0.5, hosts=(SKEWED,))])
    frame = events(scenario, seed=4)
    frame["arrival"] = frame["t_ms"] + 50
    frame.loc[frame["host"] == SKEWED, "t_ms"] -= SKEW_MS
    return frame


def opened(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["update_type"] == "opened"]


def test_a_host_whose_clock_is_40_s_behind_still_pages_through_the_offline_path():
    frame = skewed_host_run()
    failing = (frame["host"] == SKEWED) & frame["is_error"]
    assert failing.sum() > 1000  # the failure is there, all of it timed 40 s in the past
    detector = OfflineDetector(CATALOG)
    rows = replay(frame, CATALOG, arrival="arrival", detector=detector)
    (inc,) = opened(rows)
    assert inc["service"] == "search" and SKEWED in inc["affected_hosts"]
    # bucketed at arrival (less the allowed lateness): opened within seconds of the true start
    assert FAIL_S - 5 <= (inc["opened_at"] - T0_MS) / 1000 <= FAIL_S + 10
    env = detector.detectors["prod"]
    counted_late, left_out = env.late_counts["search"]
    assert counted_late >= (frame["host"] == SKEWED).sum() * 0.9 and left_out == 0
    assert env.late_events == 0


def test_without_the_late_horizon_the_skewed_host_is_invisible():
    """What the detector did before: every event of the skewed host is late, dropped, and nothing opens."""
    frame = skewed_host_run()
    detector = OfflineDetector(CATALOG, DetectionParams().with_overrides(late_horizon_s=0))
    rows = replay(frame, CATALOG, arrival="arrival", detector=detector)
    assert opened(rows) == []
    counted_late, left_out = detector.detectors["prod"].late_counts["search"]
    assert counted_late == 0 and left_out >= (frame["host"] == SKEWED).sum() * 0.9


def test_a_shipper_delivering_minutes_late_in_batches_still_pages():
    """db's shipper buffers two minutes of lines and sends them at once; db fails 70% for 90 s.
    (A delivery after the failure ended can open a second incident: the detector sees the failure's
    tail only when it arrives.)"""
    scenario = Scenario({"db": Profile(30, 0.002, 3, 15, hosts=("pg-1",)),
                         "api": Profile(60, 0.004, 20, 80)}, 900,
                        [Episode("db", 400, 490, error_rate=0.7)])
    frame = events(scenario, seed=6)
    frame["arrival"] = frame["t_ms"] + 50
    db = frame["service"] == "db"
    frame.loc[db, "arrival"] = ((frame.loc[db, "t_ms"] - T0_MS) // 120_000 + 1) * 120_000 + T0_MS
    detector = OfflineDetector(CATALOG)
    rows = replay(frame, CATALOG, arrival="arrival", detector=detector)
    db_opened = [r for r in opened(rows) if r["service"] == "db"]
    # paged at the first delivery after the onset, on its errors; the two-minute gaps between deliveries
    # are not taken for a silence (a service with late deliveries is not judged for volume)
    assert db_opened and all(r["trigger"] == "error_rate" for r in db_opened)
    assert 400 <= (db_opened[0]["opened_at"] - T0_MS) / 1000 <= 480
    assert db_opened[0]["error_count"] > 1000
    assert detector.detectors["prod"].late_counts["db"][0] > 0


def test_late_counts_survive_the_state_round_trip():
    params = DetectionParams()
    frame = events(Scenario({"db": Profile(20)}, 60), seed=1).drop(columns="environment")
    det = EnvironmentDetector("prod", params, DependencyGraph({}))
    ingest(det, frame[frame.t_ms >= T0_MS + 30_000])
    det.advance(now_ms=0)
    early = frame[frame.t_ms < T0_MS + 10_000]
    ingest(det, early)
    before = {k: list(v) for k, v in det.late_counts.items()}
    assert before == {"db": [len(early), 0]}
    again = EnvironmentDetector.from_bytes(det.to_bytes(), params, DependencyGraph({}))
    assert again.late_counts == before
    # counted in the oldest bucket still open: nothing of them is lost
    assert sum(a.n for (s, b), a in again.pending.items() if s == "db") >= len(early)
    assert np.all([b >= again.next_bucket for _, b in again.pending])


def test_late_and_left_out_events_and_environment_silences_are_counted_per_service_and_drained_once():
    params = DetectionParams().with_overrides(late_horizon_s=30)
    frame = events(Scenario({"db": Profile(20), "api": Profile(10)}, 120), seed=2).drop(columns="environment")
    det = EnvironmentDetector("prod", params, DependencyGraph({}))
    in_window = (frame.t_ms >= T0_MS + 95_000) & (frame.t_ms < T0_MS + 105_000)
    ingest(det, frame[(frame.t_ms >= T0_MS + 60_000) & ~in_window])
    det.advance(now_ms=0)  # the clock is now at 118 s
    assert det.drain_counters() == []
    within = frame[in_window]  # 13 to 23 s late: counted at arrival
    beyond = frame[frame.t_ms < T0_MS + 10_000]  # over 100 s late: beyond the 30 s horizon
    ingest(det, pd.concat([within, beyond]))
    blob = det.to_bytes()  # undrained counts are state: a replayed micro-batch reports them again
    expected = sorted([(c, s, int(n)) for c, part in ((LATE_COUNTED, within), (LATE_EXCLUDED, beyond))
                       for s, n in part.groupby("service").size().items()])
    assert det.drain_counters() == expected
    assert det.drain_counters() == []
    again = EnvironmentDetector.from_bytes(blob, params, DependencyGraph({}))
    assert again.drain_counters() == expected


def test_counter_rows_become_metrics_rows_per_environment_and_service():
    from datetime import UTC, datetime

    import pyarrow as pa

    from incident_contracts.tables import METRICS
    from incident_stream.detection.output import COUNTER_UPDATE, counter_metric_rows, counter_rows

    rows = counter_rows("prod", [(LATE_EXCLUDED, "search", 1655), (ENVIRONMENT_SILENT, "", 3)], 1_790_000_000_000)
    assert {r["update_type"] for r in rows} == {COUNTER_UPDATE}
    for r in rows:
        r["update_time"] = datetime.fromtimestamp(r["update_time"] / 1000, UTC)
    metrics = counter_metric_rows(rows, batch_id=7, run_id="run-1")
    assert [(m["query_name"], m["query_id"], m["num_input_rows"], m["batch_id"]) for m in metrics] == [
        ("counter:late_excluded", "prod/search", 1655, 7), ("counter:environment_silent", "prod", 3, 7)]
    table = pa.Table.from_pylist(metrics, schema=METRICS)  # fits the metrics contract as it is
    assert table.num_rows == 2


def test_a_whole_environment_falling_silent_pages_nothing_and_is_counted():
    scenario = Scenario({"db": Profile(30), "api": Profile(40)}, 400,
                        [Episode("db", 250, 320, rate_factor=0.02), Episode("api", 250, 320, rate_factor=0.02)])
    frame = events(scenario, seed=5)
    detector = OfflineDetector(CATALOG)
    rows = replay(frame, CATALOG, detector=detector)
    assert opened(rows) == []
    counted = detector.detectors["prod"].drain_counters()
    silent = [n for c, s, n in counted if c == ENVIRONMENT_SILENT and s == ""]
    assert silent and silent[0] >= 30  # most of the 70 s silence, bucket by bucket


def _through_the_processor(frame: pd.DataFrame, params: DetectionParams,
                           spark_drops_late_rows: bool = False) -> pd.DataFrame:
    """The Spark path without a cluster: 2-second micro-batches cut on arrival, each service read by its own
    task (records are keyed by service) through the detector's view (its times no later than their arrival),
    Spark's watermark (newest event time of the earlier batches less the delay stream.py sets) given to
    TwsTester. The job leaves Spark no column to drop late rows on (stream.py; the Spark test below checks
    it); `spark_drops_late_rows`: as the job did before, TwsTester drops the rows behind the watermark."""
    from pyspark.sql.streaming.tws_tester import TwsTester

    from incident_stream.detection.processor import IncidentDetectorProcessor

    tester = TwsTester(IncidentDetectorProcessor(params, {}, {}, counters=True), timeMode="EventTime",
                       eventTimeExtractor=(lambda row: int(row["newest_ms"])) if spark_drops_late_rows
                       else (lambda row: 2**62))
    outputs, newest = [], None
    arrival = frame["arrival"].to_numpy()
    for lo in range(int(arrival.min()), int(arrival.max()) + 1, 2_000):
        batch = frame[(arrival >= lo) & (arrival < lo + 2_000)]
        if newest is not None and newest - params.watermark_delay_ms > 0:
            outputs.append(tester.setWatermark(newest - params.watermark_delay_ms))
        if batch.empty:
            continue
        parts = pd.concat([task_partials(part.drop(columns="arrival"), arrival=part["arrival"])
                           for _, part in batch.groupby("service")], ignore_index=True)
        outputs.append(tester.testInPandas("prod", parts))
        newest = max(newest or 0, int(parts["newest_ms"].max()))
    outputs = [o for o in outputs if len(o)]
    return pd.concat(outputs, ignore_index=True) if outputs else pd.DataFrame(columns=INCIDENT_UPDATES.names)


def _db_clock_behind() -> pd.DataFrame:
    """db runs on one host whose clock is 40 s behind; it fails at 70% for 90 s. Its task reads only db, so
    the partial rows of that task carry a newest event time 40 s behind everyone else's."""
    scenario = Scenario({"db": Profile(30, 0.002, 3, 15, hosts=("pg-1",)), "api": Profile(60, 0.004, 20, 80)},
                        500, [Episode("db", 300, 390, error_rate=0.7)])
    frame = events(scenario, seed=6)
    frame["arrival"] = frame["t_ms"] + 50
    frame.loc[frame["service"] == "db", "t_ms"] -= SKEW_MS
    return frame


def test_late_rows_pass_sparks_watermark_and_page_through_the_processor():
    frame = _db_clock_behind()
    out = _through_the_processor(frame, DetectionParams())
    db = out[(out.service == "db") & (out.update_type == "opened")]
    assert len(db) == 1 and 295 <= (db.opened_at.iloc[0].value // 1_000_000 - T0_MS) / 1000 <= 310
    counters = out[out.update_type == COUNTER_UPDATE]
    late = counters.loc[(counters.service == "db") & (counters.trigger == LATE_COUNTED), "event_count"].sum()
    assert late >= 0.9 * (frame.service == "db").sum()


def test_with_the_watermark_at_the_allowed_lateness_spark_drops_the_late_rows_unseen():
    """What the job did before: Spark's watermark, 2 s behind the newest event, dropped every row of db's
    task before the detector saw it: no incident, and nothing counted."""
    out = _through_the_processor(_db_clock_behind(), DetectionParams().with_overrides(late_horizon_s=0),
                                 spark_drops_late_rows=True)
    assert out[(out.service == "db") & (out.update_type == "opened")].empty
    assert not (out.service == "db").any()


@pytest.mark.integration
def test_a_batch_of_counter_rows_only_crosses_sparks_arrow_conversion(spark):
    """A micro-batch whose only output is counters (late events after a restart, say) leaves every list and
    text column empty; Spark must still convert the frame (it failed with "'float' object is not iterable"
    when pandas filled those columns with NaN)."""
    from incident_stream.detection.output import counter_rows, incident_updates_schema, rows_to_frame

    frame = rows_to_frame(counter_rows("prod", [(LATE_COUNTED, "db", 12), (LATE_COUNTED, "", 3)], 1_796_000_000_000))
    spark.conf.set("spark.sql.execution.arrow.pyspark.fallback.enabled", "false")
    rows = spark.createDataFrame(frame, schema=incident_updates_schema()).collect()
    assert [(r.service, r.event_count, r.severity_reasons, r.affected_hosts) for r in rows] == [
        ("db", 12, None, None), ("", 3, None, None)]


# --- events beyond the late horizon, read by a task of their own, on Spark ---------------------------------------

def _api_ahead_then_db_beyond_the_horizon() -> tuple[pd.DataFrame, pd.DataFrame]:
    """api's events, then (in a later micro-batch, read by their own task) db's events 800 s behind them."""
    frame = events(Scenario({"api": Profile(20), "db": Profile(20)}, 30), seed=1)
    api = frame[frame.service == "api"].copy()
    api["t_ms"] += 800_000
    return api, frame[frame.service == "db"].copy()


def _counters(rows) -> dict[tuple[str, str], int]:
    frame = pd.DataFrame(rows)
    counted = frame[frame.update_type == COUNTER_UPDATE]
    return {(c, s): int(n) for (c, s), n in counted.groupby(["trigger", "service"])["event_count"].sum().items()}


def test_events_beyond_the_horizon_in_a_task_of_their_own_are_counted_offline():
    api, db = _api_ahead_then_db_beyond_the_horizon()
    frame = pd.concat([api.assign(arrival=api.t_ms), db.assign(arrival=api.t_ms.max() + 1_000)])
    detector = OfflineDetector(CATALOG)
    replay(frame, CATALOG, arrival="arrival", detector=detector)
    assert detector.detectors["prod"].drain_counters() == [(LATE_EXCLUDED, "db", len(db))]


@pytest.mark.integration
def test_events_beyond_the_horizon_in_a_task_of_their_own_are_counted_on_spark_as_offline(spark, tmp_path):
    """The job's plan (stream.detect_partials) on a real stream of partial buckets: the db task's rows, all of
    them beyond the late horizon, reach the detector, which counts every event as left out (Spark used to drop
    them behind its watermark, uncounted)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from incident_stream.detection.partials import PARTIALS_ARROW_SCHEMA, PARTIALS_SCHEMA
    from incident_stream.detection.stream import detect_partials

    api, db = _api_ahead_then_db_beyond_the_horizon()
    source = tmp_path / "partials"
    source.mkdir()
    stream = spark.readStream.schema(PARTIALS_SCHEMA).option("maxFilesPerTrigger", 1).parquet(str(source))
    rows: list[dict] = []
    query = (detect_partials(stream, CATALOG, DetectionParams(), counters=True).writeStream
             .option("checkpointLocation", str(tmp_path / "checkpoint"))
             .foreachBatch(lambda batch, _: rows.extend(batch.toPandas().to_dict("records"))).start())
    try:
        for i, part in enumerate((api, db)):
            table = pa.Table.from_pandas(task_partials(part), schema=PARTIALS_ARROW_SCHEMA, preserve_index=False)
            pq.write_table(table, source / f"{i}.parquet")
            query.processAllAvailable()
    finally:
        query.stop()
    assert _counters(rows) == {(LATE_EXCLUDED, "db"): len(db)}


# --- a host clock ahead of the pipeline ------------------------------------------------------------------------

AHEAD_MS = 720_000  # 12 minutes: more than the late horizon, less than STREAM_MAX_FUTURE_SECONDS


def _host_clock_ahead() -> pd.DataFrame:
    """search on four hosts, s-4's clock 12 min ahead, s-4 failing at 50% errors (300-410 s); db, on an honest
    clock, failing at 70% later (500-590 s). `arrival` is each event's true time plus 50 ms."""
    scenario = Scenario({"search": Profile(120, 0.005, 20, 80, hosts=HOSTS),
                         "db": Profile(30, 0.002, 3, 15, hosts=("pg-1",))}, 700,
                        [Episode("search", FAIL_S, FAIL_END_S, error_rate=0.5, hosts=(SKEWED,)),
                         Episode("db", 500, 590, error_rate=0.7)])
    frame = events(scenario, seed=7)
    frame["arrival"] = frame["t_ms"] + 50
    frame.loc[frame["host"] == SKEWED, "t_ms"] += AHEAD_MS
    return frame


def _assert_both_page_at_their_true_onset(opened_rows: list[dict]) -> None:
    at = {r["service"]: (r["opened_at"] - T0_MS) / 1000 for r in opened_rows}
    assert set(at) == {"search", "db"}
    assert FAIL_S - 5 <= at["search"] <= FAIL_S + 10 and 495 <= at["db"] <= 510


def test_a_host_clock_12_minutes_ahead_is_taken_at_arrival_offline():
    """An event cannot be logged after it reached the pipeline: s-4's times are taken as its arrival (plus the
    tolerance), each such event counted per service; its failure pages at the true onset and db's failure
    still pages (the fast clock used to carry the environment's clock 12 min ahead: db's events were all left
    out)."""
    frame = _host_clock_ahead()
    detector = OfflineDetector(CATALOG)
    rows = replay(frame, CATALOG, arrival="arrival", detector=detector)
    _assert_both_page_at_their_true_onset(opened(rows))
    search = next(r for r in opened(rows) if r["service"] == "search")
    assert SKEWED in search["affected_hosts"]
    assert detector.detectors["prod"].drain_counters() == [(CLOCK_AHEAD, "search", int((frame.host == SKEWED).sum()))]


def test_a_host_clock_12_minutes_ahead_is_taken_at_arrival_through_the_processor():
    frame = _host_clock_ahead()
    out = _through_the_processor(frame, DetectionParams())
    _assert_both_page_at_their_true_onset(
        [{"service": r.service, "opened_at": r.opened_at.value // 1_000_000} for r in
         out[out.update_type == "opened"].itertuples()])
    assert _counters(out.to_dict("records")) == {(CLOCK_AHEAD, "search"): int((frame.host == SKEWED).sum())}
