"""Which table files a micro-batch's tasks wrote: the batch's plan, and one manifest per task attempt.

The job reads each offset range once (logs_source.py): a task writes its events and dead letters as new
files of the tables and hands only partial buckets to detection, so the files' names never pass through
Spark. The query's sink (job.BatchSink) learns them here, after the batch ran:

    <tables root>/_stream_batches/plans/<end tag>.json     written by the source's planner on the driver:
                                                           {"end": <end offset>, "ranges": [[p, start, end], ...]}
    <tables root>/_stream_batches/tasks/p<p>-<start>-<end>.<attempt>.json
                                                           written by a task attempt once its files are
                                                           complete: {"files": [{"table", "path", ...}]}

The end tag is a digest of the batch's end offset, which Spark records in the checkpoint's offset log
before the batch runs; the sink reads it there. A batch's ranges are exact (one task per partition, from
the previous batch's end to this one's), so a manifest of another batch never matches. When a range
has manifests of several attempts (a retried task, a replayed batch, a task of a killed job still
finishing), one is taken and the files of the others are deleted: they are in no commit.

The folder is cleared after every committed batch and whenever the query starts: any manifest found
later describes files no commit names, which is what makes deleting a replay's files safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from incident_contracts.table_store import DataFile, TableStore, partition_values
from incident_stream.kafka_read import Range

log = logging.getLogger("incident_stream.batch_staging")

STAGING_FOLDER = "_stream_batches"


class StagingError(RuntimeError):
    """A micro-batch's files cannot be found (a task's manifest is missing or unreadable)."""


def end_tag(end: Mapping[str, object]) -> str:
    """The digest naming a batch's plan: of its end offset as the source returns it (and Spark logs it)."""
    return hashlib.sha256(json.dumps(end, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def range_name(rng: Range) -> str:
    return f"p{rng.partition}-{rng.start}-{rng.end}"


@dataclass
class StagedBatch:
    """The files of one micro-batch, by table, and those of attempts that lost (to delete)."""

    files: dict[str, list[DataFile]] = field(default_factory=dict)
    discarded: dict[str, list[DataFile]] = field(default_factory=dict)

    def rows(self, table: str) -> int:
        return sum(f.rows for f in self.files.get(table, []))


def file_entry(table: str, file: DataFile) -> dict:
    return {"table": table, "path": file.path, "size": file.size, "rows": file.rows, "stats": dict(file.stats)}


def file_of(entry: Mapping) -> tuple[str, DataFile]:
    return str(entry["table"]), DataFile(str(entry["path"]), int(entry["size"]), int(entry["rows"]),
                                         partition_values(str(entry["path"])), dict(entry["stats"]))


class BatchStaging:
    def __init__(self, filesystem: pafs.FileSystem, root: str):
        self.filesystem = filesystem
        self.base = f"{root}/{STAGING_FOLDER}"
        self._local = isinstance(filesystem, pafs.LocalFileSystem)

    @classmethod
    def of(cls, store: TableStore) -> BatchStaging:
        return cls(*store.filesystem())

    # --- writing: the planner and the tasks -------------------------------------------------------------
    def write_plan(self, end: Mapping[str, object], ranges: Sequence[Range]) -> None:
        self._write(f"plans/{end_tag(end)}.json",
                    {"end": end, "ranges": [[r.partition, r.start, r.end] for r in ranges]})

    def write_task(self, rng: Range, files: Iterable[tuple[str, DataFile]]) -> None:
        """The manifest of one finished task attempt (its files are complete)."""
        self._write(f"tasks/{range_name(rng)}.{uuid.uuid4().hex}.json",
                    {"files": [file_entry(table, f) for table, f in files]})

    def _write(self, relative: str, content: dict) -> None:
        path = f"{self.base}/{relative}"
        data = json.dumps(content, default=str).encode()
        if not self._local:  # an object store's PUT is atomic
            with self.filesystem.open_output_stream(path) as out:
                out.write(data)
            return
        folder = path.rsplit("/", 1)[0]
        self.filesystem.create_dir(folder, recursive=True)
        partial = f"{folder}/.{uuid.uuid4().hex}.tmp"
        with self.filesystem.open_output_stream(partial) as out:
            out.write(data)
        self.filesystem.move(partial, path)  # a rename: readers see the whole manifest or none

    # --- reading: the sink ------------------------------------------------------------------------------
    def batch(self, end: Mapping[str, object]) -> StagedBatch:
        """The files of the batch that ends at `end` (the offset log's entry). A batch without a plan read
        nothing (Spark ran it to advance time only)."""
        plan = self._read(f"plans/{end_tag(end)}.json")
        if plan is None:
            return StagedBatch()
        wanted = {range_name(Range(*r)) for r in plan["ranges"]}
        attempts: dict[str, list[str]] = {}
        for info in self._list("tasks"):
            name = info.base_name
            if name.endswith(".json") and not name.startswith("."):
                attempts.setdefault(name.split(".", 1)[0], []).append(name)
        staged = StagedBatch()
        for rng in sorted(wanted):
            names = sorted(attempts.get(rng, []))
            if not names:
                raise StagingError(f"the task that read {rng} left no manifest under {self.base}/tasks; the batch "
                                   "is replayed when the job restarts")
            for index, name in enumerate(names):
                manifest = self._read(f"tasks/{name}")
                if manifest is None:
                    raise StagingError(f"the manifest {name} under {self.base}/tasks vanished while read")
                into = staged.files if index == 0 else staged.discarded
                for entry in manifest["files"]:
                    table, file = file_of(entry)
                    into.setdefault(table, []).append(file)
        return staged

    def clear(self) -> None:
        """Forget every plan and manifest: the batch is committed, or the query is starting."""
        try:
            self.filesystem.delete_dir_contents(self.base, missing_dir_ok=True)
        except (OSError, FileNotFoundError) as exc:
            log.warning("could not clear %s: %s", self.base, exc)

    def _read(self, relative: str) -> dict | None:
        path = f"{self.base}/{relative}"
        try:
            if self.filesystem.get_file_info(path).type == pafs.FileType.NotFound:
                return None
            with self.filesystem.open_input_stream(path) as source:
                return json.loads(source.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StagingError(f"cannot read {self.base}/{relative}: {exc}") from exc

    def _list(self, relative: str) -> list[pafs.FileInfo]:
        with contextlib.suppress(FileNotFoundError):
            return self.filesystem.get_file_info(pafs.FileSelector(f"{self.base}/{relative}", allow_not_found=True))
        return []
