"""The Kafka source on its own, against the real embedded broker: offsets, restarts, limits, data loss."""

from __future__ import annotations

import json
import pickle
import re
import uuid
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from pyspark.sql.streaming.datasource import ReadAllAvailable
from stream_helpers import make_event, produce, produce_events, source_reader

from incident_contracts.kafka import TopicSpec, committed_offsets, end_offsets, ensure_topics
from incident_stream.kafka_read import Range
from incident_stream.kafka_source import KafkaStreamReader, SourceOptionError, SourceOptions
from incident_stream.offsets import DataLossError, SourceOffset

pytestmark = pytest.mark.integration


def run_available_now(spark: Any, broker: str, topic: str, checkpoint: Path,
                      **options: Any) -> list[tuple[int, list[tuple[int, int]]]]:
    """Run the source to the end of the topic; [(batch id, [(partition, offset), ...])]."""
    batches: list[tuple[int, list[tuple[int, int]]]] = []

    def collect(frame: Any, batch_id: int) -> None:
        rows = frame.select("kafka_partition", "kafka_offset").collect()
        batches.append((batch_id, sorted((r.kafka_partition, r.kafka_offset) for r in rows)))

    query = (source_reader(spark, broker, topic, **options).load().writeStream.foreachBatch(collect)
             .option("checkpointLocation", str(checkpoint)).trigger(availableNow=True).start())
    query.awaitTermination(300)
    if query.exception() is not None:
        raise query.exception()
    return batches


def offsets_of(batches: list[tuple[int, list[tuple[int, int]]]]) -> list[tuple[int, int]]:
    return sorted(o for _, rows in batches for o in rows)


def test_reads_every_record_of_multi_record_batches_within_the_limit(spark: Any, broker: str, topic: str,
                                                                     tmp_path: Path) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(5_000)), linger_ms=50)
    ends = end_offsets(broker, topic)
    probe = Consumer({"bootstrap.servers": broker, "group.id": "probe"})
    reported = {p: probe.get_watermark_offsets(TopicPartition(topic, p))[1] for p in ends}
    probe.close()
    assert sum(ends.values()) == 5_000
    assert reported == ends  # the watermark a plain consumer is told is the log end

    batches = run_available_now(spark, broker, topic, tmp_path / "ck", maxOffsetsPerTrigger=2_000)
    assert [len(rows) for _, rows in batches] == [2_000, 2_000, 1_000]
    assert offsets_of(batches) == [(p, o) for p in sorted(ends) for o in range(ends[p])]

    # Restart from the checkpoint: only what arrived since is read, from where the last batch ended.
    produce_events(broker, topic, (make_event(i) for i in range(5_000, 5_300)))
    again = run_available_now(spark, broker, topic, tmp_path / "ck", maxOffsetsPerTrigger=2_000)
    new_ends = end_offsets(broker, topic)
    assert [b for b, _ in again] == [3]
    assert offsets_of(again) == [(p, o) for p in sorted(new_ends) for o in range(ends[p], new_ends[p])]


def test_latest_starting_offsets_skip_the_backlog(spark: Any, broker: str, topic: str, tmp_path: Path) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(200)))
    assert offsets_of(run_available_now(spark, broker, topic, tmp_path / "ck", startingOffsets="latest")) == []
    produce_events(broker, topic, (make_event(i) for i in range(50)))
    assert len(offsets_of(run_available_now(spark, broker, topic, tmp_path / "ck",
                                            startingOffsets="latest"))) == 50


def test_commits_processed_offsets_to_the_consumer_group(spark: Any, broker: str, topic: str,
                                                         tmp_path: Path) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(400)))
    group = f"lag-{uuid.uuid4().hex[:6]}"
    run_available_now(spark, broker, topic, tmp_path / "ck", commitGroup=group)
    assert committed_offsets(broker, topic, group) == end_offsets(broker, topic)


def test_raw_format_and_batch_reads(spark: Any, broker: str, topic: str) -> None:
    values = [b"first", b"second", b"third"]
    produce(broker, topic, values, partition=1)
    frame = (spark.read.format("kafka_arrow").option("kafka.bootstrap.servers", broker)
             .option("subscribe", topic).option("format", "raw").load())
    assert frame.columns == ["key", "value", "topic", "partition", "offset", "timestamp", "timestampType"]
    rows = frame.orderBy("offset").collect()
    assert [bytes(r.value) for r in rows] == values
    assert [(r.partition, r.offset, r.topic) for r in rows] == [(1, 0, topic), (1, 1, topic), (1, 2, topic)]


