"""Table maintenance (incident_contracts.table_maintenance) on real Delta tables: retention, compaction, vacuum
and log checkpoints, alone and while a writer appends micro-batches the way the streaming job does."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from incident_contracts.settings import load_settings
from incident_contracts.table_maintenance import (
    apply_retention,
    compact,
    maintain,
    maintain_table,
    retention_cutoff,
    vacuum,
)
from incident_contracts.table_store import TableLayoutError, TableStore
from incident_contracts.tables import TABLES

NOW = datetime.now(UTC)
TODAY = NOW.date()


def rows(table: str, ids: list[str], when: datetime) -> pa.Table:
    """Rows of `table` with the given ids (in the table's id column), all dated `when`."""
    schema = TABLES[table].schema
    n = len(ids)
    columns = {}
    for f in schema:
        if f.name in ("event_id", "incident_id", "query_name", "topic"):
            columns[f.name] = pa.array(ids, f.type)
        elif pa.types.is_timestamp(f.type):
            columns[f.name] = pa.array([when] * n, f.type)
        elif f.name in ("event_date", "dl_date"):
            columns[f.name] = pa.array([when.date().isoformat()] * n)
        elif f.name == "event_hour":
            columns[f.name] = pa.array([when.hour] * n, pa.int32())
        elif pa.types.is_integer(f.type):
            columns[f.name] = pa.array(range(n), f.type)
        elif pa.types.is_string(f.type):
            columns[f.name] = pa.array(["x"] * n)
        elif pa.types.is_boolean(f.type):
            columns[f.name] = pa.array([False] * n)
        else:
            columns[f.name] = pa.nulls(n, f.type)
    return pa.table(columns, schema=schema)


ID_COLUMN = {"events": "event_id", "dead_letter": "topic", "metrics": "query_name", "incident_updates": "incident_id"}


def ids_in(store: TableStore, table: str) -> list[str]:
    return store.read(table, columns=[ID_COLUMN[table]]).column(0).to_pylist()


@pytest.fixture
def settings(isolated_env: Path):
    return load_settings(retention_days_events=30, retention_days_dead_letter=30, retention_days_metrics=14,
                         table_vacuum_retain_hours=1)


@pytest.fixture
def store(settings) -> TableStore:
    return TableStore.from_settings(settings)


def test_retention_deletes_only_old_rows_and_keeps_incident_updates(store, settings):
    old, kept, edge = NOW - timedelta(days=45), NOW - timedelta(days=2), NOW - timedelta(days=30)
    for table in TABLES:
        store.append(table, rows(table, [f"{table}-old-{i}" for i in range(5)], old))
        store.append(table, rows(table, [f"{table}-kept-{i}" for i in range(5)], kept))
        store.append(table, rows(table, [f"{table}-edge-{i}" for i in range(5)], edge))
    # metrics: one file holding both old and recent rows, rewritten without the old ones
    mixed = pa.concat_tables([rows("metrics", ["metrics-mixed-old"], old),
                              rows("metrics", ["metrics-mixed-new"], kept)])
    store.append("metrics", mixed)

    report = {r.table: r for r in maintain(settings).tables}

    for table in ("events", "dead_letter"):
        assert sorted(ids_in(store, table)) == sorted([f"{table}-kept-{i}" for i in range(5)]
                                                      + [f"{table}-edge-{i}" for i in range(5)])
        assert report[table].rows_deleted == 5
        assert report[table].files_rewritten == 0  # whole partitions: no file read or written
        delete = next(h for h in store.open(table).history() if h["operation"] == "DELETE")
        assert delete["operationMetrics"]["num_added_files"] == 0
        assert delete["operationMetrics"]["num_copied_rows"] == 0
    # metrics keeps 14 days: the 30-day-old rows go too, the mixed file keeps its recent row
    assert sorted(ids_in(store, "metrics")) == sorted([f"metrics-kept-{i}" for i in range(5)] + ["metrics-mixed-new"])
    assert report["metrics"].rows_deleted == 11 and report["metrics"].files_rewritten == 1
    # incident_updates: the history of incidents, whatever its age
    assert len(ids_in(store, "incident_updates")) == 15 and report["incident_updates"].rows_deleted == 0


def test_retention_zero_keeps_everything_and_the_cutoff_is_by_date(store):
    assert retention_cutoff(0, NOW) is None
    assert retention_cutoff(30, datetime(2026, 3, 31, 23, 59, tzinfo=UTC)).isoformat() == "2026-03-01"
    store.append("events", rows("events", ["ancient"], NOW - timedelta(days=3000)))
    assert apply_retention(store, "events", 0, NOW)["rows_deleted"] == 0
    assert ids_in(store, "events") == ["ancient"]


def test_compaction_reduces_files_and_keeps_every_row_and_transaction(store):
    expected = []
    for batch in range(12):
        ids = [f"b{batch}-{i}" for i in range(20)]
        expected += ids
        # two partitions per batch, as micro-batches spanning an hour boundary write
        when = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=batch % 2)
        assert store.append("events", rows("events", ids, when), app_id="job", version=batch)
    before = len(store.open("events").file_uris())
    assert before == 12

    result = compact(store, "events")

    dt = store.open("events")
    assert result == {"files_removed": 12, "files_added": 2} and len(dt.file_uris()) == 2  # one per partition
    assert sorted(ids_in(store, "events")) == sorted(expected)
    assert dt.transaction_version("job") == 11  # the job's idempotency survives compaction
    assert compact(store, "events") == {"files_removed": 0, "files_added": 0}  # nothing small left


