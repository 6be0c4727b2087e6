"""Reading one planned offset range of one partition into Arrow record batches (runs in Spark tasks).

Consumers are created lazily inside the Python worker and kept per process (workers are reused
between tasks), never pickled with the reader. A worker keeps one, for the read configuration it
served last (the one before is closed). They do not log through librdkafka: a read reports what goes
wrong as its own error, and a worker that outlives its broker (a test's) prints nothing. Each read
``assign()``s the partition at the planned start offset and stops at the planned end offset: no
consumer-group rebalancing, no ListOffsets.

Offsets are not all records. With ``read_committed`` (the default) the consumer skips transaction
markers and records of aborted transactions; compaction removes records. A range may therefore end in
offsets that deliver nothing: the read stops once the consumer's position has passed the range's end.
The planned end never lies beyond the last stable offset (see kafka_source.py), so a read never waits
for a transaction to end.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from incident_contracts.codec import decoding_codec
from incident_contracts.fast_decode import FastDecoder
from incident_contracts.kafka import QUIET, READ_COMMITTED
from incident_contracts.tables import DEAD_LETTER_MAX_RAW_BYTES
from incident_stream.event_checks import TimeBounds, check_events
from incident_stream.offsets import DataLossError
from incident_stream.signature import mask_array, signature_ids

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ReadConfig:
    """Everything a task needs to read a range; picklable (no clients inside)."""

    bootstrap: str
    topic: str
    schema_registry_url: str = ""
    max_message_bytes: int = 1_000_000
    arrow_batch_size: int = 25_000
    fail_on_data_loss: bool = True
    poll_timeout_s: float = 60.0
    bounds: TimeBounds = field(default_factory=TimeBounds)
    consumer_config: dict[str, str] = field(default_factory=dict)

    @property
    def isolation_level(self) -> str:
        """What the task's consumers read: librdkafka's default ``read_committed`` unless configured."""
        return self.consumer_config.get("isolation.level", READ_COMMITTED).strip().lower()


@dataclass(frozen=True)
class Range:
    partition: int
    start: int
    end: int


_consumers: dict[tuple, Consumer] = {}
_decoders: dict[tuple, FastDecoder] = {}


def _consumer(config: ReadConfig) -> Consumer:
    key = (config.bootstrap, config.fail_on_data_loss, tuple(sorted(config.consumer_config.items())))
    consumer = _consumers.get(key)
    if consumer is None:
        close_consumers()
        consumer = Consumer({
            "bootstrap.servers": config.bootstrap,
            "group.id": f"incident-stream-reader-{uuid.uuid4().hex[:8]}",  # never commits; assign() only
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error" if config.fail_on_data_loss else "earliest",
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": 16 << 20,
            "queued.max.messages.kbytes": 64 << 10,
            "fetch.wait.max.ms": 100,
            "socket.connection.setup.timeout.ms": 10_000,
            **QUIET,
            **config.consumer_config,
        })
        _consumers[key] = consumer
    return consumer


def close_consumers() -> None:
    """Close the consumers this process keeps."""
    while _consumers:
        _, consumer = _consumers.popitem()
        with contextlib.suppress(KafkaException, RuntimeError):
            consumer.close()


def _drop_consumer(config: ReadConfig) -> None:
    key = (config.bootstrap, config.fail_on_data_loss, tuple(sorted(config.consumer_config.items())))
    consumer = _consumers.pop(key, None)
    if consumer is not None:
        with contextlib.suppress(KafkaException, RuntimeError):
            consumer.close()


def _decoder(config: ReadConfig) -> FastDecoder:
    key = (config.schema_registry_url, config.max_message_bytes)
    if key not in _decoders:
        codec = decoding_codec(config.schema_registry_url)
        codec.max_message_bytes = config.max_message_bytes
        _decoders[key] = FastDecoder(codec)
    return _decoders[key]


def consume_range(config: ReadConfig, rng: Range) -> Iterator[list[Any]]:
    """Messages of [start, end) of one partition, in chunks of at most arrow_batch_size."""
    if rng.end <= rng.start:
        return
    consumer = _consumer(config)
    tp = TopicPartition(config.topic, rng.partition, rng.start)
    try:
        consumer.assign([tp])
        chunk: list[Any] = []
        last = rng.start - 1
        deadline = time.monotonic() + config.poll_timeout_s
        while last < rng.end - 1:
            # consume() returns once it has num_messages or the timeout passed: never ask for more than
            # the range still holds, or a small range (a live micro-batch) waits out the whole timeout.
            wanted = max(1, min(config.arrow_batch_size - len(chunk), rng.end - 1 - last))
            messages = consumer.consume(num_messages=wanted, timeout=0.5)
            if not messages:
                position = consumer.position([TopicPartition(config.topic, rng.partition)])[0].offset
                if position >= rng.end:  # the rest of the range: markers, aborted or compacted records
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"partition {rng.partition} of {config.topic!r}: no records from offset {last + 1} "
                        f"within {config.poll_timeout_s:.0f}s though the batch was planned up to {rng.end}; "
                        f"is the broker at {config.bootstrap} reachable and healthy?")
                continue
            deadline = time.monotonic() + config.poll_timeout_s
            for message in messages:
                error = message.error()
                if error is not None:
                    _raise_for(error, config, rng)
                    continue
                offset = message.offset()
                if offset >= rng.end:
                    last = offset
                    break
                if offset <= last:
                    continue  # a record re-delivered after a retry
                last = offset
                chunk.append(message)
                if len(chunk) >= config.arrow_batch_size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk
        consumer.unassign()  # stop prefetching until the next task assigns a range
    except BaseException:
        _drop_consumer(config)  # leave no half-read state behind for the next task in this worker
        raise


def _raise_for(error: KafkaError, config: ReadConfig, rng: Range) -> None:
    if error.code() == KafkaError._PARTITION_EOF:
        return
    if error.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
        raise DataLossError(
            f"Partition {rng.partition} of {config.topic!r}: offset {rng.start} is no longer available "
            f"({error.str()}); the records expired, were deleted (delete-records) or the topic was recreated. "
            "Records were lost. Set failOnDataLoss=false (STREAM_FAIL_ON_DATA_LOSS=false) to continue from "
            "the earliest available offset, or start over with a fresh checkpoint folder.")
    if error.fatal() or not error.retriable():
        raise KafkaException(error)
    log.warning("transient Kafka error on partition %s: %s", rng.partition, error.str())


# --- Arrow conversion ------------------------------------------------------------------------------

def logevent_batches(messages: list[Any], config: ReadConfig, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Decoded events (reject columns null), then the rejected records (event columns null)."""
    values = [m.value() for m in messages]
    offsets = np.fromiter((m.offset() for m in messages), dtype=np.int64, count=len(messages))
    kafka_ms = np.fromiter((m.timestamp()[1] for m in messages), dtype=np.int64, count=len(messages))
    partition = messages[0].partition()
    result = _decoder(config).decode(values)
    rejected = list(result.failures)
    events = result.batch
    ok = result.ok
    problems = check_events(events, kafka_ms[ok], config.bounds)
    if problems:
        bad_rows = np.array([row for row, _, _ in problems], dtype=np.int64)
        rejected += [(int(ok[row]), reason, detail) for row, reason, detail in problems]
        keep = np.ones(len(ok), dtype=bool)
        keep[bad_rows] = False
        events = events.filter(pa.array(keep))
        ok = ok[keep]
    read_us = time.time_ns() // 1000
    if events.num_rows:
        signatures = mask_array(events.column("message"))
        derived = {"signature": signatures, "signature_id": signature_ids(signatures)}
        yield _assemble(schema, config.topic, partition, offsets[ok], kafka_ms[ok], read_us, events=events,
                        derived=derived)
    if rejected:
        rejected.sort()
        index = np.array([i for i, _, _ in rejected], dtype=np.int64)
        raw = [values[i] for i in index.tolist()]
        yield _assemble(schema, config.topic, partition, offsets[index], kafka_ms[index], read_us, rejects=(
            [reason for _, reason, _ in rejected], [detail for _, _, detail in rejected],
            [messages[i].key() for i in index.tolist()],
            [v[:DEAD_LETTER_MAX_RAW_BYTES] if v is not None else None for v in raw],
            [len(v) if v is not None else 0 for v in raw]))


