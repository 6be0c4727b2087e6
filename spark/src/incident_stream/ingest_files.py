"""The ingest query's source: its tasks write their offset range as staged Parquet files of the tables.

    spark.dataSource.register(IngestFilesSource)
    files = (spark.readStream.format("kafka_ingest_files")
             .options(**kafka_source_options, stagingDir="/data/_staging/ingest-ab12cd34",
                      serviceCatalog=...).load())

Each task reads its offset range like the ``kafka_arrow`` source (same options, offsets, limits,
failOnDataLoss; kafka_source.py), decodes and enriches it as the source's ``events`` format does
(enrich_arrow.py), and writes the events and the rejected records with pyarrow's Parquet writer, into
``<stagingDir>/<table>/<task folder>/<partition folder>/part-NNNN.parquet``. Spark receives one row per
file (FILES_SCHEMA); the query's sink moves the files into the tables with sinks.publish_files, exactly
once per micro-batch. Nothing is visible to readers before that step. A batch read (``spark.read``)
stages files the same way and leaves publishing them to the caller.

Why the task writes, rather than Spark's Parquet writer: a row that Spark writes crosses from the
Python task into the JVM as Arrow, is converted into Spark's row format and encoded again by parquet-mr;
measured, that was about 60 % of the job's CPU per event, while pyarrow's C++ writer does the same in
about a tenth of it (docs/decisions.md). The task folder carries a unique suffix per attempt, so a task
retried by Spark never mixes its files with those of a failed attempt; only the files a successful
attempt lists reach the sink, leftovers are removed when the job starts (sinks.clear_staging).

A consequence: Spark's progress counts files, not records, for this query; the sink reports the records
to the metrics recorder (metrics.py), which reports those instead.
"""

from __future__ import annotations

import functools
import shutil
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from incident_contracts.tables import DEAD_LETTER, DEAD_LETTER_PARTITIONS, EVENTS, EVENTS_PARTITIONS
from incident_stream.dead_letter import dead_letter_batch
from incident_stream.enrich_arrow import enrich_batch
from incident_stream.kafka_read import EVENTS as EVENTS_FORMAT
from incident_stream.kafka_read import Range, ReadConfig, is_event_batch, read_range
from incident_stream.kafka_source import (
    KafkaArrowSource,
    SourceOptionError,
    SourceOptions,
    TaskWork,
    logevent_arrow_schema,
)

INGEST_SOURCE_NAME = "kafka_ingest_files"
STAGING_OPTION = "stagingDir"
EVENTS_TABLE, DEAD_LETTER_TABLE = "events", "dead_letter"

FILES_ARROW_SCHEMA = pa.schema([
    pa.field("table", pa.string(), False),  # events or dead_letter
    pa.field("folder", pa.string(), False),  # partition folder inside the table, e.g. event_date=…/event_hour=5
    pa.field("path", pa.string(), False),  # the staged file
    pa.field("task_dir", pa.string(), False),  # the task attempt's folder (removed once published)
    pa.field("rows", pa.int64(), False),
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
    """The Parquet files one task writes for one table: one open file per partition folder."""

    def __init__(self, root: Path, table: StagedTable):
        self.root = root
        self.table = table
        self._open: OrderedDict[str, _OpenFile] = OrderedDict()
        self._done: list[tuple[str, Path, int]] = []
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
                self._finish(*self._open.popitem(last=False))
            seq = self._counts.get(folder, 0)
            self._counts[folder] = seq + 1
            file = _OpenFile(self.root / folder / f"part-{seq:04d}.parquet", self.table.schema)
            self._open[folder] = file
        else:
            self._open.move_to_end(folder)
        return file

    def _finish(self, folder: str, file: _OpenFile) -> None:
        rows = file.close()
        self._done.append((folder, file.path, rows))

    def close(self) -> list[tuple[str, Path, int]]:
        """Finish every file; (partition folder, path, rows) of each."""
        while self._open:
            self._finish(*self._open.popitem(last=False))
        return [entry for entry in self._done if entry[2] > 0]


class _OpenFile:
    def __init__(self, path: Path, schema: pa.Schema):
        self.path = path
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
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(
                self.path, self.schema, compression="zstd",
                use_dictionary=[name for name in self.schema.names if name not in NO_DICTIONARY])
        self._writer.write_table(pa.Table.from_batches(self._buffer, self.schema), row_group_size=self.buffered)
        self.rows += self.buffered
        self._buffer, self.buffered = [], 0

    def close(self) -> int:
        self.flush()
        if self._writer is not None:
            self._writer.close()
        return self.rows


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """The batch's columns of `schema`, in its order and types (timestamps cut to the table's milliseconds)."""
    columns = []
    for field in schema:
        column = batch.column(field.name)
        columns.append(column if column.type.equals(field.type) else column.cast(field.type, safe=False))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def write_range_files(read: ReadConfig, rng: Range, stage_dir: str) -> Iterator[pa.RecordBatch]:
    """Decode, enrich and write one offset range as staged Parquet files; one FILES_SCHEMA row per file."""
    attempt = f"p{rng.partition}-o{rng.start}-{rng.end}-{uuid.uuid4().hex[:8]}"
    tables = (STAGED_EVENTS, STAGED_DEAD_LETTER)
    task_dirs = {table.name: Path(stage_dir) / table.name / attempt for table in tables}
    writers = {table.name: TableFiles(task_dirs[table.name], table) for table in tables}
    try:
        for batch in read_range(read, rng, logevent_arrow_schema()):
            if not batch.num_rows:
                continue
            if is_event_batch(batch):
                writers[EVENTS_TABLE].add(enrich_batch(batch, read.services))
            else:
                writers[DEAD_LETTER_TABLE].add(dead_letter_batch(batch))
        files = [{"table": name, "folder": folder, "path": str(path), "task_dir": str(task_dirs[name]),
                  "rows": count} for name, writer in writers.items() for folder, path, count in writer.close()]
    except BaseException:
        for folder in task_dirs.values():
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if files:
        yield pa.RecordBatch.from_pylist(files, schema=FILES_ARROW_SCHEMA)


class IngestFilesSource(KafkaArrowSource):
    @classmethod
    def name(cls) -> str:
        return INGEST_SOURCE_NAME

    def schema(self) -> StructType:
        return FILES_SCHEMA

    def reading(self, schema: StructType) -> tuple[SourceOptions, TaskWork]:
        options = dict(self.options)
        stage_dir = {k.lower(): v for k, v in options.items()}.get(STAGING_OPTION.lower(), "").strip()
        if not stage_dir:
            raise SourceOptionError(f"the {INGEST_SOURCE_NAME} source needs the option {STAGING_OPTION!r}: a "
                                    "folder on the same file system as the tables, which every executor can write")
        parsed = SourceOptions.parse({**options, "format": EVENTS_FORMAT})  # the events format's enrichment
        return parsed, functools.partial(write_range_files, stage_dir=stage_dir)
