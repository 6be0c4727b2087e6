"""Where the tables live and how every reader and writer opens them: Delta Lake tables under DATA_DIR.

DATA_DIR is a folder or ``s3://bucket/prefix``; each table of ``incident_contracts.tables`` is a Delta
Lake table in ``<DATA_DIR>/<name>`` (its Parquet files plus the ``_delta_log`` of commits). A reader
sees one committed version (a snapshot) and nothing else: files a writer has written but not yet
committed, or that a compaction replaced, are invisible. Spark, DuckDB, pyarrow/pandas and Trino read
the same tables.

Writers commit through ``TableStore.commit_files`` (files written by the job's tasks) or
``TableStore.append`` (rows in hand). Both take an application id and a version (the streaming
query's checkpoint id and its micro-batch id): the table records them in the same atomic commit as
the files, so a replay of a batch the table already holds is recognised and committed no second time.

Durability on a local file system: ``commit_files``/``append`` fsync the data files they commit and the
folders they were created in before the commit, then the commit's log entry, the log folder and the
table folder before they return, so what the streaming checkpoint records as done survives a power cut.
On object storage a write is durable once the PUT succeeds, and commits use the store's conditional put
(``conditional_put=etag``).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction

from incident_contracts.settings import ObjectLocation, Settings
from incident_contracts.tables import TABLES, Table

if TYPE_CHECKING:
    import pyarrow.dataset as ds

log = logging.getLogger(__name__)

DELTA_LOG = "_delta_log"
# Commit retries when a concurrent commit (maintenance) conflicts; delta-rs re-checks each time.
MAX_COMMIT_RETRIES = 15


class TableLayoutError(RuntimeError):
    """DATA_DIR holds a table in a layout the platform no longer reads (plain Parquet folders)."""


@dataclass(frozen=True)
class DataFile:
    """A Parquet file written into a table's folder, not yet part of the table until committed."""

    path: str  # relative to the table's root, '/'-separated (partition folders included)
    size: int
    rows: int
    partition_values: Mapping[str, str] = field(default_factory=dict)
    stats: Mapping[str, Any] = field(default_factory=dict)  # minValues / maxValues / nullCount by column

    def add_action(self) -> AddAction:
        stats = {"numRecords": self.rows, **self.stats}
        return AddAction(self.path, self.size, dict(self.partition_values), int(time.time() * 1000), True,
                         json.dumps(stats, default=str))


