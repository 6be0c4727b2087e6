"""Table files a task writes: its events and dead letters as new Parquet files of the Delta tables.

A task of the job's source (logs_source.py) decodes and enriches its offset range and writes the events
and the rejected records with pyarrow's Parquet writer straight into the tables' folders (local or object
storage), under names unique to the task attempt (RangeFiles). The files' names and statistics go into
the task's manifest (batch_staging.py); the query's sink commits all files of the micro-batch in one
Delta commit per table (job.BatchSink, TableStore.commit_files). Until then no reader sees them; files of
a failed or replayed attempt are in no table version and are deleted by the sink, or by vacuum.

Why the task writes, rather than Spark's Parquet writer: a row that Spark writes crosses from the
Python task into the JVM as Arrow, is converted into Spark's row format and encoded again by parquet-mr;
measured, that was about 60 % of the job's CPU per event, while pyarrow's C++ writer does the same in
about a tenth of it (docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from incident_contracts.table_store import DataFile, TableStore, data_file
from incident_contracts.tables import DEAD_LETTER, DEAD_LETTER_PARTITIONS, EVENTS, EVENTS_PARTITIONS
from incident_stream.kafka_read import Range

EVENTS_TABLE, DEAD_LETTER_TABLE = "events", "dead_letter"

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


class RangeFiles:
    """The events and dead-letter files one task attempt writes for its offset range."""

    def __init__(self, tables: TableStore, rng: Range):
        attempt = f"part-p{rng.partition}o{rng.start}-{uuid.uuid4().hex}"
        filesystem, root = tables.filesystem()
        self.writers = {table.name: TableFiles(filesystem, f"{root}/{table.name}", attempt, table)
                        for table in (STAGED_EVENTS, STAGED_DEAD_LETTER)}

    def add_events(self, events: pa.RecordBatch) -> None:
        """Enriched events (the EVENTS columns)."""
        self.writers[EVENTS_TABLE].add(events)

    def add_dead_letters(self, rows: pa.RecordBatch) -> None:
        """Rejected records (the DEAD_LETTER columns)."""
        self.writers[DEAD_LETTER_TABLE].add(rows)

    def close(self) -> list[tuple[str, DataFile]]:
        """Finish every file: (table, DataFile) for each non-empty one."""
        return [(name, f) for name, writer in self.writers.items() for f in writer.close()]

    def remove(self) -> None:
        """Delete what the attempt wrote (it failed: nothing of it will be committed)."""
        for writer in self.writers.values():
            writer.remove()
