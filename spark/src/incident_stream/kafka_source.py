"""The Kafka side of the job's source, written with PySpark's Python Data Source API (no JVM connector).

:class:`KafkaRangeSource` plans offset ranges and reads them; a source built on it says what its tasks do
with their range (a :data:`TaskWork`) and which options it reads beside the Kafka ones, below. The job's
source is ``kafka_logs`` (logs_source.py: its tasks write the range as table files and hand detection
partial buckets); it is also told each batch's plan (:meth:`KafkaRangeSource.on_plan`).

Offsets per partition live in Spark's checkpoint (see offsets.py); each micro-batch reads one task per
partition range with ``assign()`` at explicit offsets, up to end offsets planned with
:func:`incident_contracts.kafka.offset_range` at the readers' isolation level. The tasks' consumers read
``read_committed`` (librdkafka's default), so a batch ends at the last stable offset: while a
transaction is open its records and everything after them wait for a later batch, instead of a task
waiting for records its consumer cannot get until the transaction ends. Offsets that hold no committed
record (transaction markers, aborted records, compacted records) are simply not rows. Every task decodes
its records as LogEvents (kafka_read.py): decoded events, and undecodable records as rows carrying
reject_reason/reject_detail/raw_value.

Kafka options (case-insensitive):

=========================  ================================================================================
kafka.bootstrap.servers    broker list (required)
subscribe                  the topic (required; one topic)
startingOffsets            ``earliest`` (default), ``latest``, or JSON ``{"<topic>": {"<partition>": offset}}``
                           (partitions not named start at the earliest), for a query without a checkpoint
maxOffsetsPerTrigger       most records per micro-batch (alias maxRecordsPerTrigger); spread over partitions
failOnDataLoss             ``true`` (default): fail when records are gone or the topic was recreated;
                           ``false``: warn and continue from the earliest available offset
commitGroup                consumer group to commit processed offsets to, so lag can be monitored (optional)
schemaRegistryUrl          Confluent Schema Registry, for Confluent-framed messages
maxMessageBytes            larger values are rejected as too_large (default 1000000)
maxEventAgeSeconds         events older than this vs. their Kafka timestamp are rejected (0 = off)
maxFutureSeconds           events dated further ahead are rejected (0 = off)
arrowBatchSize             records per Arrow batch a task reads (default 25000)
pollTimeoutSeconds         a task fails when the broker sends nothing for this long (default 60)
kafka.*                    any other librdkafka consumer setting, e.g. kafka.security.protocol;
                           kafka.isolation.level=read_uncommitted reads (and plans up to the high
                           watermark) records of open and aborted transactions too
=========================  ================================================================================
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import (
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from incident_contracts.avro_schemas import latest
from incident_contracts.fast_decode import arrow_schema as decoded_arrow_schema
from incident_contracts.kafka import QUIET, READ_COMMITTED, READ_UNCOMMITTED, TopicMissing, admin_client, offset_range
from incident_stream.event_checks import TimeBounds
from incident_stream.kafka_read import Range, ReadConfig
from incident_stream.offsets import SourceOffset, TopicState, plan_batch

log = logging.getLogger("incident_stream.kafka_source")

KAFKA_COLUMNS = [StructField("topic", StringType()), StructField("kafka_partition", IntegerType()),
                 StructField("kafka_offset", LongType()), StructField("kafka_timestamp", TimestampType())]
# Derived in the task: the message's signature and its id (signature.py; null for rejected records),
# and when the task read the record (the job's ingest time: a column rather than current_timestamp(),
# whose value Spark writes into the generated code, so that every micro-batch compiled new code).
DERIVED_COLUMNS = [StructField("signature", StringType()), StructField("signature_id", StringType()),
                   StructField("read_time", TimestampType())]
REJECT_COLUMNS = [StructField("reject_reason", StringType()), StructField("reject_detail", StringType()),
                  StructField("key", BinaryType()), StructField("raw_value", BinaryType()),
                  StructField("value_size", LongType())]


@functools.cache
def logevent_schema() -> StructType:
    """Kafka columns, the LogEvent fields (newest schema), the derived columns (signature, signature_id,
    read_time), then the reject columns; all nullable."""
    event_fields = [replace_nullable(f) for f in from_arrow_schema(decoded_arrow_schema(latest())).fields]
    return StructType(KAFKA_COLUMNS + event_fields + DERIVED_COLUMNS + REJECT_COLUMNS)


def replace_nullable(f: StructField) -> StructField:
    return StructField(f.name, f.dataType, True)


@functools.cache
def logevent_arrow_schema() -> pa.Schema:
    return to_arrow_schema(logevent_schema(), timezone="UTC")


# What a task does with its offset range: Arrow batches in its source's schema. Readers take it as a
# picklable callable, so each source only says what its tasks do and keeps the offsets, limits and
# failOnDataLoss of this module.
TaskWork = Callable[[ReadConfig, Range], Iterator[pa.RecordBatch]]
# Told on the driver, before a batch's tasks run, the batch's end offset (as the offset log records it)
# and its ranges.
PlanHook = Callable[[dict, list[Range]], None]


class SourceOptionError(ValueError):
    """An option of the Kafka source is missing or invalid."""


@dataclass(frozen=True)
class SourceOptions:
    read: ReadConfig
    starting: str = "earliest"
    starting_offsets: dict[int, int] = field(default_factory=dict)  # startingOffsets given as JSON
    max_records: int | None = None
    commit_group: str = ""
    source: str = "Kafka"  # the source's name, for messages

    @classmethod
    def parse(cls, options: dict[str, str], source: str = "Kafka") -> SourceOptions:
        """The Kafka options (see the module docstring) of the source named `source`; other options are
        the source's own."""
        opts = {k.lower(): str(v) for k, v in options.items()}

        def need(name: str) -> str:
            value = opts.get(name.lower(), "").strip()
            if not value:
                raise SourceOptionError(f"the {source} source needs the option {name!r}")
            return value

        def number(name: str, default: float, minimum: float = 0) -> float:
            raw = opts.get(name.lower())
            if raw is None or raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                raise SourceOptionError(f"option {name}={raw!r} is not a number") from None
            if value < minimum:
                raise SourceOptionError(f"option {name}={raw!r} must be at least {minimum:g}")
            return value

        def flag(name: str, default: bool) -> bool:
            raw = opts.get(name.lower(), str(default)).strip().lower()
            if raw not in ("true", "false"):
                raise SourceOptionError(f"option {name}={raw!r} must be true or false")
            return raw == "true"

        topic = need("subscribe")
        if "," in topic:
            raise SourceOptionError(f"subscribe={topic!r}: this source reads one topic per query")
        starting = opts.get("startingoffsets", "earliest").strip()
        starting_offsets = starting_offsets_of(starting, topic) if starting.startswith("{") else {}
        starting = "earliest" if starting_offsets else starting.lower()
        if starting not in ("earliest", "latest"):
            raise SourceOptionError(f"startingOffsets={starting!r}: expected 'earliest', 'latest' or JSON offsets")
        limit_raw = opts.get("maxoffsetspertrigger") or opts.get("maxrecordspertrigger")
        max_records = None
        if limit_raw:
            try:
                max_records = int(limit_raw)
            except ValueError:
                raise SourceOptionError(f"maxOffsetsPerTrigger={limit_raw!r} is not a whole number") from None
            if max_records < 1:
                raise SourceOptionError(f"maxOffsetsPerTrigger={limit_raw!r} must be at least 1")
        age = number("maxEventAgeSeconds", 7 * 24 * 3600)
        future = number("maxFutureSeconds", 900)
        consumer_config = {k[len("kafka."):]: v for k, v in opts.items()
                           if k.startswith("kafka.") and k != "kafka.bootstrap.servers"}
        isolation = consumer_config.get("isolation.level", READ_COMMITTED).strip().lower()
        if isolation not in (READ_COMMITTED, READ_UNCOMMITTED):
            raise SourceOptionError(f"kafka.isolation.level={isolation!r}: expected {READ_COMMITTED!r} or "
                                    f"{READ_UNCOMMITTED!r}")
        read = ReadConfig(
            bootstrap=need("kafka.bootstrap.servers"), topic=topic,
            schema_registry_url=opts.get("schemaregistryurl", ""),
            max_message_bytes=int(number("maxMessageBytes", 1_000_000, 1)),
            arrow_batch_size=int(number("arrowBatchSize", 25_000, 1)),
            fail_on_data_loss=flag("failOnDataLoss", True),
            poll_timeout_s=number("pollTimeoutSeconds", 60, 1),
            bounds=TimeBounds(int(age * 1000) if age > 0 else None, int(future * 1000) if future > 0 else None),
            consumer_config=consumer_config,
        )
        return cls(read=read, starting=starting, starting_offsets=starting_offsets, max_records=max_records,
                   commit_group=opts.get("commitgroup", "").strip(), source=source)