def fsync_file(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a folder's entries (created or renamed files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class TableStore:
    """The tables under one DATA_DIR. ``root`` is an absolute folder or an ``s3://bucket/prefix`` URI."""

    root: str
    storage_options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> TableStore:
        return cls.at(settings.data_dir, settings)

    @classmethod
    def at(cls, location: str | Path, settings: Settings) -> TableStore:
        """The tables under `location` (a folder or s3://...), with the object-store settings if needed."""
        if isinstance(location, ObjectLocation) or "://" in str(location):
            return cls(str(location).rstrip("/"), settings.storage_options())
        return cls(str(Path(location).resolve()))

    @property
    def is_local(self) -> bool:
        return "://" not in self.root

    def uri(self, table: str) -> str:
        return f"{self.root}/{table}"

    def local_path(self, table: str) -> Path:
        if not self.is_local:
            raise ValueError(f"{self.root} is object storage, not a folder")
        return Path(self.root) / table

    # --- reading ----------------------------------------------------------------------------------
    def open(self, table: str, version: int | None = None) -> DeltaTable | None:
        """The table at its latest (or the given) version; None when it does not exist yet."""
        try:
            return DeltaTable(self.uri(table), version=version, storage_options=dict(self.storage_options))
        except TableNotFoundError:
            self._refuse_old_layout(table)
            return None

    def dataset(self, table: str, dt: DeltaTable | None = None) -> ds.Dataset:
        """One committed snapshot of the table as a pyarrow dataset (zero rows when it does not exist).
        Partition values and per-file min/max statistics prune files for filters on the dataset.

        Files are read through pyarrow's own file system: through deltalake's default (a Python file
        system) a process that scanned with threads aborts now and then at exit."""
        import pyarrow.dataset as ds  # imported when used: it imports pandas (half a second for every process)

        dt = dt or self.open(table)
        if dt is None:
            return ds.dataset(TABLES[table].schema.empty_table())
        filesystem, base = self.filesystem()
        return dt.to_pyarrow_dataset(filesystem=pafs.SubTreeFileSystem(f"{base}/{table}", filesystem))

    def read(self, table: str, columns: Sequence[str] | None = None,
             filter: ds.Expression | None = None) -> pa.Table:
        return self.dataset(table).to_table(columns=list(columns) if columns else None, filter=filter)

    # --- writing ----------------------------------------------------------------------------------
    def create(self, table: str) -> DeltaTable:
        """The table, created empty with the contract's schema and partitioning if it does not exist."""
        existing = self.open(table)
        if existing is not None:
            return existing
        spec: Table = TABLES[table]
        if self.is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)
        dt = DeltaTable.create(self.uri(table), spec.schema, mode="ignore", partition_by=list(spec.partitions) or None,
                               name=table, storage_options=dict(self.storage_options))
        self.make_durable(table, dt, since=-1)
        return dt

    def _ensure(self, table: str) -> None:
        """create() without opening a table that exists: on a folder, its first log entry is enough."""
        if self.is_local and (self.local_path(table) / DELTA_LOG / f"{0:020d}.json").is_file():
            return
        self.create(table)

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """A pyarrow file system and the root path in it, for tasks writing data files into tables."""
        if self.is_local:
            return pafs.LocalFileSystem(), self.root
        options = self.storage_options
        endpoint = options.get("AWS_ENDPOINT_URL", "")
        scheme = "http" if endpoint.startswith("http://") else "https"
        kwargs: dict[str, Any] = {"region": options.get("AWS_REGION") or None, "scheme": scheme}
        if endpoint:
            kwargs["endpoint_override"] = endpoint.split("://", 1)[1]
        if options.get("AWS_ACCESS_KEY_ID"):
            kwargs["access_key"] = options["AWS_ACCESS_KEY_ID"]
            kwargs["secret_key"] = options["AWS_SECRET_ACCESS_KEY"]
        return pafs.S3FileSystem(**kwargs), self.root.split("://", 1)[1]

    def committed_version(self, table: str, app_id: str) -> int | None:
        """The last version (micro-batch id) the application committed to the table, if any."""
        dt = self.open(table)
        return None if dt is None else dt.transaction_version(app_id)

    def commit_files(self, table: str, files: Sequence[DataFile], app_id: str | None = None,
                     version: int | None = None) -> bool:
        """Add written files to the table in one atomic commit that records (app_id, version).
        Returns False, committing nothing, when the table already holds that version of the application
        (a replayed micro-batch); the caller deletes its files (delete_files), or vacuum does later."""
        dt = self.create(table)
        if app_id is not None and version is not None:
            done = dt.transaction_version(app_id)
            if done is not None and done >= version:
                return False
        if not files and app_id is None:
            return False
        self._fsync_data(table, files)
        spec = TABLES[table]
        before = dt.version()
        for attempt in range(MAX_COMMIT_RETRIES + 1):
            try:
                dt.create_write_transaction([f.add_action() for f in files], "append", spec.schema,
                                            partition_by=list(spec.partitions) or None,
                                            commit_properties=self._commit(app_id, version))
                break
            except CommitFailedError as exc:
                # delta-rs counts every file of an append's snapshot as read, so a concurrent delete (retention,
                # table_maintenance) fails it; an append depends on nothing it read: commit it on the new version.
                if attempt == MAX_COMMIT_RETRIES:
                    raise
                log.info("commit to %s conflicted with a concurrent commit (%s); committing again", table,
                         str(exc).splitlines()[0])
                dt.update_incremental()
                done = dt.transaction_version(app_id) if app_id is not None and version is not None else None
                if done is not None and done >= version:  # type: ignore[operator]
                    return False
        self.make_durable(table, dt, since=before)
        return True

    def append(self, table: str, data: pa.Table, app_id: str | None = None, version: int | None = None) -> bool:
        """Write rows as files of the table and commit them in one commit (``write_files`` + ``commit_files``);
        with (app_id, version), idempotently."""
        dt = self.create(table)
        if app_id is not None and version is not None:
            done = dt.transaction_version(app_id)
            if done is not None and done >= version:
                return False
        files = self.write_files(table, data)
        return self.commit_files(table, files, app_id, version)

    def write_files(self, table: str, data: pa.Table) -> list[DataFile]:
        """Write rows into the table's folder as new Parquet files (one per partition value), uncommitted."""
        import pyarrow.dataset as ds  # (see dataset())

        spec = TABLES[table]
        data = conform(data, spec.schema)
        if data.num_rows == 0:
            return []
        self._ensure(table)  # a folder of files without a log would read as the pre-Delta layout
        filesystem, base = self.filesystem()
        written: list[Any] = []
        ds.write_dataset(
            data, f"{base}/{table}", format="parquet", filesystem=filesystem,
            partitioning=ds.partitioning(pa.schema([spec.schema.field(p) for p in spec.partitions]), flavor="hive")
            if spec.partitions else None,
            basename_template=f"part-{uuid.uuid4().hex}-{{i}}.zstd.parquet",
            existing_data_behavior="overwrite_or_ignore",
            file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"), file_visitor=written.append)
        files = []
        for item in written:
            relative = item.path[len(base) + len(table) + 2:]
            size = filesystem.get_file_info(item.path).size
            files.append(data_file(relative, size, item.metadata))
        return files

    def committed_paths(self, table: str) -> set[str]:
        """The files of the table's current version, relative to the table (as DataFile.path)."""
        dt = self.open(table)
        return set() if dt is None else set(pa.table(dt.get_add_actions(flatten=False)).column("path").to_pylist())

    def delete_files(self, table: str, files: Sequence[DataFile]) -> None:
        """Remove written files no commit will name (a replayed batch's); vacuum would remove them later."""
        filesystem, base = self.filesystem()
        for file in files:
            try:
                filesystem.delete_file(f"{base}/{table}/{file.path}")
            except (OSError, FileNotFoundError) as exc:
                log.debug("could not remove uncommitted file %s: %s", file.path, exc)

    def compact(self, table: str, **options: Any) -> dict[str, Any]:
        """Merge small files of the table into larger ones in one commit (Delta's optimize/compact);
        readers of older versions keep theirs until vacuum. Returns delta-rs's metrics ({} if no table)."""
        dt = self.open(table)
        if dt is None:
            return {}
        before = dt.version()
        result = dt.optimize.compact(commit_properties=CommitProperties(max_commit_retries=MAX_COMMIT_RETRIES),
                                     **options)
        if result.get("numFilesAdded"):
            self.make_durable(table, dt, since=before, data_files=True)
        return result

    @staticmethod
    def _commit(app_id: str | None, version: int | None) -> CommitProperties:
        transactions = [Transaction(app_id, version)] if app_id is not None and version is not None else None
        return CommitProperties(max_commit_retries=MAX_COMMIT_RETRIES, app_transactions=transactions)

    def _fsync_data(self, table: str, files: Sequence[DataFile]) -> None:
        """Data files reach the disk before the commit that names them (local only)."""
        if not self.is_local:
            return
        folder = self.local_path(table)
        for file in files:
            fsync_file(folder / file.path)
        for parent in {(folder / file.path).parent for file in files}:
            while parent != folder:
                fsync_dir(parent)
                parent = parent.parent

    def make_durable(self, table: str, dt: DeltaTable, since: int, *, data_files: bool = False) -> None:
        """fsync the log entries of the versions after `since`, the log folder and the table folder, so a
        commit that returned survives a power cut (local only; delta-rs writes them without fsync).

        With `data_files`, first the files those versions add: for commits delta-rs made itself (compaction,
        rewrites), whose files it wrote and committed in one call. Until this returns, a power cut may
        leave such a version naming files whose data never reached the disk; the version before it, whose
        files are still there until vacuum, is intact (docs/reliability.md)."""
        if not self.is_local:
            return
        dt.update_incremental()
        folder = self.local_path(table)
        log_dir = folder / DELTA_LOG
        entries = [log_dir / f"{version:020d}.json" for version in range(since + 1, dt.version() + 1)]
        if data_files:
            added = [folder / path for entry in entries for path in _added_paths(entry)]
            for path in added:
                fsync_file(path)
            for parent in {path.parent for path in added}:
                while parent != folder:
                    fsync_dir(parent)
                    parent = parent.parent
        for entry in entries:
            if entry.exists():
                fsync_file(entry)
        fsync_dir(log_dir)
        fsync_dir(folder)
        fsync_dir(folder.parent)

    def _refuse_old_layout(self, table: str) -> None:
        """A table folder of Parquet files without a Delta log is the layout before Delta Lake."""
        if not self.is_local:
            return
        folder = self.local_path(table)
        if folder.is_dir() and not (folder / DELTA_LOG).exists() and any(folder.rglob("*.parquet")):
            raise TableLayoutError(
                f"{folder} holds Parquet files but no Delta Lake log: it was written before the tables became "
                "Delta Lake tables. Convert it with `make migrate-data` (it converts the files in place where it "
                "can), then start again.")


def conform(data: pa.Table | pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """The rows with the table's columns, in its order and types (timestamps to microseconds); a nullable
    column the rows lack is all nulls."""
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    columns = []
    for target in schema:
        if target.name not in table.column_names and target.nullable:
            columns.append(pa.nulls(table.num_rows, target.type))
            continue
        column = table.column(target.name)
        columns.append(column if column.type.equals(target.type) else column.cast(target.type, safe=False))
    return pa.Table.from_arrays(columns, schema=pa.schema([f.with_nullable(True) for f in schema]))


def partition_values(relative: str) -> dict[str, str]:
    """{column: value} of a file's Hive-style partition folders (``event_date=2026-12-06/event_hour=5/x``)."""
    from urllib.parse import unquote

    values = {}
    for part in relative.split("/")[:-1]:
        name, sep, value = part.partition("=")
        if sep:
            values[name] = unquote(value)
    return values


def _stat_value(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(value, bytes):
        return None
    return value


def data_file(relative: str, size: int, metadata: pq.FileMetaData) -> DataFile:
    """A DataFile with Delta statistics (minValues, maxValues, nullCount of top-level primitive columns)
    taken from the Parquet footer, so readers can skip files by partition, offset or time."""
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    arrow = metadata.schema.to_arrow_schema()
    for index in range(metadata.num_columns):
        name = metadata.schema.column(index).path
        if "." in name or name not in arrow.names or pa.types.is_nested(arrow.field(name).type):
            continue
        low = high = None
        count = 0
        complete = True
        for group in range(metadata.num_row_groups):
            stats = metadata.row_group(group).column(index).statistics
            if stats is None or not stats.has_min_max:
                complete = complete and (stats is not None and stats.null_count == metadata.row_group(group).num_rows)
                count += stats.null_count if stats is not None and stats.has_null_count else 0
                continue
            count += stats.null_count if stats.has_null_count else 0
            low = stats.min if low is None or stats.min < low else low
            high = stats.max if high is None or stats.max > high else high
        if low is not None and complete and not isinstance(low, bytes):
            mins[name], maxs[name] = _stat_value(low), _stat_value(high)
        nulls[name] = count
    stats = {"minValues": mins, "maxValues": maxs, "nullCount": nulls}
    return DataFile(relative, size, metadata.num_rows, partition_values(relative), stats)


def _added_paths(entry: Path) -> list[str]:
    """Files (relative to the table) a log entry adds."""
    from urllib.parse import unquote

    try:
        lines = entry.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    paths = []
    for line in lines:
        action = json.loads(line).get("add") if line.strip() else None
        if action and "://" not in action["path"]:
            paths.append(unquote(action["path"]))
    return paths
