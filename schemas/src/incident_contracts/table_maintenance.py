"""`python -m incident_contracts.table_maintenance` (`make maintain`, the table_maintenance DAG): keep the Delta
tables quick to read and bounded in size while the streaming job goes on appending to them.

Each table goes through these steps, in this order:

1. retention: rows older than RETENTION_DAYS_<TABLE> days by the row's date are deleted (0 keeps all).
   events by event_date and dead_letter by dl_date lose whole partitions: the commit removes their files
   without reading or rewriting any. metrics go by timestamp: files holding old rows are rewritten without
   them. incident_updates is the history of every incident and is always kept.
2. compaction: the small files of each partition (one per micro-batch) are bin-packed into files of about
   100 MB (``TableStore.compact``, Delta's optimize). The replaced files are removed with dataChange=false:
   the table's rows do not change, so no reader, streaming or not, sees them twice.
3. vacuum: files no version references that are older than TABLE_VACUUM_RETAIN_HOURS are deleted: the ones
   retention and compaction replaced that long ago (a reader of a snapshot younger than that keeps its
   files) and the ones no commit ever named (a replayed micro-batch's, a killed writer's). The files of a
   micro-batch being written are seconds old, never hours.
4. log checkpoint and cleanup: a checkpoint of the latest version (readers replay fewer commits) and the
   removal of log entries older than the table's log retention (delta.logRetentionDuration, 30 days).

The streaming job commits concurrently: blind appends carrying its application transaction id. A
maintenance commit that a concurrent commit invalidates fails in delta-rs's conflict checker; the step is
then run again on the newer version. Every step is a function of the version it starts from (a predicate,
the small files present), so running it again loses no row and adds none twice, and the job's rows, which
a step never rewrites unless they are old, are untouched. The job's appends retry likewise after a
concurrent delete (``TableStore.commit_files``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from deltalake import CommitProperties
from deltalake.exceptions import CommitFailedError

from incident_contracts.settings import Settings, SettingsError, load_settings
from incident_contracts.table_store import MAX_COMMIT_RETRIES, TableStore
from incident_contracts.tables import TABLES

log = logging.getLogger(__name__)

T = TypeVar("T")

# A step that a concurrent commit invalidated is run again on the newer version until it has tried for this
# many seconds: a rewrite that takes longer than the writer's interval between commits conflicts again and
# again while the writer is busy, and gets through in a quieter moment. Maintenance is not urgent.
STEP_RETRY_SECONDS = 300.0


@dataclass(frozen=True)
class Retention:
    """How a table's rows age: by a partition column holding the row's date (whole files go), or by a
    timestamp column (files holding old rows are rewritten without them)."""

    column: str
    by_partition: bool

    def predicate(self, cutoff: date) -> str:
        """Rows dated before `cutoff` (delta-rs SQL)."""
        if self.by_partition:
            return f"\"{self.column}\" < '{cutoff.isoformat()}'"
        return f"\"{self.column}\" < '{cutoff.isoformat()}T00:00:00Z'"


RETENTION: dict[str, Retention] = {
    "events": Retention("event_date", by_partition=True),
    "dead_letter": Retention("dl_date", by_partition=True),
    "metrics": Retention("timestamp", by_partition=False),
}


def retention_days(settings: Settings, table: str) -> int:
    """Days of rows kept in `table` (0: all of them; incident_updates keeps all)."""
    return {"events": settings.retention_days_events, "dead_letter": settings.retention_days_dead_letter,
            "metrics": settings.retention_days_metrics}.get(table, 0)


def retention_cutoff(days: int, now: datetime) -> date | None:
    """The oldest date kept: today (UTC) minus `days`; rows dated before it go. None keeps everything."""
    return None if days <= 0 else now.astimezone(UTC).date() - timedelta(days=days)


@dataclass
class TableReport:
    table: str
    version_before: int | None = None
    version_after: int | None = None
    files_before: int = 0
    files_after: int = 0
    rows_deleted: int = 0
    files_compacted: int = 0  # small files compaction replaced ...
    files_compacted_into: int = 0  # ... by this many
    files_rewritten: int = 0  # files retention rewrote without their old rows (metrics only)
    files_vacuumed: int = 0
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)  # seconds by step
    note: str = ""
    error: str | None = None


@dataclass
class MaintenanceReport:
    data_dir: str
    tables: list[TableReport]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(report.error is None for report in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {"data_dir": self.data_dir, "ok": self.ok, "seconds": self.seconds,
                "tables": {report.table: asdict(report) for report in self.tables}}


def _again_on_conflict(table: str, step: str, action: Callable[[], T]) -> T:
    """Run a step; when a concurrent commit invalidates its commit, run it again on the newer version, backing
    off (with jitter, so that it is not in step with a periodic writer) for up to STEP_RETRY_SECONDS."""
    deadline = time.monotonic() + STEP_RETRY_SECONDS
    attempt = 0
    while True:
        attempt += 1
        try:
            return action()
        except CommitFailedError as exc:
            if time.monotonic() >= deadline:
                raise
            reason = str(exc).splitlines()[0]
            log.info("%s: %s conflicted with a concurrent commit (%s); running it again on the newer version "
                     "(attempt %d)", table, step, reason, attempt + 1)
            time.sleep(random.uniform(0.5, 1.5) * min(0.1 * attempt, 2.0))


def _commit_properties() -> CommitProperties:
    return CommitProperties(max_commit_retries=MAX_COMMIT_RETRIES)


# --- the steps -------------------------------------------------------------------------------------
def apply_retention(store: TableStore, table: str, days: int, now: datetime | None = None) -> dict[str, int]:
    """Delete the rows of `table` dated more than `days` days before today (UTC).
    Returns {"rows_deleted", "files_removed", "files_rewritten"}."""
    rule = RETENTION.get(table)
    cutoff = retention_cutoff(days, now or datetime.now(UTC))
    if rule is None or cutoff is None:
        return {"rows_deleted": 0, "files_removed": 0, "files_rewritten": 0}

    def delete() -> dict[str, int]:
        dt = store.open(table)
        if dt is None:
            return {"rows_deleted": 0, "files_removed": 0, "files_rewritten": 0}
        before = dt.version()
        metrics = dt.delete(rule.predicate(cutoff), commit_properties=_commit_properties())
        if dt.version() != before:  # metrics: files rewritten without the old rows
            store.make_durable(table, dt, since=before, data_files=True)
        return {"rows_deleted": int(metrics.get("num_deleted_rows") or 0),
                "files_removed": int(metrics.get("num_removed_files") or 0),
                "files_rewritten": int(metrics.get("num_added_files") or 0)}

    return _again_on_conflict(table, "retention", delete)


def compact(store: TableStore, table: str) -> dict[str, int]:
    """Bin-pack the small files of each partition of `table`. Returns {"files_removed", "files_added"}."""
    metrics = _again_on_conflict(table, "compaction", lambda: store.compact(table))
    return {"files_removed": int(metrics.get("numFilesRemoved") or 0),
            "files_added": int(metrics.get("numFilesAdded") or 0)}


def vacuum(store: TableStore, table: str, retain_hours: float) -> int:
    """Delete the files of `table` that no version references and that are older than `retain_hours`
    (rounded up to whole hours, delta-rs's unit). Returns how many were deleted."""
    hours = math.ceil(retain_hours)

    def run() -> int:
        dt = store.open(table)
        if dt is None:
            return 0
        before = dt.version()
        # full: also files never committed (lite only deletes files removed by a commit); both kinds only
        # once older than the retention, whatever the table's delta.deletedFileRetentionDuration says.
        deleted = dt.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=False, full=True,
                            commit_properties=_commit_properties())
        if deleted:  # its commits record the deletion (VACUUM START/END)
            store.make_durable(table, dt, since=before)
        return len(deleted)

    return _again_on_conflict(table, "vacuum", run)


