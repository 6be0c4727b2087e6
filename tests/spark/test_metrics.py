"""Progress reports -> rows of the metrics Delta table (metrics.py), without Spark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from incident_contracts.table_store import TableStore
from incident_contracts.tables import check_schema
from incident_stream.metrics import MetricsRecorder, progress_row


def progress(batch_id: int, rows: int, name: str = "logs") -> dict[str, Any]:
    return {"id": f"id-{name}", "runId": f"run-{name}", "name": name, "batchId": batch_id,
            "timestamp": "2026-12-06T05:00:00.000Z",
            "numInputRows": rows, "inputRowsPerSecond": rows / 2.0, "processedRowsPerSecond": rows / 0.5,
            "batchDuration": 500, "sources": [{"startOffset": {"topic": "t", "offsets": {"0": 10}},
                                               "endOffset": {"topic": "t", "offsets": {"0": 20}},
                                               "latestOffset": {"topic": "t", "offsets": {"0": 26}}}]}


def test_a_row_reports_what_spark_reported() -> None:
    row = progress_row(progress(3, 400), run_id="run-1")
    assert (row["batch_id"], row["num_input_rows"], row["input_rows_per_second"],
            row["processed_rows_per_second"], row["batch_duration_ms"], row["lag"]) == (3, 400, 200.0, 800.0, 500, 6)
    assert row["run_id"] == "run-1"


def test_records_replace_spark_rows_and_scale_both_rates() -> None:
    """The job's source hands Spark partial buckets: 4 rows for 10,000 records."""
    row = progress_row(progress(3, 4), run_id=None, records=10_000)
    assert (row["num_input_rows"], row["input_rows_per_second"], row["processed_rows_per_second"]) == (
        10_000, 5_000.0, 20_000.0)
    empty = progress_row(progress(4, 0), run_id=None, records=0)
    assert (empty["num_input_rows"], empty["input_rows_per_second"]) == (0, 0.0)


def test_records_of_a_batch_without_source_rows_are_rated_over_its_duration() -> None:
    """Dead letters only, or the job without detection: Spark saw no row and reports no rate to scale."""
    report = {**progress(5, 0), "inputRowsPerSecond": 0.0, "processedRowsPerSecond": 0.0, "batchDuration": 1_250}
    row = progress_row(report, run_id=None, records=3_000)
    assert (row["num_input_rows"], row["input_rows_per_second"], row["processed_rows_per_second"],
            row["batch_duration_ms"]) == (3_000, 2_400.0, 2_400.0, 1_250)
    no_duration = progress_row({**report, "batchDuration": 0}, run_id=None, records=3_000)
    assert (no_duration["num_input_rows"], no_duration["input_rows_per_second"]) == (3_000, 0.0)
    assert progress_row(report, run_id=None)["num_input_rows"] == 0  # without records: Spark's rows


def test_the_recorder_uses_the_records_a_sink_counted_for_that_query_and_batch(tmp_path: Path) -> None:
    recorder = MetricsRecorder(TableStore(str(tmp_path / "data")))
    recorder.count_records("logs", 7, 9_000)
    assert recorder.record(progress(7, 3))
    assert recorder.record(progress(8, 2))  # no count for this batch: Spark's rows
    assert recorder.record(progress(7, 5, name="detection"))  # another query's batch 7
    assert not recorder.record(progress(7, 3))  # the same report twice is recorded once
    assert recorder.activity["logs"].input_rows == 9_002
    assert recorder.activity["detection"].input_rows == 5


def test_a_flush_appends_the_buffered_rows_in_one_commit_of_the_metrics_table(tmp_path: Path) -> None:
    store = TableStore(str(tmp_path / "data"))
    recorder = MetricsRecorder(store, run_id="run-9")
    recorder.flush()  # nothing buffered: no table, no commit
    assert store.open("metrics") is None
    for batch in range(3):
        recorder.record(progress(batch, 100 * batch))
    recorder.flush()
    recorder.flush()
    table = store.open("metrics")
    assert table is not None and table.version() == 1  # created, then one append
    rows = sorted(store.read("metrics").to_pylist(), key=lambda r: r["batch_id"])
    assert [(r["batch_id"], r["num_input_rows"], r["run_id"]) for r in rows] == [(0, 0, "run-9"), (1, 100, "run-9"),
                                                                                  (2, 200, "run-9")]
    assert check_schema("metrics", store.read("metrics").schema) == []
    recorder.record(progress(3, 5))
    recorder.flush()
    assert store.read("metrics").num_rows == 4


def test_a_metrics_table_that_cannot_be_written_never_fails_the_job(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "data"
    blocked.write_text("a file where the tables' folder should be")
    recorder = MetricsRecorder(TableStore(str(blocked)))
    recorder.record(progress(0, 10))
    recorder.flush()
    assert "could not write 1 metrics rows" in caplog.text
