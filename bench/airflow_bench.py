"""Reconciliation speed: how fast a pipeline run's records are proven present in events + dead_letter.

Builds Delta Lake tables shaped like the Spark job's output (many small files in hive partitions, a
commit per micro-batch, 1% of records in dead_letter), then times what the reconcile task does: read
the run's offsets from one snapshot of both tables and check every offset of the range appears once.
Two layouts: the run alone (a few rows of an earlier run, outside the range, share its files), and the
run after four earlier runs of the same size (their files are skipped by their offset statistics).
The practical limit is a bare DuckDB scan of the same two columns of the files the run's statistics
select. Repeats alternate the two; medians with min-max are reported.

    .venv/bin/python bench/airflow_bench.py [--quick] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from report import Metric, emit, median_metric  # noqa: E402

from incident_airflow.reconcile import reconcile  # noqa: E402
from incident_airflow.run_tables import offsets_in_ranges, range_conditions  # noqa: E402
from incident_contracts.table_store import DataFile, TableStore, conform, data_file  # noqa: E402
from incident_contracts.tables import TABLES  # noqa: E402

TOPIC = "logs.events"
PARTITIONS = 2
START = 1_000  # offsets before the run: rows of an earlier run, outside the range
FILES_PER_COMMIT = 10  # a micro-batch commits a few files per table
EARLIER_RUNS = 4


def _rows(table: str, partition: int, offsets: np.ndarray, hour: int, stamp: datetime) -> pa.Table:
    """Rows of `table` with the columns reconciliation reads set and a message; the rest left null."""
    count = offsets.size
    columns = {"topic": pa.array([TOPIC] * count), "kafka_partition": pa.array(np.full(count, partition, np.int32)),
               "kafka_offset": pa.array(offsets),
               ("ingest_time" if table == "events" else "detected_at"): pa.array([stamp] * count, pa.timestamp("us",
                                                                                                             "UTC")),
               ("message" if table == "events" else "detail"): pa.array(["x" * 80] * count)}
    if table == "events":
        columns |= {"event_date": pa.array(["2026-11-23"] * count), "event_hour": pa.array(np.full(count, hour,
                                                                                                   np.int32))}
    else:
        columns["dl_date"] = pa.array(["2026-11-23"] * count)
    schema = TABLES[table].schema
    return pa.table({f.name: columns.get(f.name, pa.nulls(count, f.type)) for f in schema})


def write_file(store: TableStore, table: str, rows: pa.Table) -> DataFile:
    """One data file of the table (one partition value), uncommitted, as the job's tasks write them:
    ``TableStore.write_files`` opens the table for every call, which takes minutes over thousands of files."""
    spec = TABLES[table]
    rows = conform(rows, spec.schema)
    folder = "/".join(f"{p}={rows.column(p)[0].as_py()}" for p in spec.partitions)
    relative = f"{folder}/part-{uuid.uuid4().hex}.zstd.parquet"
    path = store.local_path(table) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows.drop_columns(list(spec.partitions)), path, compression="zstd")
    return data_file(relative, path.stat().st_size, pq.read_metadata(path))


def build_tables(store: TableStore, first: int, records: int, files: int) -> dict[int, tuple[int, int]]:
    """events and dead_letter for `records` records of one run from offset `first` (with START rows of an
    earlier run before it in its first files), a commit per FILES_PER_COMMIT files of a table; returns the
    run's offset ranges."""
    per_partition = records // PARTITIONS
    ranges = {p: (first, first + per_partition) for p in range(PARTITIONS)}
    now = datetime.now(UTC)
    rng = np.random.default_rng(3 + first)
    pending: dict[str, list[DataFile]] = {"events": [], "dead_letter": []}
    for table in pending:
        store.create(table)
    for p, (start, end) in ranges.items():
        offsets = np.arange(max(0, start - START), end, dtype=np.int64)  # includes the earlier run's rows
        dead = rng.random(offsets.size) < 0.01
        for table, mask in (("events", ~dead), ("dead_letter", dead)):
            for i, chunk in enumerate(np.array_split(offsets[mask], max(1, files // (2 * PARTITIONS)))):
                pending[table].append(write_file(store, table, _rows(table, p, chunk, i % 4, now)))
                if len(pending[table]) >= FILES_PER_COMMIT:
                    store.commit_files(table, pending[table])
                    pending[table] = []
    for table, written in pending.items():
        if written:
            store.commit_files(table, written)
    return ranges


def time_reconcile(store: TableStore, ranges: dict[int, tuple[int, int]]) -> tuple[float, bool]:
    since = datetime.now(UTC) - timedelta(hours=1)
    started = time.perf_counter()
    events = offsets_in_ranges(store, "events", TOPIC, ranges, since, "ingest_time")
    dead = offsets_in_ranges(store, "dead_letter", TOPIC, ranges, since, "detected_at")
    result = reconcile(TOPIC, ranges, events, dead)
    return time.perf_counter() - started, result.ok


def run_files(store: TableStore, ranges: dict[int, tuple[int, int]]) -> list[str]:
    """The files of both tables whose statistics say they may hold the run's offsets (those reconciliation
    opens)."""
    conditions = range_conditions(TOPIC, ranges)
    return [uri for table in ("events", "dead_letter") for uri in store.open(table).file_uris(
        file_pruning_predicate=conditions)]


def time_scan(files: list[str]) -> tuple[float, int]:
    """A bare DuckDB scan of (kafka_partition, kafka_offset) of the given files, without a filter: seconds, rows."""
    started = time.perf_counter()
    with duckdb.connect() as con:
        con.execute("SET threads TO 2")
        rows = con.execute("SELECT kafka_partition, kafka_offset FROM read_parquet($f, union_by_name = true)",
                           {"f": files}).fetchnumpy()
    return time.perf_counter() - started, len(rows["kafka_offset"])


def measure(store: TableStore, ranges: dict[int, tuple[int, int]], repeats: int) -> tuple[list[float], list[float]]:
    """Reconcile seconds and bare-scan rows/s of the run's files, alternating."""
    files = run_files(store, ranges)
    reconcile_s, scans = [], []
    for _ in range(repeats):
        seconds, ok = time_reconcile(store, ranges)
        if not ok:
            raise SystemExit("error: the benchmark's tables do not reconcile")
        reconcile_s.append(seconds)
        scan_s, rows = time_scan(files)
        scans.append(rows / scan_s)
    return reconcile_s, scans


def committed_files(store: TableStore) -> int:
    return sum(len(store.open(table).file_uris()) for table in ("events", "dead_letter"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer records and repeats (about a minute)")
    parser.add_argument("--json", help="write the results as JSON here")
    args = parser.parse_args()
    records, files, repeats = (400_000, 400, 3) if args.quick else (2_000_000, 2_000, 5)
    per_partition = records // PARTITIONS
    with tempfile.TemporaryDirectory(prefix="airflow-bench-") as tmp:
        alone = TableStore(str(Path(tmp) / "alone"))
        ranges = build_tables(alone, START, records, files)
        count = sum(e - s for s, e in ranges.values())
        nfiles, nrun = committed_files(alone), len(run_files(alone, ranges))
        reconcile_s, scans = measure(alone, ranges, repeats)

        history = TableStore(str(Path(tmp) / "history"))
        for run in range(EARLIER_RUNS + 1):
            later = build_tables(history, START + run * per_partition, records, files)
        history_files = committed_files(history)
        history_run_files = len(run_files(history, later))
        history_s, history_scans = measure(history, later, repeats)
    metrics: list[Metric] = [
        median_metric("reconcile throughput", [count / s for s in reconcile_s], "records/s", target=500_000,
                      op=">=", limit=float(np.median(scans)),
                      note=f"{count:,} records in {nfiles:,} files ({nrun:,} hold the run's offsets); "
                           "limit = bare DuckDB scan rows/s of those files"),
        median_metric("reconcile time", reconcile_s, "s", note=f"{count:,} records"),
        median_metric(f"reconcile throughput after {EARLIER_RUNS} earlier runs", [count / s for s in history_s],
                      "records/s", target=500_000, op=">=", limit=float(np.median(history_scans)),
                      note=f"{count:,} records; the tables hold {history_files:,} files, {history_run_files:,} "
                           "with the run's offsets"),
        median_metric(f"reconcile time after {EARLIER_RUNS} earlier runs", history_s, "s"),
    ]
    emit("airflow reconciliation", metrics, args.json, records=count, files=nfiles, run_files=nrun,
         history_files=history_files, history_run_files=history_run_files, repeats=repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
