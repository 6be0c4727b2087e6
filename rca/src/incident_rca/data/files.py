"""The data files of one committed version of a Delta Lake table, and how DuckDB reads some of them.

A table folder also holds files no version names: written by a task whose commit has not happened
(or never will), or replaced by a compaction and waiting for vacuum. Only the log knows which files
make a version, so the dashboard reads the add actions of a snapshot and never lists folders. The
partition values come from the log too, typed by the contract's schema, and so does each events file's
event_time range, which narrows the files a read of an incident's window opens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from deltalake import DeltaTable

FILE_COLUMN = "_file"  # the add action's path of the file a row came from
TIME_COLUMN = "event_time"  # events: the log's per-file min/max of it prune raw reads within an hour
_HOUR = timedelta(hours=1)
_STATS_SLACK = timedelta(milliseconds=1)
_FORMAT = ds.ParquetFileFormat()


@dataclass(frozen=True)
class SnapshotFile:
    """One data file of a table version, as its add action describes it."""

    key: str  # the add action's path, as written in the log (unique within a version)
    location: str  # where to open it with the table store's pyarrow file system
    size: int
    modified_ms: int
    partition: Mapping[str, Any]  # typed partition values from the log
    time_range: tuple[datetime, datetime] | None = None  # min and max event_time of its rows, if recorded

    @property
    def hour_partition(self) -> tuple[str, int] | None:
        """(event_date, event_hour) of an hourly partitioned file, else None."""
        date, hour = self.partition.get("event_date"), self.partition.get("event_hour")
        return None if date is None or hour is None else (str(date), int(hour))


def snapshot_files(dt: DeltaTable, base: str) -> dict[str, SnapshotFile]:
    """The files of the table's loaded version by key; ``base`` is the table's root in the pyarrow file
    system (paths in the log are URL-encoded and relative to it, or absolute URIs)."""
    actions = pa.table(dt.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return {}
    partition_columns = [c for c in actions.column_names if c.startswith("partition.")]
    time_columns = [f"min.{TIME_COLUMN}", f"max.{TIME_COLUMN}"]
    timed = all(name in actions.column_names for name in time_columns)
    columns = {name: actions.column(name).to_pylist() for name in
               ("path", "size_bytes", "modification_time", *partition_columns, *(time_columns if timed else ()))}
    files: dict[str, SnapshotFile] = {}
    for i, key in enumerate(columns["path"]):
        partition = {name.removeprefix("partition."): columns[name][i] for name in partition_columns}
        low, high = (columns[name][i] for name in time_columns) if timed else (None, None)
        files[key] = SnapshotFile(key, _location(base, key), int(columns["size_bytes"][i]),
                                  int(columns["modification_time"][i]), partition,
                                  (low, high) if low is not None and high is not None else None)
    return files


def _location(base: str, key: str) -> str:
    path = unquote(key)
    if "://" in path:  # an absolute URI (e.g. a shallow clone's files): bucket/key or the local path
        return path.split("://", 1)[1] if not path.startswith("file://") else path.removeprefix("file://")
    return path if path.startswith("/") else f"{base}/{path}"


@dataclass(frozen=True)
class Scan:
    """How a DuckDB query reads some files of a table: ``sql`` is a FROM-able expression with the table's
    contract columns plus ``_file`` (the add action's path of each row's file); ``sources`` are the Arrow
    objects it reads, to register on the query's cursor, and ``params`` its parameters."""

    sql: str
    params: dict[str, Any]
    sources: dict[str, object]


def scan(files: Sequence[SnapshotFile], schema: pa.Schema, filesystem: pafs.FileSystem, name: str) -> Scan:
    """The files as one relation, partition values taken from the log.

    Local files are read by DuckDB's own Parquet reader (it reads the filter columns first and the others
    only for matching rows, and costs about half the CPU of pyarrow's), with the log's partition values
    joined on the file name. Any other file system (S3) is read through pyarrow, which DuckDB scans with
    projections and filters pushed down: DuckDB's own S3 support is an extension it cannot install here.
    """
    if not isinstance(filesystem, pafs.LocalFileSystem):
        return Scan(name, {}, {name: dataset(files, schema, filesystem)})
    partitions = [field for field in schema if any(field.name in f.partition for f in files)]
    parts = pa.table({"location": [f.location for f in files], FILE_COLUMN: [f.key for f in files],
                      **{p.name: pa.array([f.partition.get(p.name) for f in files], p.type) for p in partitions}})
    skipped = ", ".join(f"'{c}'" for c in ("filename", "location", FILE_COLUMN, *(p.name for p in partitions)))
    # UNION BY NAME with an empty table of the contract gives every column (NULL where files lack one).
    sql = (f"(SELECT * FROM {name}_contract UNION ALL BY NAME "
           f"SELECT COLUMNS(lambda c: c NOT IN ({skipped})), {name}_parts.* EXCLUDE (location) "
           f"FROM read_parquet(${name}_files, filename = true, union_by_name = true, hive_partitioning = false) f "
           f"JOIN {name}_parts ON f.filename = {name}_parts.location)")
    contract = schema.append(pa.field(FILE_COLUMN, pa.string())).empty_table()
    return Scan(sql, {f"{name}_files": list(parts.column("location").to_pylist())},
                {f"{name}_contract": contract, f"{name}_parts": parts})


def dataset(files: Iterable[SnapshotFile], schema: pa.Schema, filesystem: pafs.FileSystem) -> ds.Dataset:
    """A pyarrow dataset of these files with the table's schema and a ``_file`` column. Partition values and
    ``_file`` are fragment guarantees: filled in where files leave them out, and filters on them skip
    whole files."""
    schema = schema.append(pa.field(FILE_COLUMN, pa.string()))
    fragments = []
    for file in files:
        guarantee = ds.field(FILE_COLUMN) == file.key
        for name, value in file.partition.items():
            if name not in schema.names:
                continue
            column = ds.field(name)
            guarantee &= column.is_null() if value is None else column == pa.scalar(value, schema.field(name).type)
        fragments.append(_FORMAT.make_fragment(file.location, filesystem=filesystem, partition_expression=guarantee,
                                               file_size=file.size))
    return ds.FileSystemDataset(fragments, schema, _FORMAT, filesystem)


def hour_partitions_between(start: datetime, end: datetime) -> set[tuple[str, int]]:
    """(event_date, event_hour) pairs covering [start, end], for pruning hourly partitions."""
    start = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    end = end.astimezone(UTC)
    pairs: set[tuple[str, int]] = set()
    current = start
    while current <= end:
        pairs.add((current.strftime("%Y-%m-%d"), current.hour))
        current += _HOUR
    return pairs


def prune_by_time(files: Iterable[SnapshotFile], start: datetime, end: datetime) -> list[SnapshotFile]:
    """Files that can hold events of [start, end]: by their hour partition, then by the event_time range
    the log records for them (micro-batch files each cover a few seconds or minutes of an hour). Writers
    may truncate timestamp statistics to milliseconds, hence the slack on the maximum."""
    wanted = hour_partitions_between(start, end)
    return [entry for entry in files
            if (entry.hour_partition is None or entry.hour_partition in wanted)
            and (entry.time_range is None
                 or (entry.time_range[0] <= end and entry.time_range[1] + _STATS_SLACK >= start))]
