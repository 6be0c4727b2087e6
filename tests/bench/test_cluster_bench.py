"""The cluster benchmark's pure pieces: the tier's ports, rates from a job summary, run order, the first
acknowledgement of a new partition leader, a micro-batch in flight in a checkpoint, and the rows of the
metrics table it reads."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
cluster_bench = importlib.import_module("cluster_bench")


def test_tier_env_gives_distinct_ports_that_make_a_valid_layout(tmp_path: Path) -> None:
    from incident_contracts.settings import Settings
    from incident_stack.cluster import ClusterLayout

    # 40001 twice: the repeat is skipped; more distinct ports than the tier needs, so a miscount shows
    repeated = iter([40001, *range(40001, 40041)])
    env = cluster_bench.tier_env(tmp_path, lambda: next(repeated))
    assert env["RUNTIME_DIR"] == str(tmp_path / "runtime") and env["DATA_DIR"] == str(tmp_path / "data")
    ports = [int(p) for k, v in env.items() if k.startswith("CLUSTER_") for p in v.split(",")]
    # Kafka 3 + 3 controllers, Spark 5, PostgreSQL, Airflow 3, the dashboard, log-ingest, the notifier's health
    # and metrics ports, the job's metrics port
    assert len(ports) == len(set(ports)) == 20
    assert sorted(ports) == list(range(40001, 40021))
    values = {k.lower(): v for k, v in env.items() if k != "ENV_FILE"}
    layout = ClusterLayout.from_settings(Settings(_env_file=None, **values))  # type: ignore[call-arg]
    assert layout.brokers == 3 and layout.workers == 2


def test_job_rates_separate_the_job_from_the_process_start() -> None:
    summary = {"elapsed_s": 20.0, "events_written": 99_000, "dead_letter_written": 1_000, "rows_per_second": 8000.0}
    rates = cluster_bench.job_rates(summary, wall_s=50.0, backlog=100_000)
    assert rates["landed"] == 100_000 and rates["missing"] == 0
    assert rates["job_rate"] == pytest.approx(5000.0)
    assert rates["wall_rate"] == pytest.approx(2000.0)
    assert rates["startup_s"] == pytest.approx(30.0)
    assert rates["busy_rate"] == 8000.0
    short = cluster_bench.job_rates({"elapsed_s": 0, "events_written": 10}, wall_s=0.0, backlog=12)
    assert short["missing"] == 2 and short["job_rate"] == 0.0 and short["wall_rate"] == 0.0


def test_runs_alternate_and_ratios_pair_them() -> None:
    assert cluster_bench.alternating(1) == ["A", "B"]
    assert cluster_bench.alternating(3) == ["A", "B", "B", "A", "A", "B"]
    assert cluster_bench.paired_ratios([50.0, 60.0], [100.0, 0.0]) == [0.5]


def test_first_new_leader_ack_skips_the_old_leaders_acks_in_flight() -> None:
    before = [9.90, 9.95, 10.0]
    in_flight = [10.01, 10.03]  # acknowledged by the old leader before it died, reported just after the kill
    new_leader = [16.5, 16.51, 16.6]
    acks = before + in_flight + new_leader
    # From the silence alone, before the metadata shows the new leader.
    assert cluster_bench.first_new_leader_ack(acks, 10.0, None) == 16.5
    assert cluster_bench.first_new_leader_ack(acks, 10.0, 17.0) == 16.5
    # The metadata can tell first when the failover is quicker than the silence.
    fast = before + in_flight + [10.5, 10.52]
    assert cluster_bench.first_new_leader_ack(fast, 10.0, None) is None
    assert cluster_bench.first_new_leader_ack(fast, 10.0, 10.45) == 10.5
    # No report after the kill yet.
    assert cluster_bench.first_new_leader_ack(before, 10.0, 12.0) is None
    # Nothing was reported right after the kill: the first report after a silence counts.
    assert cluster_bench.first_new_leader_ack([*before, 13.0], 10.0, None) == 13.0


def test_batch_in_flight_from_the_offset_and_commit_logs() -> None:
    assert cluster_bench.batch_ids(["0", "1", ".1.crc", "2", "tmp"]) == [0, 1, 2]
    assert cluster_bench.in_flight([], []) is None
    assert cluster_bench.in_flight([0], []) == 0
    assert cluster_bench.in_flight([0, 1, 2], [0, 1]) == 2
    assert cluster_bench.in_flight([0, 1, 2], [0, 1, 2]) is None


def test_checkpoint_reads_the_folders(tmp_path: Path) -> None:
    for name in ("offsets/0", "offsets/1", "commits/0"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    checkpoint = cluster_bench.Checkpoint(tmp_path)
    assert checkpoint.in_flight() == 1
    assert checkpoint.commit_time(0) is not None and checkpoint.commit_time(1) is None
    assert cluster_bench.Checkpoint(tmp_path / "missing").in_flight() is None


def test_make_bench_quick_runs_the_cluster_benchmark_only_when_named() -> None:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    assert "cluster_bench.py" in [p.name for p in run.discover(None)]
    assert "cluster_bench.py" not in [p.name for p in run.discover(None, quick=True)]
    assert [p.name for p in run.discover(["cluster"], quick=True)] == ["cluster_bench.py"]
    script = ROOT / "bench" / "cluster_bench.py"
    assert run.script_timeout(script, True, 420, given=False) == run.NOT_QUICK["cluster"]
    assert run.script_timeout(script, True, 420, given=True) == 420
    assert run.script_timeout(script, False, 3600, given=False) == 3600
    assert run.script_timeout(ROOT / "bench" / "spark_bench.py", True, 420, given=False) == 420


def test_generator_summary_accepts_a_clean_stop_only(tmp_path: Path) -> None:
    import json

    summary = {"events_sent": 10, "delivered": 10, "failed": 0, "interrupted": True}
    (tmp_path / "g.out").write_text("progress line\n" + json.dumps(summary, indent=2))
    (tmp_path / "g.err").write_text("")
    assert cluster_bench.generator_summary(tmp_path, "g", 1)["delivered"] == 10
    assert cluster_bench.generator_summary(tmp_path, "g", 0)["delivered"] == 10
    (tmp_path / "g.out").write_text(json.dumps({**summary, "delivered": 9, "failed": 1}))
    with pytest.raises(RuntimeError, match="exited with 1"):
        cluster_bench.generator_summary(tmp_path, "g", 1)
    (tmp_path / "g.out").write_text("")
    with pytest.raises(RuntimeError):
        cluster_bench.generator_summary(tmp_path, "g", 0)


def test_batch_durations_split_calm_batches_from_those_a_kill_hit() -> None:
    rows = [("ingest", 0, 60_000), ("ingest", 1, 3_000), ("detection", 1, 9_000), ("ingest", 2, 40_000),
            ("ingest", 3, 2_000), ("ingest", 3, 2_000), ("ingest", -1, 0), ("ingest", 4, 4_000)]
    calm, hit = cluster_bench.batch_durations(rows, "ingest", killed=[2])
    assert calm == [3.0, 2.0, 4.0]
    assert hit == {2: 40.0}
    assert cluster_bench.batch_durations([], "ingest", killed=[1]) == ([], {})


def test_metrics_rows_are_the_committed_rows_of_the_metrics_table(tmp_path: Path) -> None:
    import datetime as dt

    import pyarrow as pa

    from incident_contracts.table_store import TableStore

    store = TableStore(str(tmp_path / "data"))
    assert cluster_bench.metrics_rows(tmp_path / "data") == []
    now = dt.datetime.now(dt.UTC)
    rows = pa.table({"query_name": ["ingest", "detection"], "batch_id": [3, 4], "timestamp": [now, now],
                     "batch_duration_ms": [1200, 800]})
    store.append("metrics", rows)
    store.write_files("metrics", rows)  # written, never committed: not a row of the table
    assert sorted(cluster_bench.metrics_rows(tmp_path / "data")) == [("detection", 4, 800), ("ingest", 3, 1200)]
