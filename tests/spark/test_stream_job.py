"""The whole ingest path on real Spark and the real broker: bad input, table contracts, exactly-once."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from stream_helpers import make_event, produce, produce_events, read_table, transactions, uncommitted_files

from incident_contracts import avro_schemas
from incident_contracts.codec import Codec
from incident_contracts.kafka import end_offsets
from incident_contracts.settings import Settings
from incident_contracts.tables import DEAD_LETTER_MAX_RAW_BYTES, check_schema
from incident_stack.broker import free_port
from incident_stream import job as job_module
from incident_stream.job import JobOptions, StreamJob, run_job
from incident_stream.metrics import MetricsRecorder
from incident_stream.prometheus import JobMetrics

pytestmark = pytest.mark.integration


def job_settings(broker: str, topic: str, data: Path) -> Settings:
    return Settings(_env_file=None, kafka_bootstrap_servers=broker, kafka_topic_logs=topic,  # type: ignore[call-arg]
                    data_dir=data, kafka_consumer_group="")


def options(data: Path, **overrides: Any) -> JobOptions:
    values: dict[str, Any] = {"data_dir": data, "checkpoint": data / "_checkpoints" / "job", "once": True,
                              "detection": False, "trigger_seconds": 0.5}
    values.update(overrides)
    return JobOptions(**values)


def all_offsets(broker: str, topic: str) -> set[tuple[int, int]]:
    return {(p, o) for p, end in end_offsets(broker, topic).items() for o in range(end)}


def test_bad_input_lands_in_dead_letter_with_reasons_and_tables_match_the_contract(
        spark: Any, broker: str, topic: str, tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    codec = Codec()
    poison = b"\xff\xfe definitely not avro \x00\x01"
    # Rejects in the first batch and in later ones.
    produce(broker, topic, [poison])
    produce_events(broker, topic, (make_event(i) for i in range(1_000)))
    late = now_ms - 2 * 3600 * 1000  # a burst of late data: two hours old, still accepted
    produce_events(broker, topic, (make_event(10_000 + i, timestamp=late + i) for i in range(200)))
    old_writer = Codec(writer=avro_schemas.by_version(1))
    produce(broker, topic, [old_writer.encode({k: v for k, v in make_event(20_000).items() if k != "span_id"})])
    unknown = codec.encode(make_event(1))
    bad = {
        "poison": poison,
        "confluent framed, no registry": b"\x00\x00\x00\x00\x07" + unknown[10:],
        "giant": codec.encode(make_event(2, message="x" * 1_500_000)),
        "unknown schema": b"\xc3\x01" + b"\x42" * 8 + unknown[10:],
        "1970": codec.encode(make_event(3, timestamp=0)),
        "next year": codec.encode(make_event(4, timestamp=now_ms + 365 * 24 * 3600 * 1000)),
        "no event id": codec.encode(make_event(5, event_id=" ")),
        "tombstone": None,
        "junk": b"{\"level\": \"ERROR\"}",
    }
    produce(broker, topic, [value for name, value in bad.items() if name != "poison"])
    data = tmp_path / "data"
    prometheus = JobMetrics()
    port = free_port()
    assert prometheus.serve("127.0.0.1", port)
    try:
        summary = run_job(spark, job_settings(broker, topic, data), options(data, max_records_per_trigger=600),
                          handle_signals=False, prometheus=prometheus)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            scraped = {(s.name, tuple(sorted(s.labels.items()))): s.value
                       for f in text_string_to_metric_families(response.read().decode()) for s in f.samples}
    finally:
        prometheus.close()

    assert summary["status"] == "finished", summary
    # The job's Prometheus endpoint counted what the tables hold.
    assert scraped[("incident_stream_dead_letters_total", ())] == len(bad)
    assert scraped[("incident_stream_batches_total", (("query", "logs"),))] == summary["batches"]
    assert {scraped[("incident_stream_consumer_lag_records", (("partition", p), ("query", "logs")))]
            for p in ("0", "1")} == {0}
    events, letters = read_table(data / "events"), read_table(data / "dead_letter")
    assert events.num_rows == 1_201 and summary["events_written"] == 1_201
    assert letters.num_rows == len(bad) and summary["dead_letter_written"] == len(bad)
    reasons = sorted(letters.column("reason").to_pylist())
    assert reasons == sorted(["bad_magic", "too_large", "unknown_fingerprint", "timestamp_out_of_range",
                              "timestamp_out_of_range", "invalid_field", "empty", "bad_magic",
                              "unknown_schema_id"])
    giant = letters.filter(pc.equal(letters.column("reason"), "too_large")).to_pylist()[0]
    assert giant["value_size"] > 1_500_000 and len(giant["raw_value"]) == DEAD_LETTER_MAX_RAW_BYTES
    old = letters.filter(pc.equal(letters.column("reason"), "timestamp_out_of_range")).column("detail").to_pylist()
    assert any("1970-01-01" in d for d in old) and all("STREAM_MAX_" in d for d in old)
    # Every record is in exactly one table: nothing lost, nothing twice.
    seen = list(zip(events.column("kafka_partition").to_pylist(), events.column("kafka_offset").to_pylist(),
                    strict=True))
    seen += list(zip(letters.column("kafka_partition").to_pylist(), letters.column("kafka_offset").to_pylist(),
                     strict=True))
    assert len(seen) == len(set(seen)) and set(seen) == all_offsets(broker, topic)
    assert summary["end_offsets"] == {str(p): o for p, o in end_offsets(broker, topic).items()}
    # Late events are kept, in the partition of their own hour.
    late_hour = dt.datetime.fromtimestamp(late / 1000, dt.UTC)
    late_rows = events.filter(pc.match_substring_regex(events.column("event_id"), "^evt-10[0-9]{3}$"))
    assert late_rows.num_rows == 200
    assert set(late_rows.column("event_hour").to_pylist()) <= {late_hour.hour, (late_hour.hour + 1) % 24}
    for name in ("events", "dead_letter", "metrics"):
        assert check_schema(name, read_table(data / name).schema) == [], name
    metrics = sorted(read_table(data / "metrics").to_pylist(), key=lambda m: m["batch_id"])
    assert {m["query_name"] for m in metrics} == {"logs"}
    # The metrics count records (events and dead letters), though the source hands Spark one row per file.
    assert metrics[-1]["lag"] == 0 and sum(m["num_input_rows"] for m in metrics) == 1_201 + len(bad)
    for name in ("events", "dead_letter"):  # a clean run leaves no file outside the tables' versions
        assert uncommitted_files(data / name) == {}, name


def test_exactly_once_across_an_in_process_stop_and_a_batch_failing_before_its_commit(
        spark: Any, broker: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Both faults happen inside this process: the running queries are stopped with `query.stop()` while a
    batch is in flight, then the sink raises after its files are committed to the tables and before
    Spark commits the batch, and the job is run again. No process is killed here; the job process killed
    with SIGKILL mid-batch is tests/spark/test_job_faults.py."""
    produce_events(broker, topic, (make_event(i) for i in range(6_000)))
    data = tmp_path / "data"
    settings = job_settings(broker, topic, data)

    # 1. The query stopped in-process mid-stream (no grace: the running batch is interrupted).
    job = StreamJob(spark, settings, options(data, once=False, max_records_per_trigger=1_000))
    job.start()
    deadline = time.monotonic() + 180
    while job.counters.batches < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.query is not None
    job.query.stop()
    spark.streams.removeListener(job.metrics)
    assert 2_000 <= read_table(data / "events").num_rows < 6_000

    # 2. The sink raises after the batch's files are committed to the tables, before Spark commits the batch.
    original = job_module.BatchSink.__call__
    failed_batch: list[int] = []

    def fail_once(self: Any, batch: Any, batch_id: int) -> None:
        original(self, batch, batch_id)
        if not failed_batch:
            failed_batch.append(batch_id)
            raise RuntimeError("simulated failure between the table commit and Spark's commit")

    monkeypatch.setattr(job_module.BatchSink, "__call__", fail_once)
    failed = run_job(spark, settings, options(data, max_records_per_trigger=1_000), handle_signals=False)
    assert failed["status"] == "failed" and "simulated failure" in failed["error"]
    monkeypatch.setattr(job_module.BatchSink, "__call__", original)
    failure_over = time.time()

    # 3. Restart: the failed batch is replayed (same id, same offsets), then the rest.
    with caplog.at_level(logging.INFO, logger="incident_stream"):
        done = run_job(spark, settings, options(data, max_records_per_trigger=1_000), handle_signals=False)
    assert done["status"] == "finished", done
    events = read_table(data / "events")
    ids = events.column("event_id").to_pylist()
    assert len(ids) == 6_000 and len(set(ids)) == 6_000
    # The replay was recognised by the table, committed no second time, and its files were removed: files
    # outside every version are only those of the tasks the in-process stop interrupted.
    assert f"batch {failed_batch[0]} is already in events" in caplog.text
    app_id = f"incident-stream-logs-{job_module.checkpoint_id(data / '_checkpoints' / 'job' / 'logs')}"
    batches = transactions(data / "events", app_id)
    assert batches.count(failed_batch[0]) == 1 and batches == sorted(set(batches))
    assert all(mtime < failure_over for mtime in uncommitted_files(data / "events").values())


