"""The detection source (source.py) on the real broker: its partial buckets give the incident_updates that
detect() gives on the kafka_arrow source's enriched events, in a batch read and in the streaming job."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from enrich_oracle import detect, enrich
from kafka_arrow_source import SOURCE_NAME, register, with_batch_reads
from stream_helpers import produce, produce_events, read_table

from incident_contracts.catalog import default_catalog
from incident_contracts.settings import Settings
from incident_stream.dead_letter import events_of
from incident_stream.detection import detect_partials, scoring
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.partials import decode
from incident_stream.detection.source import DetectionPartialsSource, PartialsConfig, partials_options
from incident_stream.job import JobOptions, run_job
from incident_stream.kafka_source import SourceOptionError
from log_generator import api

pytestmark = pytest.mark.integration

CATALOG = default_catalog()
KEY = ["incident_id", "update_seq", "update_type", "service", "severity", "event_count", "error_count",
       "origin_service"]


def _read(spark: Any, name: str, broker: str, topic: str, **extra: str) -> Any:
    reader = spark.read.format(name).option("kafka.bootstrap.servers", broker).option("subscribe", topic)
    for key, value in extra.items():
        reader = reader.option(key, value)
    return reader.load()


def _rows(frame: Any) -> list[dict]:
    return sorted((frame[KEY].astype(object).where(frame[KEY].notna(), None).to_dict("records")),
                  key=lambda r: (r["incident_id"], r["update_seq"]))


def test_the_source_needs_its_detection_option() -> None:
    with pytest.raises(SourceOptionError, match="needs the option 'detection'"):
        PartialsConfig.parse({"subscribe": "t"})
    with pytest.raises(SourceOptionError, match="not a detection configuration"):
        PartialsConfig.parse({"detection": '{"bucket_ms": 1000}'})


def test_partials_from_the_source_give_the_rows_of_detect_on_events_batch_and_stream(
        spark: Any, broker: str, topic: str, tmp_path: Path) -> None:
    start_ms = int(time.time() * 1000) - 400_000
    events, truth = api.generate("bad_deploy", rate=60, duration_s=330, seed=3, start_ms=start_ms)
    produced = produce_events(broker, topic, events)
    produce(broker, topic, [b"\xff not avro", None])  # rejected records never reach the detector
    settings = Settings(_env_file=None, kafka_bootstrap_servers=broker, kafka_topic_logs=topic,  # type: ignore[call-arg]
                        data_dir=tmp_path / "data", kafka_consumer_group="")
    params = DetectionParams()

    batch_partials = with_batch_reads(DetectionPartialsSource)  # the job reads it as a stream only
    register(spark, batch_partials)
    partials = _read(spark, batch_partials.name(), broker, topic, **partials_options(CATALOG, params))
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

    summary = run_job(spark, settings, JobOptions(data_dir=tmp_path / "data", checkpoint=tmp_path / "checkpoint",
                                                  once=True, detection=True, trigger_seconds=0.5),
                      handle_signals=False)
    assert summary["status"] == "finished", summary
    assert summary["events_written"] == produced and summary["dead_letter_written"] == 2
    streamed = read_table(tmp_path / "data" / "incident_updates").to_pandas()
    streamed_opened = {(r["incident_id"], r["service"]) for r in _rows(streamed) if r["update_type"] == "opened"}
    assert streamed_opened == {(r["incident_id"], r["service"]) for r in opened}
