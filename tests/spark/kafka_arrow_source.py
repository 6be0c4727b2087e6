"""A Kafka source for tests: ``kafka_arrow``, the job's Kafka reading with a choice of output, and batch reads.

    register(spark)
    stream = (spark.readStream.format("kafka_arrow")
              .option("kafka.bootstrap.servers", "127.0.0.1:9092").option("subscribe", "logs.events")
              .option("format", "events").load())

It plans and reads offset ranges with the job's code (incident_stream.kafka_source, kafka_read) and adds,
for tests, the option ``format``: ``logevent`` (default: the decoded LogEvents, as the job's tasks get
them), ``raw`` (key, value, topic, partition, offset, timestamp, timestampType, like Spark's Kafka source)
or ``events`` (the records enriched as the job enriches them: the events table's columns, then
EVENTS_KEEP; option ``serviceCatalog`` as the ingest source's). ``spark.read`` reads everything from
startingOffsets up to the current end (KafkaBatchReader); :func:`with_batch_reads` gives a job source the
same.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
from pyspark import cloudpickle
from pyspark.sql.datasource import DataSourceReader, InputPartition
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import (
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from incident_contracts.tables import EVENTS as EVENTS_TABLE
from incident_stream.enrich_arrow import ServiceLookup, enrich_batch
from incident_stream.kafka_read import Range, ReadConfig, consume_range, is_event_batch, read_range
from incident_stream.kafka_source import (
    KafkaRangePartition,
    KafkaRangeSource,
    SourceOptionError,
    SourceOptions,
    TaskWork,
    logevent_arrow_schema,
    logevent_schema,
    read_partition,
    readable_ranges,
    replace_nullable,
)
from incident_stream.logs_source import service_lookup

SOURCE_NAME = "kafka_arrow"
RAW, LOGEVENT, EVENTS = "raw", "logevent", "events"

RAW_SCHEMA = StructType([
    StructField("key", BinaryType()), StructField("value", BinaryType()), StructField("topic", StringType()),
    StructField("partition", IntegerType()), StructField("offset", LongType()),
    StructField("timestamp", TimestampType()), StructField("timestampType", IntegerType()),
])


# Source columns the events format keeps beside the events table's, for the dead letters.
EVENTS_KEEP = ("kafka_timestamp", "key", "raw_value", "value_size", "reject_reason", "reject_detail")


def events_schema() -> StructType:
    """The events table's columns (incident_contracts.tables.EVENTS), then EVENTS_KEEP; all nullable."""
    fields = {f.name: f for f in logevent_schema().fields}
    table = [replace_nullable(f) for f in from_arrow_schema(EVENTS_TABLE, prefer_timestamp_ntz=False).fields]
    return StructType(table + [fields[name] for name in EVENTS_KEEP])


def schema_of(mode: str) -> StructType:
    return {RAW: RAW_SCHEMA, EVENTS: events_schema()}.get(mode) or logevent_schema()


def read_task(config: ReadConfig, rng: Range, schema: pa.Schema, mode: str = LOGEVENT,
              services: ServiceLookup | None = None) -> Iterator[pa.RecordBatch]:
    """The Arrow batches of one task in the source's output `schema`, in format `mode`."""
    if mode == RAW:
        for chunk in consume_range(config, rng):
            yield raw_batch(chunk, config.topic, schema)
        return
    if mode == LOGEVENT:
        yield from read_range(config, rng, schema)
        return
    for batch in read_range(config, rng, logevent_arrow_schema()):
        if is_event_batch(batch):
            batch = enrich_batch(batch, services or ServiceLookup(), keep=EVENTS_KEEP)
        yield pa.RecordBatch.from_arrays([_column(batch, f) for f in schema], schema=schema)


def rows_of(schema: StructType, mode: str = LOGEVENT, services: ServiceLookup | None = None) -> TaskWork:
    """The tasks' work: the range's rows in `schema`, in format `mode`."""
    return functools.partial(read_task, schema=to_arrow_schema(schema, timezone="UTC"), mode=mode, services=services)


def _column(batch: pa.RecordBatch, target: pa.Field) -> pa.Array:
    if target.name not in batch.schema.names:
        return pa.nulls(batch.num_rows, target.type)
    column = batch.column(target.name)
    return column if column.type.equals(target.type) else column.cast(target.type)


def raw_batch(messages: list[Any], topic: str, schema: pa.Schema) -> pa.RecordBatch:
    """Spark-Kafka-like columns: key, value, topic, partition, offset, timestamp, timestampType."""
    stamps = [m.timestamp() for m in messages]
    n = len(messages)
    return pa.RecordBatch.from_arrays([
        pa.array([m.key() for m in messages], type=pa.binary()),
        pa.array([m.value() for m in messages], type=pa.binary()),
        pa.array([topic] * n, type=pa.string()),
        pa.array([m.partition() for m in messages], type=pa.int32()),
        pa.array([m.offset() for m in messages], type=pa.int64()),
        pa.array([s[1] * 1000 if s[0] else None for s in stamps], type=pa.int64()).cast(
            pa.timestamp("us", tz="UTC")),
        pa.array([s[0] for s in stamps], type=pa.int32()),
    ], schema=schema)


class KafkaBatchReader(DataSourceReader):
    """`spark.read.format("kafka_arrow")`: everything from startingOffsets up to the current end."""

    def __init__(self, options: SourceOptions, work: TaskWork):
        self.options = options
        self.work = work

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        yield from read_partition(self.options, self.work, partition)

    def partitions(self) -> Sequence[InputPartition]:
        ranges = readable_ranges(self.options.read)
        pick = 0 if self.options.starting == "earliest" else 1
        parts = [KafkaRangePartition(p, bounds[pick], bounds[1]) for p, bounds in sorted(ranges.items())
                 if bounds[1] > bounds[pick]]
        return parts or [KafkaRangePartition(0, 0, 0)]


def source_format(options: dict[str, str]) -> str:
    mode = {k.lower(): str(v) for k, v in options.items()}.get("format", LOGEVENT).strip().lower()
    if mode not in (RAW, LOGEVENT, EVENTS):
        raise SourceOptionError(f"format={mode!r}: expected {RAW!r}, {LOGEVENT!r} or {EVENTS!r}")
    return mode


class KafkaArrowSource(KafkaRangeSource):
    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> StructType:
        return schema_of(source_format(dict(self.options)))

    def reading(self, schema: StructType) -> tuple[SourceOptions, TaskWork]:
        options = dict(self.options)
        mode = source_format(options)
        services = None
        if mode == EVENTS:
            services = service_lookup({k.lower(): v for k, v in options.items()}.get("servicecatalog", ""))
        return SourceOptions.parse(options, SOURCE_NAME), rows_of(schema, mode, services)

    def reader(self, schema: StructType) -> DataSourceReader:
        return KafkaBatchReader(*self.reading(schema))


def with_batch_reads(source: type[KafkaRangeSource]) -> type[KafkaRangeSource]:
    """`source` under the name `<name>_batch`, also readable with spark.read (batch)."""

    class Batch(source):  # type: ignore[misc, valid-type]
        @classmethod
        def name(cls) -> str:
            return source.name() + "_batch"

        def reader(self, schema: StructType) -> DataSourceReader:
            return KafkaBatchReader(*self.reading(schema))

    return Batch


def register(spark: Any, *sources: type[KafkaRangeSource]) -> None:
    """Register kafka_arrow (and `sources`) on the session. This module is not importable in Spark's Python
    workers (it is not installed): its code travels with the pickled source."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    for source in (KafkaArrowSource, *sources):
        spark.dataSource.register(source)
