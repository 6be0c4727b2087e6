"""The streaming job's Prometheus metrics (incident_stream.prometheus), without Spark: progress reports
shaped like Spark's StreamingQueryProgress JSON -> gauge values, the recorder feeding them, /metrics over HTTP."""

from __future__ import annotations

import copy
import socket
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from incident_contracts.settings import Settings
from incident_contracts.table_store import TableStore
from incident_stream.metrics import MetricsRecorder
from incident_stream.prometheus import JobMetrics, partition_lag, progress_values
from incident_stream.session import EXECUTORS_PROMETHEUS_PATH, PROMETHEUS_SERVLET_PATH, spark_conf

# A detection-query report as Spark 4 writes it (StreamingQueryProgress.json): offsets of a Python data
# source are nested objects, the state operator reports its rows.
DETECTION = {
    "id": "5d2c6a0e-1f3b-4f0e-9d51-7c1f6d1b0a11",
    "runId": "b8e4a7c2-33d1-4b9a-8f0e-2a6c9d4e5f60",
    "name": "detection",
    "timestamp": "2026-12-07T05:00:00.000Z",
    "batchId": 41,
    "batchDuration": 1834,
    "numInputRows": 6,
    "inputRowsPerSecond": 2.9,
    "processedRowsPerSecond": 3.27,
    "durationMs": {"addBatch": 1502, "commitOffsets": 41, "getBatch": 0, "latestOffset": 13,
                   "queryPlanning": 97, "triggerExecution": 1834, "walCommit": 58},
    "eventTime": {"watermark": "2026-12-07T04:59:55.000Z"},
    "stateOperators": [{
        "operatorName": "transformWithStateInPandasExec", "numRowsTotal": 37, "numRowsUpdated": 5,
        "allUpdatesTimeMs": 11, "numRowsRemoved": 1, "allRemovalsTimeMs": 0, "commitTimeMs": 19,
        "memoryUsedBytes": 204_800, "numRowsDroppedByWatermark": 0, "numShufflePartitions": 1,
        "numStateStoreInstances": 1, "customMetrics": {"rocksdbBytesCopied": 0}}],
    "sources": [{
        "description": "org.apache.spark.sql.execution.datasources.v2.python."
                       "PythonMicroBatchStreamWithAdmissionControl@51c3a0e2",
        "startOffset": {"topic": "logs.events", "offsets": {"0": 1200, "1": 1180}},
        "endOffset": {"topic": "logs.events", "offsets": {"0": 1500, "1": 1490}},
        "latestOffset": {"topic": "logs.events", "offsets": {"0": 1750, "1": 1490}},
        "numInputRows": 6, "inputRowsPerSecond": 2.9, "processedRowsPerSecond": 3.27, "metrics": {}}],
    "sink": {"description": "ForeachBatchSink", "numOutputRows": -1},
}

# A report of the job's logs query (source kafka_logs, logs_source.LogsSource): its tasks hand Spark one row per
# partial bucket (here 2) and the sink counts the records (count_records); the offsets as JSON text, no state
# operator. Spark describes a Python data source by its Java stream object, not by the source's name.
LOGS = {
    "id": "0a9f3e1c-7b2d-4c55-a1e8-6d3b2c1f0e99", "runId": "4e1d2c3b-5a69-4788-9a0b-1c2d3e4f5a6b",
    "name": "logs", "timestamp": "2026-12-07T05:00:02.500Z", "batchId": 7, "batchDuration": 500,
    "numInputRows": 2, "inputRowsPerSecond": 1.0, "processedRowsPerSecond": 4.0,
    "durationMs": {"addBatch": 420, "triggerExecution": 500},
    "stateOperators": [],
    "sources": [{"description": "org.apache.spark.sql.execution.datasources.v2.python."
                                 "PythonMicroBatchStreamWithAdmissionControl@7aeb4583",
                 "startOffset": '{"topic": "logs.events", "offsets": {"0": 0, "1": 0}}',
                 "endOffset": '{"topic": "logs.events", "offsets": {"0": 600, "1": 400}}',
                 "latestOffset": '{"topic": "logs.events", "offsets": {"0": 900, "1": 400}}',
                 "numInputRows": 2, "inputRowsPerSecond": 1.0, "processedRowsPerSecond": 4.0}],
    "sink": {"description": "ForeachBatchSink", "numOutputRows": -1},
}


def test_a_detection_report_maps_to_lag_per_partition_duration_rates_state_and_commit_time() -> None:
    values = progress_values(DETECTION)
    assert values.query == "detection"
    assert values.lag == {"0": 250, "1": 0}
    assert values.batch_seconds == pytest.approx(1.834)
    assert (values.input_rows_per_second, values.processed_rows_per_second) == (2.9, 3.27)
    assert values.state_rows == 37
    started = datetime(2026, 12, 7, 5, 0, 0, tzinfo=UTC).timestamp()
    assert values.committed_at == pytest.approx(started + 1.834)