def test_vacuum_keeps_fresh_uncommitted_files_and_files_of_recent_versions(store):
    for batch in range(4):
        store.append("events", rows("events", [f"b{batch}"], NOW), app_id="job", version=batch)
    snapshot = store.open("events").version()
    replaced = set(store.open("events").file_uris())
    compact(store, "events")
    folder = store.local_path("events")
    in_flight = [folder / f.path for f in store.write_files("events", rows("events", ["writing"], NOW))]
    orphans = [folder / f.path for f in store.write_files("events", rows("events", ["orphan"], NOW))]
    two_hours_ago = time.time() - 2 * 3600
    for path in orphans:  # a replayed batch's files, written two hours ago and never committed
        os.utime(path, (two_hours_ago, two_hours_ago))

    deleted = vacuum(store, "events", retain_hours=1)

    assert deleted == len(orphans) and not any(p.exists() for p in orphans)
    assert all(p.exists() for p in in_flight)  # a micro-batch being written keeps its files
    assert all(Path(uri).exists() for uri in replaced)  # replaced minutes ago: an older snapshot's readers
    old = store.dataset("events", store.open("events", version=snapshot)).to_table()
    assert sorted(old.column("event_id").to_pylist()) == ["b0", "b1", "b2", "b3"]
    # the in-flight batch commits after the vacuum: its rows are there
    store.commit_files("events", store.write_files("events", rows("events", ["late"], NOW)), "job", 4)
    assert sorted(ids_in(store, "events")) == ["b0", "b1", "b2", "b3", "late"]


def test_checkpoint_is_written_and_the_report_counts_files(store, settings):
    for batch in range(5):
        store.append("incident_updates", rows("incident_updates", [f"i{batch}"], NOW), app_id="job", version=batch)

    report = maintain_table(store, "incident_updates", settings)

    log_dir = store.local_path("incident_updates") / "_delta_log"
    assert (log_dir / f"{report.version_after:020d}.checkpoint.parquet").exists()
    assert report.files_before == 5 and report.files_after == 1 and report.files_compacted == 5
    assert set(report.steps) == {"retention", "compaction", "vacuum", "checkpoint"} and report.seconds > 0
    assert store.open("incident_updates").transaction_version("job") == 4


def test_a_missing_table_is_skipped_and_an_old_layout_names_the_migration(store, settings, tmp_path):
    folder = store.local_path("metrics")
    folder.mkdir(parents=True)
    import pyarrow.parquet as pq

    pq.write_table(rows("metrics", ["m"], NOW), folder / "part-0.parquet")

    report = {r.table: r for r in maintain(settings).tables}

    assert report["events"].note == "the table does not exist yet" and report["events"].error is None
    assert "make migrate-data" in report["metrics"].error
    with pytest.raises(TableLayoutError):
        maintain_table(store, "metrics", settings)


