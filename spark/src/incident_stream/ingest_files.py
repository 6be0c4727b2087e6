"""The ingest query's source: its tasks write their offset range as new files of the events and dead_letter tables.

    spark.dataSource.register(IngestFilesSource)
    files = (spark.readStream.format("kafka_ingest_files")
             .options(**kafka_options, tablesRoot="/data", serviceCatalog=...).load())

Options beside the Kafka ones (kafka_source.py): ``tablesRoot`` (required: the tables' root, DATA_DIR),
``tablesStorage`` (JSON of object-store options without credentials) and ``serviceCatalog`` (JSON
{"tiers": {service: tier}, "owners": {service: owner}} for the enrichment; default: the service catalog
file, CATALOG_FILE). Each task reads its offset range (kafka_source.py: offsets, limits,
failOnDataLoss), decodes and enriches it (enrich_arrow.py), and writes the events and
the rejected records with pyarrow's Parquet writer straight into the Delta tables' folders (local or
object storage), under names unique to the task attempt. Spark receives one row per file
(FILES_SCHEMA: path, size, rows, statistics); the query's sink commits all files of the micro-batch in
one Delta commit per table (job.IngestSink, TableStore.commit_files). Until then no reader sees them;
files of a failed or replayed attempt are in no table version and are removed by vacuum.

Why the task writes, rather than Spark's Parquet writer: a row that Spark writes crosses from the
Python task into the JVM as Arrow, is converted into Spark's row format and encoded again by parquet-mr;
measured, that was about 60 % of the job's CPU per event, while pyarrow's C++ writer does the same in
about a tenth of it (docs/decisions.md).

A consequence: Spark's progress counts files, not records, for this query; the sink reports the records
to the metrics recorder (metrics.py), which reports those instead.
"""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from incident_contracts.catalog import CatalogError, default_catalog
from incident_contracts.table_store import DataFile, TableStore, data_file, partition_values
from incident_contracts.tables import DEAD_LETTER, DEAD_LETTER_PARTITIONS, EVENTS, EVENTS_PARTITIONS
from incident_stream.dead_letter import dead_letter_batch
from incident_stream.enrich_arrow import ServiceLookup, enrich_batch
from incident_stream.kafka_read import Range, ReadConfig, is_event_batch, read_range
from incident_stream.kafka_source import (
    KafkaRangeSource,
    SourceOptionError,
    SourceOptions,
    TaskWork,
    logevent_arrow_schema,
)

INGEST_SOURCE_NAME = "kafka_ingest_files"
TABLES_OPTION = "tablesRoot"
SERVICES_OPTION = "serviceCatalog"
# Object-store options without credentials (executors take those from their environment, AWS_*).
STORAGE_OPTION = "tablesStorage"
EVENTS_TABLE, DEAD_LETTER_TABLE = "events", "dead_letter"

FILES_ARROW_SCHEMA = pa.schema([
    pa.field("table", pa.string(), False),  # events or dead_letter
    pa.field("path", pa.string(), False),  # the file, relative to the table (partition folders included)
    pa.field("size", pa.int64(), False),
    pa.field("rows", pa.int64(), False),
    pa.field("stats", pa.string(), False),  # Delta statistics (min/max/null count by column), JSON
])
FILES_SCHEMA = from_arrow_schema(FILES_ARROW_SCHEMA)

# Rows per Parquet row group: a task buffers this many per file before writing them.
ROW_GROUP_ROWS = 131_072
# Files a task keeps open (a backlog range may span many hours); the least recently used is closed.
MAX_OPEN_FILES = 8
# Rows a task buffers over all its open files of a table: beyond it, the fullest buffer is written as a
# smaller row group (rows interleaved over many hours must not hold MAX_OPEN_FILES row groups in memory).
MAX_BUFFERED_ROWS = 2 * ROW_GROUP_ROWS
# Columns whose values are (nearly) unique per event: a dictionary for them is built, outgrows its page
# and is dropped, which costs the writer time for nothing.
NO_DICTIONARY = ("event_id", "trace_id", "span_id", "message", "http_path", "latency_ms", "event_time",
                 "kafka_offset", "raw_value", "key")


@dataclass(frozen=True)
class StagedTable:
    """How a task writes one table: its name, the file schema and the partition columns."""

    name: str
    schema: pa.Schema  # the table's columns (all nullable, as Spark writes them) without the partition ones
    partitions: tuple[str, ...]

    @classmethod
    def of(cls, name: str, table: pa.Schema, partitions: Sequence[str]) -> StagedTable:
        fields = [field.with_nullable(True) for field in table if field.name not in partitions]
        return cls(name, pa.schema(fields), tuple(partitions))