def _assemble(schema: pa.Schema, topic: str, partition: int, offsets: np.ndarray, kafka_ms: np.ndarray,
              read_us: int, events: pa.RecordBatch | None = None, rejects: tuple | None = None,
              derived: dict[str, pa.Array] | None = None) -> pa.RecordBatch:
    n = len(offsets)
    stamps = pa.array(kafka_ms * 1000, mask=kafka_ms < 0, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    given = {
        "read_time": pa.array(np.full(n, read_us, dtype=np.int64)).cast(pa.timestamp("us", tz="UTC")),
        "topic": pa.array([topic] * n, type=pa.string()) if n else pa.array([], type=pa.string()),
        "kafka_partition": pa.array(np.full(n, partition, dtype=np.int32)),
        "kafka_offset": pa.array(offsets),
        "kafka_timestamp": stamps,
    }
    given.update(derived or {})
    if rejects is not None:
        reasons, details, keys, raw, sizes = rejects
        given.update(reject_reason=pa.array(reasons, type=pa.string()),
                     reject_detail=pa.array(details, type=pa.string()),
                     key=pa.array(keys, type=pa.binary()), raw_value=pa.array(raw, type=pa.binary()),
                     value_size=pa.array(sizes, type=pa.int64()))
    columns = []
    for target in schema:
        if target.name in given:
            column = given[target.name]
        elif events is not None and target.name in events.schema.names:
            column = events.column(target.name)
        else:
            column = pa.nulls(n, type=target.type)
        columns.append(column if column.type.equals(target.type) else column.cast(target.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def is_event_batch(batch: pa.RecordBatch) -> bool:
    """Whether a logevent batch holds events: logevent_batches never mixes events and rejected records."""
    return batch.column("reject_reason").null_count == batch.num_rows


def read_range(config: ReadConfig, rng: Range, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The decoded LogEvents of one planned range (logevent_batches), in `schema`."""
    for chunk in consume_range(config, rng):
        yield from logevent_batches(chunk, config, schema)