def test_a_logs_report_counts_records_not_partial_bucket_rows() -> None:
    values = progress_values(LOGS, records=1_000)  # 2 partial buckets of 1,000 records
    assert values.lag == {"0": 300, "1": 0}
    assert (values.input_rows_per_second, values.processed_rows_per_second) == (500.0, 2_000.0)
    assert values.state_rows is None


def test_lag_is_unknown_without_offsets() -> None:
    report = copy.deepcopy(LOGS)
    del report["sources"][0]["latestOffset"]
    assert partition_lag(report) == {}
    assert partition_lag({"sources": []}) == {}


def _samples(metrics: JobMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in metrics.registry.collect() for s in family.samples}


def test_the_recorder_feeds_each_new_report_once_and_an_older_one_only_counts(tmp_path: Path) -> None:
    metrics = JobMetrics()
    recorder = MetricsRecorder(TableStore(str(tmp_path / "data")), observer=metrics)
    recorder.count_records("logs", 7, 1_000)
    assert recorder.record(LOGS)
    assert not recorder.record(LOGS)  # the same report from the listener and the poll: once
    later = dict(copy.deepcopy(LOGS), batchId=8, timestamp="2026-12-07T05:00:04.000Z", batchDuration=900)
    later["sources"][0]["latestOffset"] = '{"topic": "logs.events", "offsets": {"0": 900, "1": 450}}'
    assert recorder.record(later)
    older = dict(copy.deepcopy(LOGS), batchId=6, timestamp="2026-12-07T05:00:01.000Z", batchDuration=50)
    assert recorder.record(older)  # arrives late: counted, but the gauges keep batch 8's values
    assert recorder.record(DETECTION)
    samples = _samples(metrics)
    assert samples[("incident_stream_batches_total", (("query", "logs"),))] == 3
    assert samples[("incident_stream_batches_total", (("query", "detection"),))] == 1
    assert samples[("incident_stream_last_batch_duration_seconds", (("query", "logs"),))] == 0.9
    assert samples[("incident_stream_consumer_lag_records", (("partition", "1"), ("query", "logs")))] == 50
    assert samples[("incident_stream_consumer_lag_records", (("partition", "0"), ("query", "detection")))] == 250
    assert samples[("incident_stream_state_rows", (("query", "detection"),))] == 37
    assert ("incident_stream_state_rows", (("query", "logs"),)) not in samples
    assert samples[("incident_stream_last_commit_timestamp_seconds", (("query", "logs"),))] == pytest.approx(
        datetime(2026, 12, 7, 5, 0, 4, tzinfo=UTC).timestamp() + 0.9)


def test_a_report_the_metrics_cannot_read_is_skipped_and_the_recorder_goes_on(tmp_path: Path) -> None:
    class Broken(JobMetrics):
        def observe(self, *args: Any, **kwargs: Any) -> None:
            raise ValueError("unreadable")

    recorder = MetricsRecorder(TableStore(str(tmp_path / "data")), observer=Broken())
    assert recorder.record(DETECTION)
    assert recorder.activity["detection"].batches == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_metrics_are_served_over_http_and_a_taken_port_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    metrics = JobMetrics()
    port = _free_port()
    assert metrics.serve("127.0.0.1", port)
    try:
        metrics.observe(DETECTION)
        metrics.dead_letters.inc(3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
        assert [s.value for s in families["incident_stream_dead_letters"].samples if s.name.endswith("_total")] == [3]
        assert families["incident_stream_consumer_lag_records"].type == "gauge"
        taken = JobMetrics()
        assert not taken.serve("127.0.0.1", port)
        assert "STREAM_METRICS_PORT" in caplog.text and "running without it" in caplog.text
    finally:
        metrics.close()
    assert not JobMetrics().serve("127.0.0.1", 0)  # 0: off


def test_the_session_enables_sparks_prometheus_endpoints() -> None:
    conf = spark_conf(Settings(_env_file=None))  # type: ignore[call-arg]
    assert conf["spark.ui.prometheus.enabled"] == "true"
    servlet = "org.apache.spark.metrics.sink.PrometheusServlet"
    assert conf["spark.metrics.conf.*.sink.prometheusServlet.class"] == servlet
    assert conf["spark.metrics.conf.*.sink.prometheusServlet.path"] == PROMETHEUS_SERVLET_PATH == "/metrics/prometheus"
    assert EXECUTORS_PROMETHEUS_PATH == "/metrics/executors/prometheus"