STAGED_EVENTS = StagedTable.of(EVENTS_TABLE, EVENTS, EVENTS_PARTITIONS)
STAGED_DEAD_LETTER = StagedTable.of(DEAD_LETTER_TABLE, DEAD_LETTER, DEAD_LETTER_PARTITIONS)


def partition_folder(partitions: Sequence[str], values: Sequence[object]) -> str:
    """Hive-style folder of one partition value, as Spark names it (``event_date=2026-12-06/event_hour=5``)."""
    return "/".join(f"{name}={value}" for name, value in zip(partitions, values, strict=True))


def split_by_partition(batch: pa.RecordBatch, partitions: Sequence[str]) -> Iterator[tuple[str, pa.RecordBatch]]:
    """(partition folder, rows of the batch in it) for every partition value in the batch."""
    if batch.num_rows == 0:
        return
    keys = [batch.column(name) for name in partitions]
    if all(pc.count_distinct(key).as_py() == 1 for key in keys):  # a live batch: one hour, nearly always
        yield partition_folder(partitions, [key[0].as_py() for key in keys]), batch
        return
    text = [key if pa.types.is_string(key.type) else key.cast(pa.string()) for key in keys]
    joined = pc.binary_join_element_wise(*text, "\x00") if len(text) > 1 else text[0]
    encoded = pc.dictionary_encode(joined)
    for index, value in enumerate(encoded.dictionary.to_pylist()):
        rows = batch.filter(pc.equal(encoded.indices, index))
        yield partition_folder(partitions, value.split("\x00")), rows


class TableFiles:
    """The Parquet files one task attempt writes into one table's folder: one open file per partition folder.
    Their names carry the attempt's unique prefix; they are part of the table only once committed."""

    def __init__(self, filesystem: pafs.FileSystem, table_dir: str, prefix: str, table: StagedTable):
        self.filesystem = filesystem
        self.table_dir = table_dir
        self.prefix = prefix
        self.table = table
        self._open: OrderedDict[str, _OpenFile] = OrderedDict()
        self._done: list[DataFile] = []
        self._counts: dict[str, int] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        """Rows with the table's columns (partition columns included, any order)."""
        for folder, rows in split_by_partition(batch, self.table.partitions):
            self._file(folder).add(_conform(rows, self.table.schema))
        while sum(file.buffered for file in self._open.values()) > MAX_BUFFERED_ROWS:
            max(self._open.values(), key=lambda file: file.buffered).flush()

    def _file(self, folder: str) -> _OpenFile:
        file = self._open.get(folder)
        if file is None:
            if len(self._open) >= MAX_OPEN_FILES:
                self._finish(self._open.popitem(last=False)[1])
            seq = self._counts.get(folder, 0)
            self._counts[folder] = seq + 1
            relative = f"{folder}/{self.prefix}-{seq:04d}.zstd.parquet" if folder else \
                f"{self.prefix}-{seq:04d}.zstd.parquet"
            file = _OpenFile(self.filesystem, self.table_dir, relative, self.table.schema)
            self._open[folder] = file
        else:
            self._open.move_to_end(folder)
        return file

    def _finish(self, file: _OpenFile) -> None:
        done = file.close()
        if done is not None:
            self._done.append(done)

    def close(self) -> list[DataFile]:
        """Finish every file; a DataFile (path, size, rows, statistics) for each non-empty one."""
        while self._open:
            self._finish(self._open.popitem(last=False)[1])
        return [entry for entry in self._done if entry.rows > 0]

    def remove(self) -> None:
        """Delete what this attempt wrote (it failed: nothing of it will be committed)."""
        for file in [*self._open.values()]:
            file.abort()
        for entry in self._done:
            with contextlib.suppress(OSError):
                self.filesystem.delete_file(f"{self.table_dir}/{entry.path}")