def checkpoint(store: TableStore, table: str) -> None:
    """Write a log checkpoint of the latest version and delete the log entries past the log retention."""
    dt = store.open(table)
    if dt is None:
        return
    dt.create_checkpoint()
    dt.cleanup_metadata()


def _file_count(store: TableStore, table: str) -> tuple[int | None, int]:
    dt = store.open(table)
    return (None, 0) if dt is None else (dt.version(), len(dt.file_uris()))


# --- one table, every table ------------------------------------------------------------------------
def maintain_table(store: TableStore, table: str, settings: Settings, now: datetime | None = None) -> TableReport:
    """Retention, compaction, vacuum and log checkpoint of one table; raises when a step fails."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}: expected one of {', '.join(TABLES)}")
    started = time.monotonic()
    report = TableReport(table)
    report.version_before, report.files_before = _file_count(store, table)
    if report.version_before is None:
        report.note = "the table does not exist yet"
        log.info("%s: %s, nothing to maintain", table, report.note)
        return report

    def timed(step: str, action: Callable[[], T]) -> T:
        begun = time.monotonic()
        result = action()
        report.steps[step] = round(time.monotonic() - begun, 3)
        return result

    days = retention_days(settings, table)
    removed = timed("retention", lambda: apply_retention(store, table, days, now))
    report.rows_deleted, report.files_rewritten = removed["rows_deleted"], removed["files_rewritten"]
    if table not in RETENTION:
        log.info("%s: no retention (the incidents' history is kept)", table)
    elif days == 0:
        log.info("%s: no retention (RETENTION_DAYS_%s=0 keeps every row)", table, table.upper())
    else:
        log.info("%s: retention of %d days deleted %d rows (%d files removed, %d rewritten) in %.2f s", table, days,
                 report.rows_deleted, removed["files_removed"], report.files_rewritten, report.steps["retention"])

    compacted = timed("compaction", lambda: compact(store, table))
    report.files_compacted, report.files_compacted_into = compacted["files_removed"], compacted["files_added"]
    log.info("%s: compaction merged %d small files into %d in %.2f s", table, report.files_compacted,
             report.files_compacted_into, report.steps["compaction"])

    report.files_vacuumed = timed("vacuum", lambda: vacuum(store, table, settings.table_vacuum_retain_hours))
    log.info("%s: vacuum deleted %d unreferenced files older than %g h in %.2f s", table, report.files_vacuumed,
             settings.table_vacuum_retain_hours, report.steps["vacuum"])

    timed("checkpoint", lambda: checkpoint(store, table))
    report.version_after, report.files_after = _file_count(store, table)
    report.seconds = round(time.monotonic() - started, 3)
    log.info("%s: log checkpoint at version %s; %d files before, %d after, %.2f s in all", table,
             report.version_after, report.files_before, report.files_after, report.seconds)
    return report


def maintain(settings: Settings, tables: Iterable[str] | None = None, now: datetime | None = None) -> MaintenanceReport:
    """Maintain every table (or the given ones) one after the other. A table that fails is reported with its
    error and the others are still maintained."""
    store = TableStore.from_settings(settings)
    started = time.monotonic()
    reports = []
    for table in tables or TABLES:
        try:
            reports.append(maintain_table(store, table, settings, now))
        except Exception as exc:
            log.error("%s: maintenance failed: %s", table, exc)
            reports.append(TableReport(table, error=f"{type(exc).__name__}: {exc}"))
    report = MaintenanceReport(store.root, reports, round(time.monotonic() - started, 3))
    log.info("maintenance of %s: %d tables in %.2f s, %d rows deleted, %d files compacted into %d, %d files "
             "vacuumed%s", store.root, len(reports), report.seconds, sum(r.rows_deleted for r in reports),
             sum(r.files_compacted for r in reports), sum(r.files_compacted_into for r in reports),
             sum(r.files_vacuumed for r in reports),
             "" if report.ok else "; failed: " + ", ".join(r.table for r in reports if r.error))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m incident_contracts.table_maintenance",
        description="Retention, compaction, vacuum and log checkpoint of the Delta tables under DATA_DIR, safe "
                    "while the streaming job writes; prints a JSON report (settings: RETENTION_DAYS_*, "
                    "TABLE_VACUUM_RETAIN_HOURS).")
    parser.add_argument("--table", action="append", choices=list(TABLES),
                        help="maintain only this table (repeatable; default: all)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.value, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = maintain(settings, args.table)
    print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