def test_metrics_cover_every_batch_even_when_progress_reports_arrive_late(
        spark: Any, broker: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spark delivers progress reports to listeners asynchronously; on a busy machine the last ones arrive
    after the queries ended. The metrics table and the summary must still account for every batch."""
    produce_events(broker, topic, (make_event(i) for i in range(1_500)))
    original = MetricsRecorder.onQueryProgress

    def late(self: MetricsRecorder, event: Any) -> None:
        time.sleep(3)  # the listener thread lags far behind the queries
        original(self, event)

    monkeypatch.setattr(MetricsRecorder, "onQueryProgress", late)
    data = tmp_path / "data"
    summary = run_job(spark, job_settings(broker, topic, data), options(data, max_records_per_trigger=500),
                      handle_signals=False)

    assert summary["status"] == "finished", summary
    assert summary["input_rows"] == 1_500 and summary["batches"] == 3
    metrics = sorted(read_table(data / "metrics").to_pylist(), key=lambda m: m["batch_id"])
    assert [m["batch_id"] for m in metrics] == [0, 1, 2]
    assert [m["num_input_rows"] for m in metrics] == [500, 500, 500]
    assert [m["lag"] for m in metrics] == [1_000, 500, 0]


def test_a_checkpoint_of_the_earlier_two_query_job_is_continued_without_writing_a_record_twice(
        spark: Any, broker: str, topic: str, tmp_path: Path) -> None:
    """The earlier job kept its checkpoint in `ingest/` and `detection/`: the one query starts after the last
    batch the ingest query committed, so the records it wrote are not written again."""
    produce_events(broker, topic, (make_event(i) for i in range(1_000)))
    ends = end_offsets(broker, topic)
    done = {str(p): end // 2 for p, end in ends.items()}  # the earlier job committed half of each partition
    legacy = tmp_path / "data" / "_checkpoints" / "job" / "ingest"
    (legacy / "offsets").mkdir(parents=True)
    (legacy / "commits").mkdir()
    entry = json.dumps({"topic": topic, "topicId": "", "offsets": done})
    (legacy / "offsets" / "4").write_text(f'v1\n{{"batchWatermarkMs":0,"batchTimestampMs":1}}\n{entry}')
    (legacy / "commits" / "4").write_text('v1\n{"nextBatchWatermarkMs":0}')
    data = tmp_path / "data"

    summary = run_job(spark, job_settings(broker, topic, data), options(data, detection=True), handle_signals=False)

    assert summary["status"] == "finished", summary
    rows = read_table(data / "events").select(["kafka_partition", "kafka_offset"]).to_pylist()
    expected = {(p, o) for p, end in ends.items() for o in range(end // 2, end)}
    assert {(r["kafka_partition"], r["kafka_offset"]) for r in rows} == expected and len(rows) == len(expected)
    assert summary["end_offsets"] == {str(p): end for p, end in ends.items()}