class _OpenFile:
    def __init__(self, filesystem: pafs.FileSystem, table_dir: str, relative: str, schema: pa.Schema):
        self.filesystem = filesystem
        self.full_path = f"{table_dir}/{relative}"
        self.relative = relative
        self.schema = schema
        self.rows = 0
        self._buffer: list[pa.RecordBatch] = []
        self.buffered = 0
        self._writer: pq.ParquetWriter | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        self._buffer.append(batch)
        self.buffered += batch.num_rows
        if self.buffered >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one row group."""
        if not self.buffered:
            return
        if self._writer is None:
            if isinstance(self.filesystem, pafs.LocalFileSystem):
                self.filesystem.create_dir(self.full_path.rsplit("/", 1)[0], recursive=True)
            self._writer = pq.ParquetWriter(
                self.full_path, self.schema, filesystem=self.filesystem, compression="zstd",
                use_dictionary=[name for name in self.schema.names if name not in NO_DICTIONARY])
        self._writer.write_table(pa.Table.from_batches(self._buffer, self.schema), row_group_size=self.buffered)
        self.rows += self.buffered
        self._buffer, self.buffered = [], 0

    def close(self) -> DataFile | None:
        self.flush()
        if self._writer is None:
            return None
        self._writer.close()
        size = self.filesystem.get_file_info(self.full_path).size
        return data_file(self.relative, size, self._writer.writer.metadata)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
                self.filesystem.delete_file(self.full_path)


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """The batch's columns of `schema`, in its order and types (timestamps to the table's microseconds)."""
    columns = []
    for field in schema:
        column = batch.column(field.name)
        columns.append(column if column.type.equals(field.type) else column.cast(field.type, safe=False))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def write_range_files(read: ReadConfig, rng: Range, tables: TableStore,
                      services: ServiceLookup) -> Iterator[pa.RecordBatch]:
    """Decode, enrich (with the services' tiers and owners) and write one offset range as new files of the
    events and dead_letter tables; one FILES_SCHEMA row per file. The files stay outside the tables until
    the sink commits them."""
    attempt = f"part-p{rng.partition}o{rng.start}-{uuid.uuid4().hex}"
    filesystem, root = tables.filesystem()
    writers = {table.name: TableFiles(filesystem, f"{root}/{table.name}", attempt, table)
               for table in (STAGED_EVENTS, STAGED_DEAD_LETTER)}
    try:
        for batch in read_range(read, rng, logevent_arrow_schema()):
            if not batch.num_rows:
                continue
            if is_event_batch(batch):
                writers[EVENTS_TABLE].add(enrich_batch(batch, services))
            else:
                writers[DEAD_LETTER_TABLE].add(dead_letter_batch(batch))
        files = [{"table": name, "path": f.path, "size": f.size, "rows": f.rows,
                  "stats": json.dumps(f.stats, default=str)}
                 for name, writer in writers.items() for f in writer.close()]
    except BaseException:
        for writer in writers.values():
            writer.remove()
        raise
    if files:
        yield pa.RecordBatch.from_pylist(files, schema=FILES_ARROW_SCHEMA)


def committed_file(row: Any) -> DataFile:
    """The DataFile of one FILES_SCHEMA row the sink received."""
    return DataFile(row.path, row.size, row.rows, partition_values(row.path), json.loads(row.stats))


def service_lookup(raw: str) -> ServiceLookup:
    """The serviceCatalog option: JSON of ServiceLookup.to_dict(); empty: the service catalog file."""
    if not raw.strip():
        try:
            return ServiceLookup.of(default_catalog())
        except CatalogError as exc:
            raise SourceOptionError(f"the {INGEST_SOURCE_NAME} source needs the service catalog: {exc}; pass the "
                                    f"option {SERVICES_OPTION} or point CATALOG_FILE at a valid catalog") from None
    try:
        return ServiceLookup.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceOptionError(f"option {SERVICES_OPTION}: expected JSON with 'tiers' and 'owners' ({exc})") from None


class IngestFilesSource(KafkaRangeSource):
    @classmethod
    def name(cls) -> str:
        return INGEST_SOURCE_NAME

    def schema(self) -> StructType:
        return FILES_SCHEMA

    def reading(self, schema: StructType) -> tuple[SourceOptions, TaskWork]:
        options = {k.lower(): v for k, v in dict(self.options).items()}
        root = options.get(TABLES_OPTION.lower(), "").strip()
        if not root:
            raise SourceOptionError(f"the {INGEST_SOURCE_NAME} source needs the option {TABLES_OPTION!r}: the "
                                    "tables' root (DATA_DIR), a folder every executor can write or s3://...")
        try:
            storage = json.loads(options.get(STORAGE_OPTION.lower(), "") or "{}")
        except ValueError as exc:
            raise SourceOptionError(f"the option {STORAGE_OPTION!r} must be a JSON object: {exc}") from None
        services = service_lookup(options.get(SERVICES_OPTION.lower(), ""))
        parsed = SourceOptions.parse(dict(self.options), INGEST_SOURCE_NAME)
        return parsed, functools.partial(write_range_files, tables=TableStore(root, storage), services=services)
