"""Which Parquet files of a table folder are safe to read.

A table folder is written while the dashboard reads it. The rules:

* names starting with ``_`` or ``.`` are writer bookkeeping (Spark's ``_temporary``, ``_spark_metadata``,
  ``.crc`` files, hidden temporary files) and are never data;
* empty files are files being created;
* when the folder holds a Spark file-sink manifest (``_spark_metadata``), only the files it lists are
  committed; anything else is in flight or left over from a failed batch;
* a file can still be incomplete (no footer yet); the reader finds out when it opens it and retries
  later (see :mod:`incident_dashboard.data.mirror`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

_PARTITION = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_MANIFEST_DIR = "_spark_metadata"
_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    mtime_ns: int

    @cached_property
    def partition(self) -> dict[str, str]:
        """Hive partition values from the path (``event_date=2026-11-23/event_hour=10``), parsed once."""
        values: dict[str, str] = {}
        for part in Path(self.path).parent.parts:
            match = _PARTITION.match(part)
            if match:
                values[match.group(1)] = unquote(match.group(2))
        return values

    @cached_property
    def hour_partition(self) -> tuple[str, int] | None:
        """(event_date, event_hour) of an hourly partitioned file, else None."""
        part = self.partition
        date, hour = part.get("event_date"), part.get("event_hour")
        if date is None or hour is None or not hour.isdigit():
            return None
        return date, int(hour)


@dataclass(frozen=True)
class Listing:
    files: list[FileEntry]
    uncommitted: int = 0  # data files present but not (yet) in the writer's manifest
    manifest: bool = False


def _is_hidden(name: str) -> bool:
    return name.startswith(("_", "."))


def _walk(root: Path) -> list[FileEntry]:
    found: list[FileEntry] = []
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            if _is_hidden(entry.name):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.name.endswith(".parquet"):
                    stat = entry.stat()
                    if stat.st_size > 0:
                        found.append(FileEntry(entry.path, stat.st_size, stat.st_mtime_ns))
            except FileNotFoundError:  # removed while we looked (compaction)
                continue
    found.sort(key=lambda f: f.path)
    return found


def committed_names(root: Path) -> set[str] | None:
    """File names a Spark file sink has committed, or None when the folder has no manifest.

    The manifest is a folder of numbered batch logs (``0``, ``1``, ... and periodic ``N.compact``
    files that restate everything before them); each log is a version line followed by one JSON
    object per file with its ``path`` and ``action`` (``add`` or ``delete``).
    """
    folder = root / _MANIFEST_DIR
    if not folder.is_dir():
        return None
    logs: list[tuple[int, Path]] = []
    for entry in folder.iterdir():
        stem = entry.name.removesuffix(".compact")
        if stem.isdigit() and entry.is_file():
            logs.append((int(stem), entry))
    logs.sort()
    last_compact = max((i for i, (_, p) in enumerate(logs) if p.name.endswith(".compact")), default=0)
    names: set[str] = set()
    for _, path in logs[last_compact:]:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            name = Path(unquote(urlparse(record.get("path", "")).path)).name
            if record.get("action") == "delete":
                names.discard(name)
            elif name:
                names.add(name)
    return names


def list_table_files(root: Path) -> Listing:
    """Readable-looking data files of a table folder (empty listing when the folder is missing)."""
    files = _walk(root)
    committed = committed_names(root)
    if committed is None:
        return Listing(files)
    kept = [f for f in files if Path(f.path).name in committed]
    return Listing(kept, uncommitted=len(files) - len(kept), manifest=True)


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


def prune_by_hour(files: list[FileEntry], start: datetime, end: datetime) -> list[FileEntry]:
    """Files whose event_date/event_hour partition overlaps [start, end]; unpartitioned files are kept."""
    wanted = hour_partitions_between(start, end)
    return [entry for entry in files if entry.hour_partition is None or entry.hour_partition in wanted]