def starting_offsets_of(raw: str, topic: str) -> dict[int, int]:
    """{partition: offset} of startingOffsets given as JSON {"<topic>": {"<partition>": offset}}."""
    try:
        given = json.loads(raw)[topic]
        return {int(p): int(o) for p, o in given.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SourceOptionError(f"startingOffsets={raw!r}: expected JSON {{{topic!r}: {{\"<partition>\": "
                                "<offset>, ...}}}") from None


def readable_ranges(config: ReadConfig) -> dict[int, tuple[int, int]]:
    """{partition: (earliest, end)} where end is as far as the tasks' consumers can read now: the last
    stable offset for read_committed, the high watermark for read_uncommitted."""
    return offset_range(config.bootstrap, config.topic, isolation=config.isolation_level)


class _Broker:
    """Driver-side view of the topic: readable offset ranges and the topic id."""

    def __init__(self, config: ReadConfig):
        self.config = config
        self._admin: AdminClient | None = None

    def state(self) -> TopicState:
        return TopicState(self._topic_id(), readable_ranges(self.config))

    def _topic_id(self) -> str | None:
        try:
            if self._admin is None:
                self._admin = admin_client(self.config.bootstrap)
            futures = self._admin.describe_topics(TopicCollection([self.config.topic]), request_timeout=10)
            description = futures[self.config.topic].result(timeout=10)
            return str(description.topic_id) if description.topic_id is not None else None
        except (KafkaException, KeyError, TimeoutError) as exc:  # an older broker: no topic ids
            log.debug("no topic id for %s: %s", self.config.topic, exc)
            return None


class KafkaRangePartition(InputPartition):
    """One Spark task: offsets [start, end) of one partition."""

    def __init__(self, partition: int, start: int, end: int):
        super().__init__((partition, start, end))
        self.partition, self.start, self.end = partition, start, end

    @property
    def range(self) -> Range:
        return Range(self.partition, self.start, self.end)


def read_partition(options: SourceOptions, work: TaskWork, partition: InputPartition) -> Iterator[pa.RecordBatch]:
    """A task of either reader: `work` over the partition's offset range."""
    assert isinstance(partition, KafkaRangePartition)
    yield from work(options.read, partition.range)


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    def __init__(self, options: SourceOptions, work: TaskWork, on_plan: PlanHook | None = None):
        self.options = options
        self.work = work
        self.on_plan = on_plan
        self._broker: _Broker | None = None
        self._latest: SourceOffset | None = None
        self._cap: dict[int, int] | None = None
        self._committer: Consumer | None = None
        self._published: dict[int, int] | None = None

    def __getstate__(self) -> dict[str, Any]:  # tasks get the options, never driver-side clients
        return {"options": self.options, "work": self.work}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["options"], state["work"])  # type: ignore[misc]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        yield from read_partition(self.options, self.work, partition)

    @property
    def broker(self) -> _Broker:
        if self._broker is None:
            self._broker = _Broker(self.options.read)
        return self._broker

    def _topic_state(self) -> TopicState:
        try:
            return self.broker.state()
        except TopicMissing as exc:
            raise TopicMissing(f"{exc}. The {self.options.source} source cannot plan a batch without it.") from None

    def initialOffset(self) -> dict:
        state = self._topic_state()
        pick = 0 if self.options.starting == "earliest" else 1
        offsets = {p: self.options.starting_offsets.get(p, bounds[pick]) for p, bounds in state.ranges.items()}
        return SourceOffset(self.options.read.topic, state.topic_id, offsets).to_json()

    def getDefaultReadLimit(self) -> ReadLimit:
        if self.options.max_records:
            return ReadMaxRows(self.options.max_records)
        return ReadAllAvailable()

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        begin = SourceOffset.from_json(start)
        # Spark plans a batch only once the previous one is committed: `start` has been processed.
        self._publish(begin)
        state = self._topic_state()
        max_records = limit.max_rows if isinstance(limit, ReadMaxRows) else None
        plan = plan_batch(begin, state, max_records, self.options.read.fail_on_data_loss, cap=self._cap)
        for warning in plan.warnings:
            log.warning(warning)
        self._latest = SourceOffset(begin.topic, state.topic_id,
                                    {p: high for p, (_, high) in state.ranges.items()})
        return plan.end.to_json()

    def reportLatestOffset(self) -> dict | None:
        return self._latest.to_json() if self._latest else None

    def prepareForTriggerAvailableNow(self) -> None:
        self._cap = {p: high for p, (_, high) in self._topic_state().ranges.items()}

    def partitions(self, start: dict, end: dict) -> Sequence[InputPartition]:
        planned = plan_partitions(SourceOffset.from_json(start), SourceOffset.from_json(end))
        if self.on_plan is not None:
            self.on_plan(end, [p.range for p in planned])
        return planned

    def commit(self, end: dict) -> None:
        """Spark has processed everything up to `end`: publish it to the consumer group (if any)."""
        self._publish(SourceOffset.from_json(end))

    def _publish(self, offset: SourceOffset) -> None:
        """Commit offsets to the consumer group, for lag monitoring only (Spark's checkpoint rules)."""
        if not self.options.commit_group or offset.offsets == self._published:
            return
        try:
            if self._committer is None:
                self._committer = Consumer({"bootstrap.servers": self.options.read.bootstrap, **QUIET,
                                            "group.id": self.options.commit_group, "enable.auto.commit": False})
            self._committer.commit(offsets=[TopicPartition(offset.topic, p, o) for p, o in offset.offsets.items()],
                                   asynchronous=False)
            self._published = dict(offset.offsets)
        except KafkaException as exc:
            log.warning("could not commit offsets %s to consumer group %s: %s", json.dumps(offset.to_json()),
                        self.options.commit_group, exc)

    def stop(self) -> None:
        """The query stopped: close the consumer-group committer and let the admin client go (confluent-kafka's
        AdminClient has no close(); it is destroyed with its last reference)."""
        if self._committer is not None:
            with contextlib.suppress(KafkaException, RuntimeError):
                self._committer.close()
            self._committer = None
        self._broker = None


def plan_partitions(start: SourceOffset, end: SourceOffset) -> list[KafkaRangePartition]:
    """One task per partition with records between the two offsets."""
    partitions = []
    for p, stop in sorted(end.offsets.items()):
        begin = end.start_of(start, p)
        if begin is not None and stop > begin:
            partitions.append(KafkaRangePartition(p, begin, stop))
    return partitions


class KafkaRangeSource(DataSource):
    """A Kafka source: options, offset planning and the streaming reader. A source built on it names
    itself, gives its schema and says, in :meth:`reading`, which options it reads and what its tasks do."""

    def reading(self, schema: StructType) -> tuple[SourceOptions, TaskWork]:
        """The reader's options and its tasks' work."""
        raise NotImplementedError

    def on_plan(self) -> PlanHook | None:
        """What to tell of each batch's plan on the driver (nothing by default)."""
        return None

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return KafkaStreamReader(*self.reading(schema), on_plan=self.on_plan())
