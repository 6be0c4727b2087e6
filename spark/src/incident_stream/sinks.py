"""Exactly-once Parquet writes for micro-batches, safe for readers that list the table folder directly.

Readers (DuckDB in the dashboard, the Airflow reconciliation) read ``DATA_DIR/<table>/**/*.parquet``
without Spark's ``_spark_metadata`` log, so a plain folder listing must never show duplicates or
half-written files. A micro-batch's files are therefore published in these steps:

1. the batch is written into a staging folder outside the table (``DATA_DIR/_staging``): by Spark
   (``write_batch_exactly_once``), or by the tasks of the ingest query's source (ingest_files.py), whose
   files the sink hands to ``publish_files``;
2. names every non-empty output file deterministically: ``part-<tag>-b<batch id>-<n>.parquet`` in its
   partition folder (``tag`` identifies the query's checkpoint, so a fresh checkpoint never reuses names);
3. records those names in a journal, then moves each file into the table with an atomic rename that
   replaces a file of the same name;
4. deletes files an earlier attempt of the same batch wrote that this attempt did not (from the journal).

Spark replays a micro-batch whose commit did not reach the checkpoint with the same offsets and the
same batch id, so a replay overwrites the first attempt's files instead of adding to them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import DataFrame

STAGING = "_staging"
JOURNAL = "_journal"
FILE_NAME = re.compile(r"^part-(?P<tag>[A-Za-z0-9]+)-(?P<kind>[bc])(?P<batch>\d{12})-(?P<rest>[A-Za-z0-9]+)\.parquet$")


@dataclass
class WriteResult:
    rows: int = 0
    files: list[Path] = field(default_factory=list)
    per_partition: dict[str, int] = field(default_factory=dict)  # partition folder -> rows


def staging_root(table_path: Path) -> Path:
    return table_path.parent / STAGING


def batch_file_name(tag: str, batch_id: int, seq: int) -> str:
    return f"part-{tag}-b{batch_id:012d}-{seq:04d}.parquet"


def parse_file_name(name: str) -> tuple[str, str, int] | None:
    """(tag, 'b' for a batch file or 'c' for a compacted one, batch id) of a table file, or None."""
    match = FILE_NAME.match(name)
    if not match:
        return None
    return match["tag"], match["kind"], int(match["batch"])


def _journal_path(table_path: Path, tag: str, batch_id: int) -> Path:
    return staging_root(table_path) / JOURNAL / table_path.name / f"{tag}-b{batch_id:012d}.json"


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_batch_exactly_once(df: DataFrame, batch_id: int, table_path: str | Path,
                             partition_cols: Sequence[str] = (), *, tag: str = "q",
                             options: Mapping[str, str] | None = None) -> WriteResult:
    """Write one micro-batch's rows into a Parquet table so that a replay replaces, never duplicates.
    `options`: Parquet writer options (e.g. per-column dictionary encoding)."""
    table_path = Path(table_path)
    if not re.fullmatch(r"[A-Za-z0-9]+", tag):
        raise ValueError(f"tag {tag!r} must be letters and digits only")
    stage = staging_root(table_path) / f"{table_path.name}-{tag}-b{batch_id}-{uuid.uuid4().hex[:8]}"
    try:
        writer = df.write.mode("overwrite").options(**(options or {}))
        if partition_cols:
            writer = writer.partitionBy(*partition_cols)
        writer.parquet(str(stage))
        return publish_staged(stage, table_path, batch_id, tag)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish_staged(stage: Path, table_path: Path, batch_id: int, tag: str) -> WriteResult:
    """Move the Parquet files of a batch Spark wrote into a staging folder into the table."""
    staged = [(source, str(source.parent.relative_to(stage))) for source in stage.rglob("*.parquet")]
    return publish_files(staged, table_path, batch_id, tag)


def publish_files(staged: Sequence[tuple[Path, str]], table_path: Path, batch_id: int, tag: str) -> WriteResult:
    """Move a batch's staged Parquet files, each (file, partition folder inside the table), into the table
    under deterministic names (in the order of folder and staged path); empty files are left out."""
    result = WriteResult()
    moves: list[tuple[Path, Path, int]] = []
    for seq, (source, folder) in enumerate(sorted(staged, key=lambda entry: (entry[1], str(entry[0])))):
        rows = pq.read_metadata(source).num_rows
        if rows == 0:
            continue
        moves.append((source, table_path / folder / batch_file_name(tag, batch_id, seq), rows))
    journal = _journal_path(table_path, tag, batch_id)
    previous: set[str] = set()
    if journal.exists():  # an earlier attempt of this batch: its files may differ from ours
        previous = set(json.loads(journal.read_text(encoding="utf-8"))["files"])
    targets = [str(target.relative_to(table_path)) for _, target, _ in moves]
    _write_atomically(journal, json.dumps({"batch_id": batch_id, "files": targets}))
    for source, target, rows in moves:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        result.rows += rows
        result.files.append(target)
        folder = str(target.parent.relative_to(table_path))
        result.per_partition[folder] = result.per_partition.get(folder, 0) + rows
    for stale in previous - set(targets):
        (table_path / stale).unlink(missing_ok=True)
    _forget_journals(table_path, tag, before=batch_id)
    return result


def discard_batch(table_path: str | Path, batch_id: int, tag: str = "q") -> None:
    """A batch with nothing for this table: remove what an earlier attempt of it may have written."""
    table_path = Path(table_path)
    journal = _journal_path(table_path, tag, batch_id)
    if journal.exists():
        for stale in json.loads(journal.read_text(encoding="utf-8"))["files"]:
            (table_path / stale).unlink(missing_ok=True)
        journal.unlink(missing_ok=True)
    _forget_journals(table_path, tag, before=batch_id)


def _forget_journals(table_path: Path, tag: str, before: int) -> None:
    """Journals of batches before `before` are committed in the checkpoint and never replayed."""
    folder = staging_root(table_path) / JOURNAL / table_path.name
    for path in folder.glob(f"{tag}-b*.json"):
        try:
            batch = int(path.stem.rsplit("-b", 1)[1])
        except (IndexError, ValueError):
            continue
        if batch < before:
            path.unlink(missing_ok=True)


def clear_staging(data_dir: Path) -> None:
    """Remove leftovers of interrupted writes (never visible to readers). Journals are kept."""
    root = Path(data_dir) / STAGING
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.name != JOURNAL:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