def test_events_format_reads_enriched_rows_and_keeps_rejects_apart(spark: Any, broker: str, topic: str) -> None:
    from kafka_arrow_source import EVENTS_KEEP

    from incident_contracts.tables import EVENTS

    produce_events(broker, topic, [make_event(i, service="payment-service") for i in range(5)], partition=0)
    produce(broker, topic, [b"not avro"], partition=0)
    frame = (spark.read.format("kafka_arrow").option("kafka.bootstrap.servers", broker)
             .option("subscribe", topic).option("format", "events").load())
    assert frame.columns == [*EVENTS.names, *EVENTS_KEEP]
    rows = frame.orderBy("kafka_offset").collect()
    events, rejects = rows[:5], rows[5:]
    assert {(r.tier, r.owner is not None, r.reject_reason) for r in events} == {("1", True, None)}
    assert all(r.signature and r.event_date and r.is_error == (r.http_status >= 500) for r in events)
    (reject,) = rejects
    assert reject.reject_reason and bytes(reject.raw_value) == b"not avro" and reject.event_id is None


def reader(broker: str, topic: str, **options: str) -> KafkaStreamReader:
    parsed = SourceOptions.parse({"kafka.bootstrap.servers": broker, "subscribe": topic, **options})
    from kafka_arrow_source import rows_of

    from incident_stream.kafka_source import logevent_schema

    return KafkaStreamReader(parsed, rows_of(logevent_schema()))


def test_a_new_partition_is_picked_up_from_its_beginning(broker: str, topic: str) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(30)), partition=1)
    produce_events(broker, topic, (make_event(i) for i in range(10)), partition=0)
    source = reader(broker, topic)
    # A checkpoint written when the topic had only partition 0 (CreatePartitions is not supported here).
    start = SourceOffset(topic, None, {0: 10}).to_json()
    end = source.latestOffset(start, ReadAllAvailable())
    assert end["offsets"] == {"0": 10, "1": 30} and end["from"] == {"1": 0}
    [task] = source.partitions(start, end)
    assert (task.partition, task.start, task.end) == (1, 0, 30)
    batches = list(source.read(task))
    assert sum(b.num_rows for b in batches) == 30
    assert batches[0].column("kafka_offset").to_pylist() == list(range(30))


def test_recreated_topic_fails_clearly_or_restarts_from_earliest(spark: Any, broker: str, tmp_path: Path) -> None:
    topic = f"test.recreate.{uuid.uuid4().hex[:8]}"
    ensure_topics(broker, [TopicSpec(topic, partitions=2)])
    produce_events(broker, topic, (make_event(i) for i in range(300)))
    checkpoint = tmp_path / "ck"
    assert len(offsets_of(run_available_now(spark, broker, topic, checkpoint))) == 300
    admin = AdminClient({"bootstrap.servers": broker})
    for future in admin.delete_topics([topic]).values():
        future.result(15)
    ensure_topics(broker, [TopicSpec(topic, partitions=2)])
    produce_events(broker, topic, (make_event(i) for i in range(20)))

    with pytest.raises(Exception, match="deleted and recreated") as failure:
        run_available_now(spark, broker, topic, checkpoint)
    assert "failOnDataLoss=false" in str(failure.value)
    resumed = run_available_now(spark, broker, topic, checkpoint, failOnDataLoss="false")
    assert offsets_of(resumed) == sorted((p, o) for p, n in end_offsets(broker, topic).items() for o in range(n))


def test_expired_offsets_are_data_loss(broker: str, topic: str) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(20)))
    source = reader(broker, topic)
    beyond = SourceOffset(topic, None, {0: 5_000, 1: 0}).to_json()
    with pytest.raises(DataLossError, match="recreated or truncated"):
        source.latestOffset(beyond, ReadAllAvailable())
    lenient = reader(broker, topic, failOnDataLoss="false")
    end = lenient.latestOffset(beyond, ReadAllAvailable())
    assert end["from"] == {"0": 0}


@pytest.mark.parametrize(("options", "message"), [
    ({"subscribe": "t"}, "kafka.bootstrap.servers"),
    ({"kafka.bootstrap.servers": "h:1"}, "subscribe"),
    ({"kafka.bootstrap.servers": "h:1", "subscribe": "t", "startingOffsets": "middle"}, "startingOffsets"),
    ({"kafka.bootstrap.servers": "h:1", "subscribe": "t", "maxOffsetsPerTrigger": "0"}, "at least 1"),
    ({"kafka.bootstrap.servers": "h:1", "subscribe": "t", "failOnDataLoss": "maybe"}, "true or false"),
])
def test_bad_options_are_named(options: dict[str, str], message: str) -> None:
    with pytest.raises(SourceOptionError, match=message):
        SourceOptions.parse(options)


def test_a_source_is_named_in_the_message_about_its_options() -> None:
    with pytest.raises(SourceOptionError, match="the kafka_logs source needs the option 'subscribe'"):
        SourceOptions.parse({"kafka.bootstrap.servers": "h:1"}, "kafka_logs")


