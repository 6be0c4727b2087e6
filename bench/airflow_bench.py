"""Reconciliation speed: how fast a pipeline run's records are proven present in events + dead_letter.

Builds Parquet tables shaped like the Spark job's output (many small files in hive partitions, 1% of
records in dead_letter, a few rows of other runs outside the range), then times what the reconcile
task does: read the run's offsets from both tables with DuckDB and check every offset of the range
appears once. The practical limit is a bare DuckDB scan of the same two columns of the same files.
Repeats alternate the two; medians with min-max are reported.

    .venv/bin/python bench/airflow_bench.py [--quick] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
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
from incident_airflow.run_tables import data_files, offsets_in_ranges  # noqa: E402

TOPIC = "logs.events"
PARTITIONS = 2
START = 1_000  # offsets before the run: rows of an earlier run, outside the range


def build_tables(folder: Path, records: int, files: int) -> dict[int, tuple[int, int]]:
    """events/ and dead_letter/ for `records` records of one run; returns the run's offset ranges."""
    per_partition = records // PARTITIONS
    ranges = {p: (START, START + per_partition) for p in range(PARTITIONS)}
    now = datetime.now(UTC)
    rng = np.random.default_rng(3)
    for p, (start, end) in ranges.items():
        offsets = np.arange(start - START, end, dtype=np.int64)  # includes the earlier run's rows
        dead = rng.random(offsets.size) < 0.01
        for table, mask in (("events", ~dead), ("dead_letter", dead)):
            chosen = offsets[mask]
            for i, chunk in enumerate(np.array_split(chosen, max(1, files // (2 * PARTITIONS)))):
                hour = i % 4
                target = folder / table / ("event_date=2026-11-23" if table == "events" else "dl_date=2026-11-23")
                target = target / f"event_hour={hour}" if table == "events" else target
                target.mkdir(parents=True, exist_ok=True)
                stamps = pa.array([now] * chunk.size, type=pa.timestamp("ms", tz="UTC"))
                columns = {"topic": pa.array([TOPIC] * chunk.size), "kafka_partition": pa.array(
                    np.full(chunk.size, p, dtype=np.int32)), "kafka_offset": pa.array(chunk),
                    ("ingest_time" if table == "events" else "detected_at"): stamps,
                    "message": pa.array(["x" * 80] * chunk.size)}
                pq.write_table(pa.table(columns), target / f"part-p{p}-{i:05d}.parquet")
    return ranges


def time_reconcile(folder: Path, ranges: dict[int, tuple[int, int]]) -> tuple[float, bool]:
    since = datetime.now(UTC) - timedelta(hours=1)
    started = time.perf_counter()
    events = offsets_in_ranges(folder / "events", TOPIC, ranges, since, "ingest_time")
    dead = offsets_in_ranges(folder / "dead_letter", TOPIC, ranges, since, "detected_at")
    result = reconcile(TOPIC, ranges, events, dead)
    return time.perf_counter() - started, result.ok


def time_scan(folder: Path) -> float:
    files = data_files(folder / "events") + data_files(folder / "dead_letter")
    started = time.perf_counter()
    with duckdb.connect() as con:
        con.execute("SET threads TO 2")
        con.execute("SELECT kafka_partition, kafka_offset FROM read_parquet($f, union_by_name = true)",
                    {"f": files}).fetchnumpy()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer records and repeats (about a minute)")
    parser.add_argument("--json", help="write the results as JSON here")
    args = parser.parse_args()
    records, files, repeats = (400_000, 400, 3) if args.quick else (2_000_000, 2_000, 5)
    with tempfile.TemporaryDirectory(prefix="airflow-bench-") as tmp:
        folder = Path(tmp)
        ranges = build_tables(folder, records, files)
        count = sum(e - s for s, e in ranges.values())
        nfiles = len(data_files(folder / "events")) + len(data_files(folder / "dead_letter"))
        reconcile_s, scan_s = [], []
        for _ in range(repeats):
            seconds, ok = time_reconcile(folder, ranges)
            if not ok:
                print("error: the benchmark's tables do not reconcile", file=sys.stderr)
                return 1
            reconcile_s.append(seconds)
            scan_s.append(time_scan(folder))
    rates = [count / s for s in reconcile_s]
    scans = [2 * count / s for s in scan_s]  # the scan also reads the earlier run's rows
    metrics: list[Metric] = [
        median_metric("reconcile throughput", rates, "records/s", target=500_000, op=">=",
                      limit=float(np.median(scans)),
                      note=f"{count:,} records in {nfiles:,} files; limit = bare DuckDB scan rows/s"),
        median_metric("reconcile time", reconcile_s, "s", note=f"{count:,} records"),
    ]
    emit("airflow reconciliation", metrics, args.json, records=count, files=nfiles, repeats=repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
