"""Incremental mirror of a Delta Lake table into DuckDB tables.

The Spark job commits a version every few seconds. Reading thousands of Parquet footers on every query
costs hundreds of milliseconds, so each data file is read once: a refresh asks the table's log for its
latest version and, when it moved, compares the version's add actions with the files already
mirrored, loads only the new files (into a raw copy or a pre-aggregated rollup) and forgets the rows of
files the version no longer has (a compaction or a retention cleanup removed them). Every target row
carries the ``_file`` it came from.

A refresh changes the targets in one DuckDB transaction, so a query sees the rows of one table version,
never half of a compaction. When a file of the version cannot be read (damaged, or deleted under a
version that still names it), the transaction is rolled back, the file is found, and the version is
applied without it; it is reported, and retried on the next refresh.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from incident_contracts.table_store import TableLayoutError, TableStore
from incident_contracts.tables import TABLES
from incident_rca.data.database import Database
from incident_rca.data.files import FILE_COLUMN, Scan, SnapshotFile, scan, snapshot_files

log = logging.getLogger(__name__)

# select(source) -> a SELECT over `source` (the table's contract columns plus `_file`) producing the
# target's rows, `_file` included.
SelectBuilder = Callable[[str], str]

CHUNK_FILES = 100  # files per load statement: bounds memory (pyarrow decodes ahead) on a first load
_SOURCE = "_mirror_source"


@dataclass
class Target:
    """A DuckDB table filled from the mirrored files."""

    name: str
    select: SelectBuilder


@dataclass
class MirrorStatus:
    table: str
    location: str
    exists: bool
    version: int | None = None  # the table version the targets hold; None when there is no table
    files: int = 0
    bytes: int = 0
    unreadable: list[str] = field(default_factory=list)  # files of the version that could not be read
    error: str | None = None  # why the table cannot be read at all (old layout, storage unreachable)
    latest_modified: float | None = None  # newest loaded file, seconds since the epoch
    refreshed_at: float = 0.0

    @property
    def empty(self) -> bool:
        return self.files == 0


class TableMirror:
    """Keeps ``targets`` (and the ``derived`` tables computed from them) in step with one table."""

    def __init__(self, db: Database, store: TableStore, table: str, targets: list[Target],
                 *, derived: Sequence[str] = (), min_interval: float = 5.0) -> None:
        self.db = db
        self.store = store
        self.table = table
        self.schema = TABLES[table].schema
        self.targets = targets
        self.derived = list(derived)
        self.min_interval = min_interval
        self.version: int | None = None
        self._dt: DeltaTable | None = None
        self._loaded: dict[str, SnapshotFile] = {}
        self._unreadable: set[str] = set()
        self._error: str | None = None
        self._totals: tuple[int, int | None] = (0, None)  # bytes loaded, newest modification (ms)
        self._refreshed_at = 0.0
        self._lock = threading.Lock()
        self._created = False
        self._synced = False

    # --- public ----------------------------------------------------------------------------
    def refresh(self, *, force: bool = False) -> MirrorStatus:
        """Bring the targets up to date unless refreshed less than ``min_interval`` seconds ago."""
        self.update(force=force)
        return self.status()

    def update(self, *, force: bool = False) -> tuple[int | None, int]:
        """:meth:`refresh` without building a status; returns what the targets hold: (table version, files)."""
        fresh = time.monotonic() - self._refreshed_at < self.min_interval
        if fresh and not force and self._synced:
            return self.content
        # Another thread refreshing: readers use the current content instead of waiting (after the first load).
        if not self._lock.acquire(blocking=not self._synced):
            return self.content
        try:
            self._ensure_tables()
            self._sync()
            self._refreshed_at = time.monotonic()
            self._synced = True
        finally:
            self._lock.release()
        return self.content

    @property
    def content(self) -> tuple[int | None, int]:
        return self.version, len(self._loaded)

    def expire(self) -> None:
        """Make the next :meth:`refresh` ask the log whatever ``min_interval`` says."""
        self._refreshed_at = float("-inf")

    def files(self) -> list[SnapshotFile]:
        """The files of the mirrored version whose rows are in the targets."""
        return list(self._loaded.values())

    def scan(self, files: Sequence[SnapshotFile], name: str) -> Scan:
        """How a query reads raw rows of some of the mirrored version's files (see :func:`files.scan`)."""
        return scan(files, self.schema, self._filesystem[0], name)

    @cached_property
    def _filesystem(self) -> tuple[pafs.FileSystem, str]:
        return self.store.filesystem()

    def status(self) -> MirrorStatus:
        size, newest = self._totals
        return MirrorStatus(
            table=self.table, location=self.store.uri(self.table), exists=self._dt is not None,
            version=self.version, files=len(self._loaded), bytes=size, unreadable=sorted(self._unreadable),
            error=self._error, latest_modified=newest / 1000 if newest is not None else None,
            refreshed_at=time.time())

    # --- internals -------------------------------------------------------------------------
    def _ensure_tables(self) -> None:
        if self._created:
            return
        with self.db.write_lock:
            cur = self.db.cursor()
            try:
                empty = self.schema.empty_table().append_column(FILE_COLUMN, pa.array([], pa.string()))
                cur.register(_SOURCE, empty)
                for target in self.targets:
                    cur.execute(f"CREATE OR REPLACE TABLE {target.name} AS "
                                f"SELECT * FROM ({target.select(_SOURCE)}) LIMIT 0")
                cur.unregister(_SOURCE)
                for statement in self.derived:
                    cur.execute(statement)
            finally:
                cur.close()
        self._created = True

    def _open(self) -> DeltaTable | None:
        """The table at its latest version (None when it does not exist)."""
        if self._dt is None:
            self._dt = self.store.open(self.table)
        else:
            self._dt.update_incremental()
        return self._dt

    def _sync(self) -> None:
        try:
            dt = self._open()
        except TableLayoutError as exc:
            self._error = str(exc)
            dt = None
        except (DeltaError, OSError) as exc:  # storage unreachable: keep showing the last version read
            self._error = f"{self.store.uri(self.table)} could not be read: {exc}"
            log.warning("%s", self._error)
            return
        else:
            self._error = None
        version = dt.version() if dt is not None else None
        if version == self.version and not self._unreadable:
            return
        filesystem, root = self._filesystem
        files = snapshot_files(dt, f"{root}/{self.table}") if dt is not None else {}
        gone = [key for key in self._loaded if key not in files]
        fresh = [file for key, file in files.items() if key not in self._loaded]
        if gone or fresh:
            cur = self.db.cursor()
            try:
                bad = self._load(cur, gone, fresh, filesystem)
            except LoadError as exc:  # not a file's fault: keep showing the last version read
                self._error = f"{self.store.uri(self.table)} version {version} could not be loaded: {exc}"
                log.warning("%s", self._error)
                return
            finally:
                cur.close()
            loaded = {key: file for key, file in self._loaded.items() if key in files}
            loaded.update((file.key, file) for file in fresh if file.key not in bad)
            for key in sorted(bad - self._unreadable):
                log.warning("%s: %s could not be read; retrying on the next refresh", self.table, key)
            self._loaded, self._unreadable = loaded, bad
            self._totals = (sum(f.size for f in loaded.values()),
                            max((f.modified_ms for f in loaded.values()), default=None))
        self.version = version

    def _load(self, cur: duckdb.DuckDBPyConnection, gone: list[str], fresh: list[SnapshotFile],
              filesystem: pafs.FileSystem) -> set[str]:
        """Apply a new version; returns the keys of the new files left out because they cannot be read.
        Optimistic: all files in one go; only when that fails are the culprits looked for, and left out."""
        bad: set[str] = set()
        while True:
            try:
                with self.db.write_lock:
                    self._apply(cur, gone, [f for f in fresh if f.key not in bad], filesystem)
                return bad
            except LoadError:
                found = self._unreadable_among([f for f in fresh if f.key not in bad], cur, filesystem)
                if not found:
                    raise
                bad |= found

    def _apply(self, cur: duckdb.DuckDBPyConnection, gone: list[str], fresh: list[SnapshotFile],
               filesystem: pafs.FileSystem) -> None:
        """Forget the removed files, add the new ones and rebuild the derived tables, in one transaction."""
        cur.execute("BEGIN TRANSACTION")
        try:
            for target in self.targets:
                if not self._loaded:  # nothing is loaded: clear what a failed first load may have committed
                    cur.execute(f"DELETE FROM {target.name}")
                elif gone:
                    cur.execute(f"DELETE FROM {target.name} WHERE {FILE_COLUMN} IN (SELECT unnest($keys))",
                                {"keys": gone})
            for start in range(0, len(fresh), CHUNK_FILES):
                with self._source(cur, fresh[start:start + CHUNK_FILES], filesystem) as source:
                    for target in self.targets:
                        cur.execute(f"INSERT INTO {target.name} BY NAME {target.select(source.sql)}", source.params)
                if not self._synced:  # the first load: readers wait for it to end; commits bound its memory
                    cur.execute("COMMIT")
                    cur.execute("BEGIN TRANSACTION")
            for statement in self.derived:
                cur.execute(statement)
            cur.execute("COMMIT")
        except (duckdb.Error, OSError, pa.ArrowException) as exc:
            cur.execute("ROLLBACK")
            raise LoadError(str(exc)) from exc
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def _unreadable_among(self, files: list[SnapshotFile], cur: duckdb.DuckDBPyConnection,
                          filesystem: pafs.FileSystem) -> set[str]:
        """Keys of the files whose rows cannot be read, found by reading halves of the failing chunks."""
        bad: set[str] = set()
        pending = [files[i:i + CHUNK_FILES] for i in range(0, len(files), CHUNK_FILES)]
        while pending:
            chunk = pending.pop()
            try:
                with self._source(cur, chunk, filesystem) as source:
                    for target in self.targets:
                        cur.execute(f"SELECT count(*) FROM ({target.select(source.sql)})", source.params).fetchall()
                continue
            except (duckdb.Error, OSError, pa.ArrowException) as exc:
                log.debug("%s: %d files could not be read: %s", self.table, len(chunk), exc)
            if len(chunk) == 1:
                bad.add(chunk[0].key)
            else:
                half = len(chunk) // 2
                pending += [chunk[:half], chunk[half:]]
        return bad

    @contextmanager
    def _source(self, cur: duckdb.DuckDBPyConnection, files: list[SnapshotFile],
                filesystem: pafs.FileSystem) -> Iterator[Scan]:
        """The files as the source the targets' SELECTs read (with a ``_file`` column), on this cursor."""
        source = scan(files, self.schema, filesystem, _SOURCE)
        for name, value in source.sources.items():
            cur.register(name, value)
        try:
            yield source
        finally:
            for name in source.sources:
                cur.unregister(name)


class LoadError(RuntimeError):
    """A version's new files could not be added to the targets."""


def raw_select(columns_sql: dict[str, str] | None = None) -> SelectBuilder:
    """A target copying the contract's columns; ``columns_sql`` overrides how a column is read (e.g. a
    prefix of a large binary column)."""
    overrides = columns_sql or {}

    def build(source: str) -> str:
        return f"SELECT * REPLACE ({', '.join(f'{sql} AS {name}' for name, sql in overrides.items())}) " \
               f"FROM {source}" if overrides else f"SELECT * FROM {source}"

    return build