def test_the_logs_source_reads_its_service_catalog_option() -> None:
    from incident_contracts.catalog import default_catalog
    from incident_stream.enrich_arrow import ServiceLookup
    from incident_stream.logs_source import service_lookup

    lookup = ServiceLookup({"api": "1"}, {"api": "team-a"})
    assert service_lookup(json.dumps(lookup.to_dict())) == lookup
    assert service_lookup("") == ServiceLookup.of(default_catalog())  # the catalog file
    with pytest.raises(SourceOptionError, match="option serviceCatalog: expected JSON with 'tiers' and 'owners'"):
        service_lookup("{")


def test_starting_offsets_given_as_json_are_the_partitions_first_offsets() -> None:
    given = json.dumps({"t": {"0": 12, "1": 0}})
    parsed = SourceOptions.parse({"kafka.bootstrap.servers": "h:1", "subscribe": "t", "startingOffsets": given})
    assert (parsed.starting, parsed.starting_offsets) == ("earliest", {0: 12, 1: 0})
    latest = SourceOptions.parse({"kafka.bootstrap.servers": "h:1", "subscribe": "t", "startingOffsets": " LATEST "})
    assert (latest.starting, latest.starting_offsets) == ("latest", {})


@pytest.mark.parametrize("given", ['{"other": {"0": 12}}', '{"t": {"0": "twelve"}}', '{"t": [12]}', '{"t": 12',
                                   '{"t": {"zero": 12}}'])
def test_bad_json_starting_offsets_name_the_expected_form(given: str) -> None:
    expected = re.escape(f"startingOffsets={given!r}: expected JSON {{'t': {{\"<partition>\": <offset>, ...}}}}")
    with pytest.raises(SourceOptionError, match=expected):
        SourceOptions.parse({"kafka.bootstrap.servers": "h:1", "subscribe": "t", "startingOffsets": given})


def test_json_starting_offsets_start_the_named_partitions_there_and_the_others_at_their_earliest(
        broker: str, topic: str) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(30)), partition=0)
    produce_events(broker, topic, (make_event(i) for i in range(10)), partition=1)
    source = reader(broker, topic, startingOffsets=json.dumps({topic: {"0": 12}}))
    assert source.initialOffset()["offsets"] == {"0": 12, "1": 0}


def no_work(read: Any, rng: Any) -> Any:
    return iter(())


def test_the_plan_hook_is_told_each_batchs_end_offset_and_ranges() -> None:
    told: list[tuple[dict, list[Range]]] = []
    parsed = SourceOptions.parse({"kafka.bootstrap.servers": "h:1", "subscribe": "t"})
    source = KafkaStreamReader(parsed, no_work, on_plan=lambda end, ranges: told.append((end, ranges)))
    start = SourceOffset("t", "id-1", {0: 10, 1: 5}).to_json()
    end = SourceOffset("t", "id-1", {0: 30, 1: 5, 2: 7}, starts={2: 0}).to_json()
    planned = source.partitions(start, end)
    assert [(p.partition, p.start, p.end) for p in planned] == [(0, 10, 30), (2, 0, 7)]
    assert told == [(end, [Range(0, 10, 30), Range(2, 0, 7)])]  # partition 1 read nothing: no range
    assert told[0][0] is end  # the offset as Spark logs it: the sink finds the plan by it
    task_side = pickle.loads(pickle.dumps(source))
    assert task_side.on_plan is None and task_side.work is no_work  # tasks never plan


def test_the_logs_source_writes_each_plan_where_its_sink_finds_it(tmp_path: Path) -> None:
    from incident_stream.batch_staging import BatchStaging, StagingError, end_tag
    from incident_stream.detection.partials import PARTIALS_SCHEMA
    from incident_stream.logs_source import LogsSource

    source = LogsSource({"kafka.bootstrap.servers": "h:1", "subscribe": "t", "tablesRoot": str(tmp_path / "data"),
                         "serviceCatalog": json.dumps({"tiers": {}, "owners": {}})})
    stream = source.streamReader(PARTIALS_SCHEMA)
    end = SourceOffset("t", "id-1", {0: 30, 1: 8}).to_json()
    stream.partitions(SourceOffset("t", "id-1", {0: 10, 1: 8}).to_json(), end)
    plan = json.loads((tmp_path / "data" / "_stream_batches" / "plans" / f"{end_tag(end)}.json").read_text())
    assert plan == {"end": end, "ranges": [[0, 10, 30]]}
    with pytest.raises(StagingError, match="the task that read p0-10-30 left no manifest"):
        BatchStaging(pafs.LocalFileSystem(), str(tmp_path / "data")).batch(end)