def test_cli_prints_a_json_report(store, settings):
    for batch in range(3):
        store.append("events", rows("events", [f"b{batch}"], NOW))
    env = {**os.environ, "RETENTION_DAYS_EVENTS": "30", "TABLE_VACUUM_RETAIN_HOURS": "1"}
    result = subprocess.run([sys.executable, "-m", "incident_contracts.table_maintenance"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["data_dir"] == store.root
    events = report["tables"]["events"]
    assert events["files_before"] == 3 and events["files_after"] == 1
    assert {"rows_deleted", "files_vacuumed", "seconds"} <= set(events)
    assert "events: compaction merged 3 small files into 1" in result.stderr  # progress at INFO


@pytest.mark.integration
def test_maintenance_while_a_writer_appends_loses_and_duplicates_nothing(store, settings):
    """The streaming job's protocol in a thread (write a batch's files, commit them with the application id and
    batch id) while maintenance runs again and again; late rows dated 40 days ago make every retention pass
    remove files the writer's snapshot holds, compaction replaces files under it, and a metrics file mixing old
    and new rows is rewritten."""
    batches, per_batch = 60, 30
    late = NOW - timedelta(days=40)
    for table in ("events", "metrics"):  # history for the first passes to work on
        for i in range(5):
            store.append(table, rows(table, [f"seed-{table}-{i}-{j}" for j in range(5)], NOW))
    errors: list[BaseException] = []
    done = threading.Event()
    passes_made = threading.Condition()
    passes = 0

    def writer() -> None:
        try:
            for batch in range(batches):
                if batch and batch % 15 == 0:  # at 15, 30, 45: let maintenance finish a pass meanwhile, so at
                    with passes_made:  # least three overlap the writing however fast the machine
                        passes_made.wait_for(lambda needed=batch // 15: passes >= needed, timeout=60)
                recent = [f"b{batch}-{i}" for i in range(per_batch)]
                events = pa.concat_tables([rows("events", recent, NOW), rows("events", [f"late{batch}"], late)])
                store.commit_files("events", store.write_files("events", events), "job", batch)
                metrics = pa.concat_tables([rows("metrics", [f"m{batch}"], NOW),
                                            rows("metrics", [f"old{batch}"], late)])
                store.commit_files("metrics", store.write_files("metrics", metrics), "job", batch)
        except BaseException as exc:  # the job would fail its micro-batch here
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        for table in ("events", "metrics"):
            maintain_table(store, table, settings)
        with passes_made:
            passes += 1
            passes_made.notify_all()
    thread.join()
    for table in ("events", "metrics"):  # a last pass: late rows committed after the previous one go too
        maintain_table(store, table, settings)

    assert not errors, f"the writer failed: {errors[0]!r}"
    assert passes >= 3
    events = ids_in(store, "events")
    assert len(events) == len(set(events))
    expected = {f"b{b}-{i}" for b in range(batches) for i in range(per_batch)}
    assert set(events) == expected | {f"seed-events-{i}-{j}" for i in range(5) for j in range(5)}
    metrics = ids_in(store, "metrics")
    assert sorted(metrics) == sorted({f"m{b}" for b in range(batches)} | {f"seed-metrics-{i}-{j}" for i in range(5)
                                                                          for j in range(5)})
    for table in ("events", "metrics"):
        assert store.open(table).transaction_version("job") == batches - 1
    cutoff = retention_cutoff(30, NOW).isoformat()
    assert store.dataset("events").count_rows(filter=pc.field("event_date") < cutoff) == 0


@pytest.mark.integration
def test_maintenance_on_object_storage(s3, isolated_env, monkeypatch):
    bucket = s3.new_bucket()
    for name, value in s3.env(f"s3://{bucket}/lake").items():
        monkeypatch.setenv(name, value)
    settings = load_settings(retention_days_events=30, table_vacuum_retain_hours=1)
    store = TableStore.from_settings(settings)
    assert not store.is_local
    for batch in range(4):
        store.append("events", rows("events", [f"b{batch}"], NOW), app_id="job", version=batch)
    store.append("events", rows("events", ["old"], NOW - timedelta(days=60)), app_id="job", version=4)

    report = maintain_table(store, "events", settings)

    assert report.rows_deleted == 1 and report.files_before == 5 and report.files_after == 1
    assert sorted(ids_in(store, "events")) == ["b0", "b1", "b2", "b3"]
    assert store.open("events").transaction_version("job") == 4


MAINTAINER = """
import sys
from incident_contracts.settings import load_settings
from incident_contracts.table_maintenance import maintain
print("started", flush=True)
sys.exit(0 if maintain(load_settings(), ["events", "metrics"]).ok else 1)
"""


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_maintenance_killed_at_random_moments_loses_and_duplicates_nothing(store, settings):
    """The folder-swap compaction moved a live partition aside where renameat2 was missing, and a crash
    there lost the partition. Retention, compaction and vacuum now change a table only by a commit: the
    maintenance process (`make maintain`'s command) is SIGKILLed at random moments while it works on
    new small files and on a metrics file mixing old and new rows; after every kill the table reads
    every row once, and a last complete run finishes the work."""
    rng = random.Random(19)
    recent: dict[str, list[str]] = {"events": [], "metrics": []}
    old_metrics: list[str] = []
    hour = NOW.replace(minute=0, second=0, microsecond=0)
    batch = 0

    def write_batches(count: int) -> None:
        nonlocal batch
        for _ in range(count):
            ids = [f"b{batch}-{i}" for i in range(20)]
            recent["events"] += ids
            store.append("events", rows("events", ids, hour - timedelta(hours=batch % 3)), "job", batch)
            recent["metrics"].append(f"m{batch}")
            old_metrics.append(f"old{batch}")
            metrics = pa.concat_tables([rows("metrics", [f"m{batch}"], NOW),
                                        rows("metrics", [f"old{batch}"], NOW - timedelta(days=40))])
            store.append("metrics", metrics, "job", batch)
            batch += 1

    def assert_every_row_once(final: bool) -> None:
        for table in ("events", "metrics"):
            found = ids_in(store, table)
            assert len(found) == len(set(found)), f"{table}: rows read twice after a kill"
            assert set(recent[table]) <= set(found), f"{table}: {len(set(recent[table]) - set(found))} rows lost"
            # old metric rows: deleted, or still there when a kill came before the retention's commit
            allowed = set(old_metrics) if table == "metrics" and not final else set()
            assert set(found) - set(recent[table]) <= allowed, set(found) - set(recent[table]) - allowed
            assert store.open(table).transaction_version("job") == batch - 1

    env = {**os.environ, "RETENTION_DAYS_METRICS": "14", "TABLE_VACUUM_RETAIN_HOURS": "1"}

    def start_maintainer() -> tuple[subprocess.Popen, float]:
        process = subprocess.Popen([sys.executable, "-c", MAINTAINER], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        assert process.stdout is not None and process.stdout.readline().strip() == "started"
        return process, time.monotonic()

    # How long one pass over a round's new files takes on this machine: the kills land inside such a pass.
    write_batches(15)
    process, started = start_maintainer()
    assert process.wait(timeout=120) == 0
    one_pass = time.monotonic() - started
    assert_every_row_once(final=True)

    killed = 0
    rounds = 6
    for _ in range(rounds):
        write_batches(15)  # new small files for compaction, new old metric rows for the retention rewrite
        process, started = start_maintainer()
        # a random moment of the pass: inside retention, compaction, vacuum or the log checkpoint
        time.sleep(max(0.0, started + rng.uniform(0.05, 0.9) * one_pass - time.monotonic()))
        if process.poll() is None:
            killed += 1
            with contextlib.suppress(ProcessLookupError):  # it may end between the check and the kill
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert_every_row_once(final=False)
    assert killed >= rounds // 2, f"maintenance finished before it could be killed in {rounds - killed} of {rounds}"

    report = {r.table: r for r in maintain(settings, ["events", "metrics"]).tables}
    assert all(r.error is None for r in report.values()), report
    assert_every_row_once(final=True)
    assert report["events"].files_after <= 3 and report["metrics"].files_after == 1, report
