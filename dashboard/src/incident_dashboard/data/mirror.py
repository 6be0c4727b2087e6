"""Incremental mirror of an append-only Parquet folder into DuckDB tables.

The Spark job appends small files every few seconds. Reading thousands of Parquet footers on every
query costs hundreds of milliseconds, so each file is read once: a refresh lists the folder, loads
only the files it has not seen (into a raw copy or a pre-aggregated rollup), and forgets the rows of
files that vanished or changed (compaction). Every target row carries the ``_file`` it came from.

A file that cannot be read yet (still being written, or damaged) is skipped and retried on the next
refresh; after ``grace_seconds`` it is reported as unreadable so a damaged file is visible.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from incident_dashboard.data.database import Database
from incident_dashboard.data.files import FileEntry, list_table_files

log = logging.getLogger(__name__)

# select(source, present) -> a SELECT over `source` (a FROM-able expression with the table's columns
# plus `filename`) producing the target's rows, `_file` included; `present` names the contract columns
# the files actually have (older files may lack newer columns).
SelectBuilder = Callable[[str, set[str]], str]

_QUOTED = re.compile(r"'([^']+)'")
CHUNK_FILES = 400  # files per load statement: bounds memory on a first load of a big table


@dataclass
class Target:
    """A DuckDB table filled from the mirrored files."""

    name: str
    select: SelectBuilder


@dataclass
class MirrorStatus:
    table: str
    path: Path
    exists: bool
    files: int = 0
    bytes: int = 0
    pending: list[str] = field(default_factory=list)  # not readable yet (being written), retried
    unreadable: list[str] = field(default_factory=list)  # still unreadable after the grace period
    uncommitted: int = 0  # files not (yet) in the writer's manifest
    latest_mtime: float | None = None  # newest loaded file, seconds since the epoch
    refreshed_at: float = 0.0
    version: int = 0

    @property
    def empty(self) -> bool:
        return self.files == 0


class TableMirror:
    """Keeps ``targets`` in step with the Parquet files under ``root``."""

    def __init__(self, db: Database, table: str, root: Path, schema: pa.Schema, targets: list[Target],
                 *, hive_types: dict[str, str] | None = None, min_interval: float = 5.0,
                 grace_seconds: float = 60.0) -> None:
        self.db = db
        self.table = table
        self.root = root
        self.schema = schema
        self.targets = targets
        self.hive_types = hive_types or {}
        self.min_interval = min_interval
        self.grace_seconds = grace_seconds
        self.version = 0
        self._loaded: dict[str, FileEntry] = {}
        self._pending_since: dict[str, float] = {}
        self._uncommitted = 0
        self._refreshed_at = 0.0
        self._totals: tuple[int, int, int | None] = (0, 0, None)  # loaded files, their bytes, newest mtime (ns)
        self._lock = threading.Lock()
        self._created = False

    # --- public ----------------------------------------------------------------------------
    def refresh(self, *, force: bool = False) -> MirrorStatus:
        """Bring the targets up to date unless refreshed less than ``min_interval`` seconds ago."""
        self.update(force=force)
        return self.status()

    def update(self, *, force: bool = False) -> int:
        """:meth:`refresh` without building a status; returns the version of the targets' content."""
        fresh = time.monotonic() - self._refreshed_at < self.min_interval
        if fresh and not force and self._created:
            return self.version
        # Another thread refreshing: readers use the current content instead of waiting (after the first load).
        if not self._lock.acquire(blocking=not self._created):
            return self.version
        try:
            self._ensure_tables()
            self._sync()
            self._refreshed_at = time.monotonic()
        finally:
            self._lock.release()
        return self.version

    def expire(self) -> None:
        """Make the next :meth:`refresh` list the folder whatever ``min_interval`` says."""
        self._refreshed_at = float("-inf")

    def loaded_files(self) -> list[FileEntry]:
        """Files whose rows are in the targets (all known to be readable)."""
        return list(self._loaded.values())

    def status(self) -> MirrorStatus:
        now = time.time()
        pending, unreadable = [], []
        for path, since in self._pending_since.items():
            (unreadable if now - since >= self.grace_seconds else pending).append(path)
        files, size, newest = self._totals
        return MirrorStatus(
            table=self.table, path=self.root, exists=self.root.is_dir(), files=files,
            bytes=size, pending=sorted(pending), unreadable=sorted(unreadable),
            uncommitted=self._uncommitted,
            latest_mtime=newest / 1e9 if newest is not None else None,
            refreshed_at=time.time(), version=self.version)

    # --- internals -------------------------------------------------------------------------
    def _ensure_tables(self) -> None:
        if self._created:
            return
        with self.db.write_lock:
            cur = self.db.cursor()
            try:
                empty = self.schema.empty_table().append_column("filename", pa.array([], pa.string()))
                cur.register("_empty_source", empty)
                columns = set(self.schema.names)
                for target in self.targets:
                    select = target.select("_empty_source", columns)
                    cur.execute(f"CREATE OR REPLACE TABLE {target.name} AS SELECT * FROM ({select}) LIMIT 0")
                cur.unregister("_empty_source")
            finally:
                cur.close()
        self._created = True

    def _sync(self) -> None:
        listing = list_table_files(self.root)
        self._uncommitted = listing.uncommitted
        current = {f.path: f for f in listing.files}
        gone = [p for p, f in self._loaded.items() if current.get(p) != f]
        fresh = [f for p, f in current.items() if p not in self._loaded or self._loaded[p] != f]
        for path in list(self._pending_since):
            if path not in current:
                del self._pending_since[path]
        if not gone and not fresh:
            return
        with self.db.write_lock:
            if gone:
                self._forget(gone)
            for start in range(0, len(fresh), CHUNK_FILES):
                self._load(fresh[start:start + CHUNK_FILES])
        loaded = self._loaded.values()
        self._totals = (len(loaded), sum(f.size for f in loaded), max((f.mtime_ns for f in loaded), default=None))
        self.version += 1

    def _forget(self, paths: list[str]) -> None:
        cur = self.db.cursor()
        try:
            for target in self.targets:
                cur.execute(f"DELETE FROM {target.name} WHERE _file IN (SELECT unnest($paths))", {"paths": paths})
        finally:
            cur.close()
        for path in paths:
            self._loaded.pop(path, None)

    def _source(self, paths: list[str]) -> str:
        options = ["union_by_name = true", "filename = true"]
        if self.hive_types:
            types = ", ".join(f"'{k}': {v}" for k, v in self.hive_types.items())
            options += ["hive_partitioning = true", f"hive_types = {{{types}}}"]
        else:
            options.append("hive_partitioning = false")
        return f"read_parquet($files, {', '.join(options)})"

    def _load(self, entries: list[FileEntry]) -> None:
        """Load files, setting aside the ones that cannot be read (yet)."""
        remaining = list(entries)
        while remaining:
            bad = self._try_insert(remaining)
            if bad is None:
                for entry in remaining:
                    self._loaded[entry.path] = entry
                    self._pending_since.pop(entry.path, None)
                return
            if not bad:  # the error did not name a file: isolate the culprit(s) one by one
                for entry in remaining:
                    if self._try_insert([entry]) is None:
                        self._loaded[entry.path] = entry
                        self._pending_since.pop(entry.path, None)
                    else:
                        self._set_aside(entry.path)
                return
            for path in bad:
                self._set_aside(path)
            remaining = [e for e in remaining if e.path not in bad]

    def _set_aside(self, path: str) -> None:
        if path not in self._pending_since:
            log.info("%s: %s is not readable yet; retrying on the next refresh", self.table, path)
        self._pending_since.setdefault(path, time.time())

    def _try_insert(self, entries: list[FileEntry]) -> set[str] | None:
        """None when inserted; otherwise the set of files the error names (maybe empty)."""
        paths = [e.path for e in entries]
        cur = self.db.cursor()
        try:
            source = self._source(paths)
            described = cur.execute(f"DESCRIBE SELECT * FROM {source}", {"files": paths}).fetchall()
            columns = {row[0] for row in described} & set(self.schema.names)
            cur.execute("BEGIN TRANSACTION")
            for target in self.targets:
                select = target.select(source, columns)
                cur.execute(f"INSERT INTO {target.name} BY NAME {select}", {"files": paths})
            cur.execute("COMMIT")
            return None
        except duckdb.Error as exc:
            try:
                cur.execute("ROLLBACK")
            except duckdb.Error:
                pass
            named = {m for m in _QUOTED.findall(str(exc)) if m in set(paths)}
            log.debug("%s: load of %d files failed: %s", self.table, len(paths), exc)
            return named
        finally:
            cur.close()


def raw_select(columns_sql: dict[str, str] | None = None) -> SelectBuilder:
    """A target copying the contract's columns present in the files (missing ones become NULL).

    ``columns_sql`` overrides how a column is read (e.g. a prefix of a large binary column).
    """
    overrides = columns_sql or {}

    def build(source: str, present: set[str]) -> str:
        parts = [f"{overrides.get(c, c)} AS {c}" for c in sorted(present)]
        parts.append("filename AS _file")
        return f"SELECT {', '.join(parts)} FROM {source}"

    return build
