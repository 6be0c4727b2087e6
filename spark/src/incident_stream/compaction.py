"""Merging a table partition's small files, with one atomic step visible to folder readers.

Each micro-batch adds a file per partition folder it touches; at a 2 s trigger that is thousands of
files an hour, and DuckDB slows down several-fold on thousands of files (docs/decisions.md). When a
folder holds at least ``min_files`` small files of *committed* batches, they are merged into one file:

1. a new folder is built in ``DATA_DIR/_staging``: the merged file plus hard links to the folder's
   other files;
2. the new folder and the partition folder are swapped with one ``renameat2(RENAME_EXCHANGE)`` (Linux);
   where that call is missing, two renames leave the folder briefly absent, never duplicated;
3. the old folder (now in staging) is deleted.

Only files of batches the checkpoint has committed are merged (files of other tags, i.e. earlier
checkpoints, count as committed) (a batch being replayed must find its own
files), so compaction runs between batches in the writer's own thread, or after the queries stopped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from incident_stream.sinks import parse_file_name, staging_root

log = logging.getLogger(__name__)

SMALL_FILE_BYTES = 32 << 20
MAX_MERGED_BYTES = 256 << 20
MIN_FILES = 16
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass
class CompactionResult:
    folders: int = 0
    files_merged: int = 0
    files_written: int = 0


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2). False when the system cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a))


def swap_folder(new: Path, current: Path) -> None:
    """Make `new` the content of `current`; afterwards `new` holds the old content."""
    if _exchange(new, current):
        return
    parked = new.with_name(new.name + ".old")
    os.rename(current, parked)
    os.rename(new, current)
    os.rename(parked, new)


def _candidates(folder: Path, tag: str, before_batch: int | None, small_bytes: int) -> list[Path]:
    found = []
    for path in sorted(folder.glob("part-*.parquet")):
        parsed = parse_file_name(path.name)
        if parsed is None:
            continue
        file_tag, kind, batch = parsed
        if kind == "b" and file_tag == tag and before_batch is not None and batch >= before_batch:
            continue  # not committed yet: a replay of that batch must find its own file
        if path.stat().st_size < small_bytes:
            found.append(path)
    return found


def compact_folder(folder: Path, staging: Path, *, tag: str, before_batch: int | None,
                   min_files: int = MIN_FILES, small_bytes: int = SMALL_FILE_BYTES,
                   max_bytes: int = MAX_MERGED_BYTES) -> int:
    """Merge small files of one leaf folder; returns how many files were merged (0: left as is)."""
    candidates = _candidates(folder, tag, before_batch, small_bytes)
    chosen, total = [], 0
    for path in candidates:
        size = path.stat().st_size
        if chosen and total + size > max_bytes:
            break
        chosen.append(path)
        total += size
    if len(chosen) < min_files:
        return 0
    tables = [pq.read_table(path) for path in chosen]
    merged = pa.concat_tables(tables, promote_options="default")
    last_batch = max(parse_file_name(p.name)[2] for p in chosen)  # type: ignore[index]
    name = f"part-{tag}-c{last_batch:012d}-{uuid.uuid4().hex[:8]}.parquet"
    staging.mkdir(parents=True, exist_ok=True)
    new = staging / f"compact-{uuid.uuid4().hex[:8]}"
    new.mkdir()
    try:
        chosen_set = set(chosen)
        for path in folder.iterdir():
            if path.is_file() and path not in chosen_set:
                os.link(path, new / path.name)
        pq.write_table(merged, new / name, compression="zstd")
        swap_folder(new, folder)
    finally:
        shutil.rmtree(new, ignore_errors=True)
    return len(chosen)


def compact_table(table_path: str | Path, *, tag: str = "q", before_batch: int | None = None,
                  min_files: int = MIN_FILES, small_bytes: int = SMALL_FILE_BYTES) -> CompactionResult:
    """Compact every partition folder of a table that has enough small files."""
    table_path = Path(table_path)
    result = CompactionResult()
    if not table_path.is_dir():
        return result
    staging = staging_root(table_path)
    folders = {p.parent for p in table_path.rglob("part-*.parquet")}
    for folder in sorted(folders):
        try:
            merged = compact_folder(folder, staging, tag=tag, before_batch=before_batch,
                                    min_files=min_files, small_bytes=small_bytes)
        except (OSError, pa.ArrowException) as exc:  # compaction is an optimisation: never fail a batch
            log.warning("could not compact %s: %s", folder, exc)
            continue
        if merged:
            result.folders += 1
            result.files_merged += merged
            result.files_written += 1
    return result
