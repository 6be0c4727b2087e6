"""The Kafka source where offsets are not all records, against the real broker: transactions (markers,
aborted records, a transaction still open when a batch is planned), compaction and deleted records."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka_arrow_source import rows_of
from kafka_gaps import GapWriter, delete_before, settle
from pyspark.sql.streaming.datasource import ReadAllAvailable
from stream_helpers import make_event, produce_events, source_reader

from incident_contracts.codec import Codec
from incident_contracts.kafka import READ_COMMITTED, offset_range
from incident_stream.kafka_source import KafkaRangePartition, KafkaStreamReader, SourceOptions, logevent_schema
from incident_stream.offsets import DataLossError, SourceOffset

pytestmark = pytest.mark.integration

CODEC = Codec()
Row = tuple[int, int, str]  # partition, offset, event_id


def events(prefix: str, count: int, partitions: tuple[int, ...] = (0, 1)) -> list[tuple[int, bytes]]:
    """(partition, encoded LogEvent) pairs whose event ids start with `prefix`, spread over `partitions`."""
    return [(partitions[i % len(partitions)], CODEC.encode(make_event(i, event_id=f"{prefix}-{i}")))
            for i in range(count)]


def expected_rows(values: dict[int, dict[int, bytes]]) -> list[Row]:
    return sorted((p, o, CODEC.decode(v)["event_id"]) for p, offsets in values.items() for o, v in offsets.items())


def run_available_now(spark: Any, broker: str, topic: str, checkpoint: Path, **options: Any) -> list[list[Row]]:
    """Run the source to the end of what it may read; the rows of each micro-batch."""
    batches: list[list[Row]] = []

    def collect(frame: Any, batch_id: int) -> None:
        rows = frame.select("kafka_partition", "kafka_offset", "event_id").collect()
        batches.append(sorted((r.kafka_partition, r.kafka_offset, r.event_id) for r in rows))

    query = (source_reader(spark, broker, topic, **options).load().writeStream.foreachBatch(collect)
             .option("checkpointLocation", str(checkpoint)).trigger(availableNow=True).start())
    query.awaitTermination(300)
    if query.exception() is not None:
        raise query.exception()
    return batches


def all_rows(batches: list[list[Row]]) -> list[Row]:
    return sorted(row for rows in batches for row in rows)


def reader(broker: str, topic: str, **options: str) -> KafkaStreamReader:
    parsed = SourceOptions.parse({"kafka.bootstrap.servers": broker, "subscribe": topic, **options})
    return KafkaStreamReader(parsed, rows_of(logevent_schema()))


def offsets_read(source: KafkaStreamReader, partition: int, start: int, end: int) -> list[int]:
    batches = source.read(KafkaRangePartition(partition, start, end))
    return [o for batch in batches for o in batch.column("kafka_offset").to_pylist()]


# --- transactions --------------------------------------------------------------------------------

def test_committed_transactions_are_read_once_and_aborted_ones_never(spark: Any, broker: str, topic: str,
                                                                      tmp_path: Path) -> None:
    writer = GapWriter(broker, topic)
    for r in range(4):
        writer.plain(events(f"plain{r}", 5))
        writer.transaction(events(f"kept{r}", 6), commit=True)
        writer.transaction(events(f"dropped{r}", 5), commit=False)
    writer.plain(events("tail", 3))
    ends = settle(broker, topic)
    assert sum(high for _, high in ends.values()) > sum(len(v) for v in writer.committed.values())  # gaps exist

    # Small batches, so batch ends fall on markers and inside aborted transactions.
    batches = run_available_now(spark, broker, topic, tmp_path / "ck", maxOffsetsPerTrigger=7)
    assert all_rows(batches) == expected_rows(writer.committed)  # each committed record once, no aborted one
    assert not {row[2] for row in all_rows(batches)} & {CODEC.decode(v)["event_id"]
                                                        for vs in writer.aborted.values() for v in vs.values()}


def test_a_batch_planned_while_a_transaction_is_open_waits_for_its_end(spark: Any, broker: str, topic: str,
                                                                       tmp_path: Path) -> None:
    writer = GapWriter(broker, topic)
    writer.plain(events("before", 10))
    writer.begin(events("open", 6))
    writer.plain(events("behind", 4))  # ordinary records after the open transaction's first offset
    stable = offset_range(broker, topic, isolation=READ_COMMITTED)
    assert stable != offset_range(broker, topic)

    # The planned end is the last stable offset: what a read_committed task can actually read.
    source = reader(broker, topic)
    end = source.latestOffset(SourceOffset(topic, None, {0: 0, 1: 0}).to_json(), ReadAllAvailable())
    assert end["offsets"] == {str(p): high for p, (_, high) in stable.items()}

    # A whole query while the transaction stays open: it ends promptly (a task waiting for the records
    # behind the transaction would fail after pollTimeoutSeconds) with exactly the records before it.
    started = time.monotonic()
    first = run_available_now(spark, broker, topic, tmp_path / "ck", pollTimeoutSeconds=20)
    assert time.monotonic() - started < 60
    assert all_rows(first) == [row for row in expected_rows(writer.committed) if row[2].startswith("before")]

    writer.end(commit=True)
    settle(broker, topic)
    second = run_available_now(spark, broker, topic, tmp_path / "ck", pollTimeoutSeconds=20)
    assert {e.split("-")[0] for _, _, e in all_rows(second)} == {"open", "behind"}
    assert all_rows(first + second) == expected_rows(writer.committed)  # nothing skipped, nothing twice


# --- compaction ----------------------------------------------------------------------------------

def test_a_compacted_topic_is_read_end_to_end(spark: Any, broker: str, tmp_path: Path) -> None:
    topic = f"test.compact.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker})
    config = {"cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.001",
              "min.compaction.lag.ms": "0", "delete.retention.ms": "0"}
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(15)
    producer = Producer({"bootstrap.servers": broker, "linger.ms": 0})
    written = 0
    for r in range(6):  # rounds in their own segments: each rewrites 8 keys and adds 3 keys of its own
        for i in range(11):
            key = f"shared-{i}" if i < 8 else f"round{r}-{i}"
            producer.produce(topic, key=key.encode(), partition=0,
                             value=CODEC.encode(make_event(written, event_id=f"{key}@{r}")))
            written += 1
        assert producer.flush(15) == 0
        time.sleep(0.3)
    producer.produce(topic, key=b"last", value=CODEC.encode(make_event(written, event_id="last@6")), partition=0)
    assert producer.flush(15) == 0
    written += 1

    survivors = _wait_for_compaction(broker, topic, written, timeout=90)
    event_ids = {o: CODEC.decode(v)["event_id"] for o, v in survivors.items()}
    assert {e for e in event_ids.values() if e.startswith("shared")} < {f"shared-{i}@{r}" for i in range(8)
                                                                       for r in range(6)}
    assert {e for e in event_ids.values() if e.startswith("round")} == {f"round{r}-{i}@{r}" for r in range(6)
                                                                       for i in (8, 9, 10)}

    batches = run_available_now(spark, broker, topic, tmp_path / "ck", maxOffsetsPerTrigger=5)
    assert all_rows(batches) == sorted((0, o, e) for o, e in event_ids.items())
    assert len(batches) == -(-written // 5)  # the limit counts offsets, removed ones too


def _wait_for_compaction(broker: str, topic: str, written: int, timeout: float) -> dict[int, bytes]:
    """The records left once the log cleaner has removed older values of the shared keys."""
    deadline = time.monotonic() + timeout
    while True:
        records = _read_all(broker, topic)
        if len(records) < written:
            return records
        assert time.monotonic() < deadline, f"the log cleaner did not compact {topic} within {timeout:.0f}s"
        time.sleep(1)


def _read_all(broker: str, topic: str) -> dict[int, bytes]:
    (_, high), = offset_range(broker, topic, [0]).values()
    consumer = Consumer({"bootstrap.servers": broker, "group.id": f"all-{uuid.uuid4().hex[:6]}"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    records: dict[int, bytes] = {}
    deadline = time.monotonic() + 30
    try:
        while (not records or max(records) < high - 1) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                records[message.offset()] = message.value()
    finally:
        consumer.close()
    assert records and max(records) == high - 1, f"could not read {topic} up to offset {high - 1}"
    return records


# --- deleted records -----------------------------------------------------------------------------

def test_deleted_records_are_data_loss_only_when_not_yet_processed(spark: Any, broker: str, topic: str,
                                                                   tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    checkpoint = tmp_path / "ck"
    for p in (0, 1):
        produce_events(broker, topic, (make_event(i, event_id=f"a{p}-{i}") for i in range(50)), partition=p)
    assert len(all_rows(run_available_now(spark, broker, topic, checkpoint))) == 100

    # Deleting records already processed loses nothing.
    delete_before(broker, topic, 0, 30)
    for p in (0, 1):
        produce_events(broker, topic, (make_event(i, event_id=f"b{p}-{i}") for i in range(20)), partition=p)
    assert [(p, o) for p, o, _ in all_rows(run_available_now(spark, broker, topic, checkpoint))] == [
        (p, o) for p in (0, 1) for o in range(50, 70)]

    # Deleting records not yet processed: the query fails, naming them, or warns and goes on.
    for p in (0, 1):
        produce_events(broker, topic, (make_event(i, event_id=f"c{p}-{i}") for i in range(30)), partition=p)
    delete_before(broker, topic, 0, 85)
    with pytest.raises(Exception, match=r"Partition 0 of topic .*offsets 70\.\.84 expired or were deleted") as failure:
        run_available_now(spark, broker, topic, checkpoint)
    assert "failOnDataLoss=false" in str(failure.value)

    with caplog.at_level(logging.WARNING, logger="incident_stream.kafka_source"):
        end = reader(broker, topic, failOnDataLoss="false").latestOffset(
            SourceOffset(topic, None, {0: 70, 1: 70}).to_json(), ReadAllAvailable())
    assert end["from"] == {"0": 85}
    assert any("offsets 70..84" in r.message and "failOnDataLoss=false" in r.message for r in caplog.records)

    resumed = run_available_now(spark, broker, topic, checkpoint, failOnDataLoss="false")
    assert [(p, o) for p, o, _ in all_rows(resumed)] == [(0, o) for o in range(85, 100)] + [
        (1, o) for o in range(70, 100)]


def test_a_range_starting_below_the_log_start_offset(broker: str, topic: str) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(40)), partition=0)
    delete_before(broker, topic, 0, 25)
    assert offset_range(broker, topic)[0] == (25, 40)
    # A batch planned before the deletion (or replayed from the checkpoint) starts at offset 10.
    with pytest.raises(DataLossError, match=r"offset 10 is no longer available.*were deleted"):
        offsets_read(reader(broker, topic), 0, 10, 35)
    assert offsets_read(reader(broker, topic, failOnDataLoss="false"), 0, 10, 35) == list(range(25, 35))
