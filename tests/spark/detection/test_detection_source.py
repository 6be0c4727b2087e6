"""The detection side of the job's source (logs_source.py, ``kafka_logs``) on the real broker: the partial
buckets its tasks hand over give the incident_updates that detect() gives on the kafka_arrow source's
enriched events, in a batch read and in the streaming job; without the detection option the tasks hand
over nothing but still write the tables' files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from enrich_oracle import detect, enrich
from kafka_arrow_source import SOURCE_NAME, register, with_batch_reads
from stream_helpers import produce, produce_events, read_table

from incident_contracts.catalog import default_catalog
from incident_contracts.kafka import end_offsets
from incident_contracts.settings import Settings
from incident_contracts.table_store import TableStore
from incident_stream.batch_staging import BatchStaging, StagedBatch
from incident_stream.dead_letter import events_of
from incident_stream.detection import scoring
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.partials import PARTIALS_SCHEMA, decode
from incident_stream.detection.stream import detect_partials, partials_config
from incident_stream.enrich_arrow import ServiceLookup
from incident_stream.job import JobOptions, run_job
from incident_stream.kafka_read import Range
from incident_stream.kafka_source import SourceOptionError
from incident_stream.logs_source import DETECTION_OPTION, SERVICES_OPTION, TABLES_OPTION, LogsSource
from log_generator import api

CATALOG = default_catalog()
KEY = ["incident_id", "update_seq", "update_type", "service", "severity", "event_count", "error_count",
       "origin_service"]
KAFKA = {"kafka.bootstrap.servers": "127.0.0.1:9", "subscribe": "t"}


def _read(spark: Any, name: str, broker: str, topic: str, **extra: str) -> Any:
    reader = spark.read.format(name).option("kafka.bootstrap.servers", broker).option("subscribe", topic)
    for key, value in extra.items():
        reader = reader.option(key, value)
    return reader.load()


def _rows(frame: Any) -> list[dict]:
    return sorted((frame[KEY].astype(object).where(frame[KEY].notna(), None).to_dict("records")),
                  key=lambda r: (r["incident_id"], r["update_seq"]))


def _logs_options(root: Path, params: DetectionParams | None) -> dict[str, str]:
    """The options the job gives its source beside the Kafka ones (job.logs_options)."""
    options = {TABLES_OPTION: str(root), SERVICES_OPTION: json.dumps(ServiceLookup.of(CATALOG).to_dict())}
    if params is not None:
        options[DETECTION_OPTION] = partials_config(params).to_json()
    return options


def _staged(root: Path, broker: str, topic: str) -> StagedBatch:
    """The files the tasks of a batch read of the whole topic listed in their manifests (a batch read has no
    planner: the plan is written here, one range per partition with records, as the batch reader's)."""
    staging = BatchStaging.of(TableStore(str(root)))
    ranges = [Range(p, 0, end) for p, end in sorted(end_offsets(broker, topic).items()) if end > 0]
    staging.write_plan({"test": 1}, ranges)
    return staging.batch({"test": 1})


def test_the_detection_option_is_a_partials_configuration() -> None:
    params = DetectionParams()
    source = LogsSource({**KAFKA, TABLES_OPTION: "/tmp/x", DETECTION_OPTION: partials_config(params).to_json()})
    config = source._detection()
    assert config is not None
    assert (config.bucket_ms, config.slowest_kept, config.message_max_chars) == (
        params.bucket_ms, params.slowest_kept, params.message_max_chars)
    assert LogsSource({**KAFKA, TABLES_OPTION: "/tmp/x"})._detection() is None  # no detection: no partials


@pytest.mark.parametrize("raw", ['{"bucket_ms": 1000}', "not json", "[1, 2]"])
def test_a_bad_detection_option_is_a_source_option_error(raw: str) -> None:
    source = LogsSource({**KAFKA, TABLES_OPTION: "/tmp/x", DETECTION_OPTION: raw})
    with pytest.raises(SourceOptionError, match=r"option detection: not a detection configuration .*partials_config"):
        source.reading(PARTIALS_SCHEMA)


def test_the_source_needs_the_tables_root() -> None:
    for options in (KAFKA, {**KAFKA, TABLES_OPTION: "  "}):
        source = LogsSource(options)
        with pytest.raises(SourceOptionError, match="kafka_logs source needs the option 'tablesRoot'"):
            source.reading(PARTIALS_SCHEMA)
        with pytest.raises(SourceOptionError, match="needs the option 'tablesRoot'"):
            source.on_plan()
    with pytest.raises(SourceOptionError, match="option serviceCatalog: expected JSON with 'tiers' and 'owners'"):
        LogsSource({**KAFKA, TABLES_OPTION: "/tmp/x", SERVICES_OPTION: '{"tiers": {}}'}).reading(PARTIALS_SCHEMA)


@pytest.mark.integration
@pytest.mark.beside
def test_partials_from_the_source_give_the_rows_of_detect_on_events_batch_and_stream(
        spark: Any, broker: str, topic: str, tmp_path: Path) -> None:
    start_ms = int(time.time() * 1000) - 400_000
    events, truth = api.generate("bad_deploy", rate=60, duration_s=330, seed=3, start_ms=start_ms)
    produced = produce_events(broker, topic, events)
    produce(broker, topic, [b"\xff not avro", None])  # rejected records never reach the detector
    settings = Settings(_env_file=None, kafka_bootstrap_servers=broker, kafka_topic_logs=topic,  # type: ignore[call-arg]
                        data_dir=tmp_path / "data", kafka_consumer_group="")
    params = DetectionParams()

    logs = with_batch_reads(LogsSource)  # the job reads it as a stream only
    register(spark, logs)
    root = tmp_path / "read"
    partials = _read(spark, logs.name(), broker, topic, **_logs_options(root, params)).cache()
    blobs = [row["agg"] for row in partials.select("agg").collect()]
    assert sum(decode(blob).n for blob in blobs) == produced  # every event counted once, the rejects not
    assert len(blobs) < produced / 2  # one row per service, second and task, not one per event
    from_partials = _rows(detect_partials(partials, CATALOG, params).toPandas())
    events_df = enrich(events_of(_read(spark, SOURCE_NAME, broker, topic)), CATALOG)
    from_events = _rows(detect(events_df, CATALOG, settings, params).toPandas())
    assert from_partials == from_events
    (expected,) = scoring.truths_from_manifest(truth.to_dict())
    opened = [r for r in from_partials if r["update_type"] == "opened"]
    assert expected.origin_service in {r["service"] for r in opened}
    staged = _staged(root, broker, topic)  # the same tasks wrote the tables' files
    assert (staged.rows("events"), staged.rows("dead_letter")) == (produced, 2)

    summary = run_job(spark, settings, JobOptions(data_dir=tmp_path / "data", checkpoint=tmp_path / "checkpoint",
                                                  once=True, detection=True, trigger_seconds=0.5),
                      handle_signals=False)
    assert summary["status"] == "finished", summary
    assert summary["events_written"] == produced and summary["dead_letter_written"] == 2
    streamed = read_table(tmp_path / "data" / "incident_updates").to_pandas()
    streamed_opened = {(r["incident_id"], r["service"]) for r in _rows(streamed) if r["update_type"] == "opened"}
    assert streamed_opened == {(r["incident_id"], r["service"]) for r in opened}


@pytest.mark.integration
@pytest.mark.beside
def test_without_the_detection_option_the_tasks_hand_over_nothing_but_write_the_files(
        spark: Any, broker: str, topic: str, tmp_path: Path) -> None:
    start_ms = int(time.time() * 1000) - 60_000
    events, _truth = api.generate("none", rate=20, duration_s=30, seed=4, start_ms=start_ms)
    events = list(events)
    produced = produce_events(broker, topic, events)
    produce(broker, topic, [b"\x00\x00\x00\x00\x07garbage"])
    logs = with_batch_reads(LogsSource)
    register(spark, logs)
    root = tmp_path / "data"

    rows = _read(spark, logs.name(), broker, topic, **_logs_options(root, None)).collect()

    assert rows == []
    staged = _staged(root, broker, topic)
    assert (staged.rows("events"), staged.rows("dead_letter")) == (produced, 1) and not staged.discarded
    written = [pq.read_table(root / "events" / f.path, columns=["event_id"]) for f in staged.files["events"]]
    assert sorted(i for t in written for i in t.column("event_id").to_pylist()) == sorted(e["event_id"] for e in events)
    (dead,) = staged.files["dead_letter"]
    assert (root / "dead_letter" / dead.path).stat().st_size == dead.size

    with pytest.raises(Exception, match="needs the option 'tablesRoot'"):  # the option error reaches the caller
        _read(spark, logs.name(), broker, topic).collect()
