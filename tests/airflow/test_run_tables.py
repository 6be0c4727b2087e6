"""What reconciliation reads: one committed snapshot of events and dead_letter, only the files of the run's range.

The tables are Delta Lake tables written with TableStore.append, as the job commits its micro-batches.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from run_table_rows import kafka_rows

from incident_airflow.assets import table_asset, table_uri
from incident_airflow.pipeline import check_run, incident_digest, reconcile_run
from incident_airflow.reconcile import reconcile
from incident_airflow.run_tables import (
    TableUnreadable,
    incidents_updated_since,
    offsets_in_ranges,
    processed_through,
    range_conditions,
)
from incident_airflow.runs import run_dir
from incident_contracts.settings import Settings
from incident_contracts.table_store import TableStore

TOPIC = "logs.test"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", runtime_dir=tmp_path / "runtime")  # type: ignore[call-arg]


@pytest.fixture
def store(settings: Settings) -> TableStore:
    return TableStore.from_settings(settings)


def produced(ranges: dict[int, tuple[int, int]], started_at: datetime, key: str = "run") -> dict[str, Any]:
    """The produce step's result for a run whose records are exactly its ranges."""
    delivered = {p: e - s for p, (s, e) in ranges.items()}
    return {"topic": TOPIC, "run_key": key, "started_at": started_at.isoformat(),
            "start_offsets": {str(p): s for p, (s, _) in ranges.items()},
            "end_offsets": {str(p): e for p, (_, e) in ranges.items()},
            "generator": {"delivered": sum(delivered.values()), "failed": 0,
                          "partitions": {str(p): n for p, n in delivered.items()}}}


def commit_run(store: TableStore, ranges: dict[int, tuple[int, int]], batches: int = 2,
               stamp: datetime | None = None, dead_every: int = 50) -> None:
    """The run's records committed in `batches` micro-batches; every `dead_every`-th offset in dead_letter
    (none with 0)."""
    records = [(p, o) for p, (s, e) in sorted(ranges.items()) for o in range(s, e)]
    for batch in range(batches):
        part = records[batch::batches]
        dead = [r for r in part if dead_every and not r[1] % dead_every]
        events = [r for r in part if not (dead_every and not r[1] % dead_every)]
        store.append("events", kafka_rows("events", TOPIC, events, stamp))
        if dead:
            store.append("dead_letter", kafka_rows("dead_letter", TOPIC, dead, stamp))


def committed_files(store: TableStore, table: str) -> set[str]:
    return set(store.open(table).file_uris())


def test_offsets_of_the_run_from_the_committed_tables(store: TableStore) -> None:
    earlier = datetime.now(UTC) - timedelta(hours=3)
    # An earlier life of the topic (offsets start again at 0), another topic, then the run.
    store.append("events", kafka_rows("events", TOPIC, [(0, o) for o in range(0, 120)], earlier))
    store.append("events", kafka_rows("events", "other.topic", [(0, o) for o in range(100, 150)]))
    store.append("events", kafka_rows("events", TOPIC, [(0, o) for o in range(100, 150)] + [(1, 7), (1, 7)]))
    since = datetime.now(UTC) - timedelta(minutes=5)

    found = offsets_in_ranges(store, "events", TOPIC, {0: (100, 150), 1: (0, 10), 2: (0, 5)}, since, "ingest_time")
    assert found[0].tolist() == list(range(100, 150))
    assert found[1].tolist() == [7, 7]  # duplicates kept: reconciliation names them
    assert found[2].tolist() == []
    older_rows_too = offsets_in_ranges(store, "events", TOPIC, {0: (100, 150)})
    assert sorted(older_rows_too[0].tolist()) == sorted([*range(100, 120), *range(100, 150)])
    assert offsets_in_ranges(store, "dead_letter", TOPIC, {0: (0, 10)})[0].size == 0  # no table yet
    assert offsets_in_ranges(store, "events", TOPIC, {0: (5, 5)})[0].size == 0  # an empty range


def test_a_complete_run_reconciles(settings: Settings, store: TableStore) -> None:
    started = datetime.now(UTC)
    ranges = {0: (1000, 1400), 1: (900, 1200)}
    commit_run(store, ranges)
    result = reconcile_run(settings, produced(ranges, started))
    assert result["ok"], result
    assert result["expected"] == 700 and result["dead_letters"] == 14
    assert result["events"] + result["dead_letters"] == 700
    assert (run_dir(settings, "run") / "reconciliation.json").exists()
    assert run_dir(settings, "run").is_relative_to(Path(settings.data_dir))


def test_reconciliation_opens_only_the_files_of_the_runs_range(settings: Settings, store: TableStore) -> None:
    started = datetime.now(UTC) - timedelta(seconds=30)  # the earlier runs' rows are after it too: only
    for batch in range(4):  # their offsets keep them out. Earlier runs: [0, 1000) of both partitions
        commit_run(store, {p: (batch * 250, (batch + 1) * 250) for p in (0, 1)}, batches=1)
    before = {table: committed_files(store, table) for table in ("events", "dead_letter")}
    ranges = {0: (1000, 1300), 1: (1000, 1100)}
    commit_run(store, ranges, batches=3)
    run_files = {table: committed_files(store, table) - before[table] for table in before}
    for table in before:  # the files the run's conditions select by their statistics
        selected = set(store.open(table).file_uris(file_pruning_predicate=range_conditions(TOPIC, ranges)))
        assert selected == run_files[table] and len(selected) == 3
    for table in before:  # damage every file of the earlier runs: reconciliation must not open them
        for path in before[table]:
            Path(path).write_bytes(b"this is not a Parquet file")

    result = check_run(settings, produced(ranges, started))
    assert result.ok, result.describe()
    assert (result.expected, result.events + result.dead_letters) == (400, 400)
    with pytest.raises(TableUnreadable, match=r"events \(version \d+ at .*\) holds a file that cannot be read"):
        offsets_in_ranges(store, "events", TOPIC, {0: (0, 1300)})  # a range that needs a damaged file


def test_files_in_the_table_folder_that_are_not_committed_are_not_counted(settings: Settings,
                                                                          store: TableStore) -> None:
    started = datetime.now(UTC)
    ranges = {0: (0, 500), 1: (0, 500)}
    commit_run(store, ranges)
    rows = kafka_rows("events", TOPIC, [(p, o) for p in (0, 1) for o in range(500)])
    store.write_files("events", rows)  # written by a task whose micro-batch never committed
    folder = store.local_path("events")
    stray = folder / "event_date=2026-12-06" / "event_hour=0" / "part-stray.parquet"
    stray.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows.drop_columns(["event_date", "event_hour"]), stray)
    files_on_disk = {str(p) for p in folder.rglob("*.parquet")}
    assert len(files_on_disk) > len(committed_files(store, "events"))

    result = check_run(settings, produced(ranges, started))
    assert result.ok, result.describe()
    assert (result.duplicates, result.events + result.dead_letters) == (0, 1000)

    store.compact("events")  # compacted: the replaced files stay on disk, in no snapshot after this one
    assert len(committed_files(store, "events")) == 1
    assert check_run(settings, produced(ranges, started)).ok


def test_rows_removed_by_a_commit_are_missing_and_named(store: TableStore) -> None:
    ranges = {0: (0, 200), 1: (0, 200)}
    commit_run(store, ranges)
    removed = store.open("events").delete("kafka_partition = 1 AND kafka_offset >= 120 AND kafka_offset < 130")
    assert removed["num_deleted_rows"] == 10
    events = offsets_in_ranges(store, "events", TOPIC, ranges)
    dead = offsets_in_ranges(store, "dead_letter", TOPIC, ranges)
    result = reconcile(TOPIC, ranges, events, dead)
    assert not result.ok and result.missing == 10
    assert result.problems == ("partition 1: 10 of 200 records are in neither events nor dead_letter "
                               "(offsets 120-129)",)


def test_a_committed_file_deleted_behind_the_log_is_named(settings: Settings, store: TableStore) -> None:
    ranges = {0: (0, 100)}
    commit_run(store, ranges, batches=1)
    victim = sorted(committed_files(store, "events"))[0]
    Path(victim).unlink()
    with pytest.raises(TableUnreadable) as error:
        check_run(settings, produced(ranges, datetime.now(UTC)))
    assert Path(victim).name in str(error.value) and ".repair()" in str(error.value)


def test_processed_through_is_the_highest_offset_found_in_either_table(store: TableStore) -> None:
    ranges = {0: (100, 200), 1: (50, 80), 2: (10, 20)}
    assert processed_through(store, ("events", "dead_letter"), TOPIC, ranges) == {0: 100, 1: 50, 2: 10}
    store.append("events", kafka_rows("events", TOPIC, [(0, o) for o in range(100, 150)] + [(0, 500), (1, 60)]))
    store.append("dead_letter", kafka_rows("dead_letter", TOPIC, [(0, 160), (1, 49)]))
    assert processed_through(store, ("events", "dead_letter"), TOPIC, ranges) == {0: 161, 1: 61, 2: 10}


def incident_rows(updates: list[tuple[str, int, str, str, datetime]]) -> pa.Table:
    """incident_updates rows: (incident_id, update_seq, severity, status, update_time)."""
    count = len(updates)
    stamps = pa.array([u[4] for u in updates], pa.timestamp("us", tz="UTC"))
    return pa.table({
        "incident_id": [u[0] for u in updates], "update_seq": pa.array([u[1] for u in updates], pa.int32()),
        "update_type": ["opened" if u[1] == 0 else "updated" for u in updates],
        "status": [u[3] for u in updates], "update_time": stamps, "service": ["checkout"] * count,
        "environment": ["prod"] * count, "severity": [u[2] for u in updates],
        "title": [f"{u[0]} title" for u in updates],
        "opened_at": stamps, "first_seen": stamps, "last_seen": stamps})


def test_incidents_touched_by_the_run_at_their_latest_state(settings: Settings, store: TableStore) -> None:
    earlier = datetime.now(UTC) - timedelta(hours=1)
    store.append("incident_updates", incident_rows([("inc-a", 0, "P3", "open", earlier),
                                                    ("inc-old", 0, "P1", "open", earlier)]))
    started = datetime.now(UTC)
    now = started + timedelta(seconds=1)
    store.append("incident_updates", incident_rows([("inc-a", 1, "P2", "open", now), ("inc-b", 0, "P1", "open", now)]))
    store.append("incident_updates", incident_rows([("inc-b", 1, "P1", "resolved", now)]))

    digest = incidents_updated_since(store, started)
    assert [(i["incident_id"], i["severity"], i["status"]) for i in digest.incidents] == [
        ("inc-b", "P1", "resolved"), ("inc-a", "P2", "open")]
    assert (digest.by_severity, digest.open_count, digest.resolved_count) == ({"P1": 1, "P2": 1}, 1, 1)
    summary = incident_digest(settings, {"started_at": (started + timedelta(seconds=5)).isoformat()})
    assert summary["escalate"] == ["inc-b", "inc-a"]  # the digest allows the clock margin
    assert incidents_updated_since(store, now + timedelta(hours=1)).total == 0


def test_asset_uris_are_where_the_tables_are(settings: Settings, store: TableStore) -> None:
    assert table_uri(settings, "events") == Path(store.uri("events")).as_uri()
    assert table_asset(settings, "events").uri.startswith("file:///")
    remote = Settings(_env_file=None, data_dir="s3://lake-bucket/prod/")  # type: ignore[call-arg]
    assert table_uri(remote, "events") == TableStore.from_settings(remote).uri("events") == \
        "s3://lake-bucket/prod/events"
    assert table_asset(remote, "incident_updates").uri == "s3://lake-bucket/prod/incident_updates"


EXIT_CHECK = """
import sys
from incident_airflow.run_tables import offsets_in_ranges
from incident_contracts.table_store import TableStore
store = TableStore(sys.argv[1])
found = offsets_in_ranges(store, "events", "logs.test", {0: (0, 400), 1: (0, 400)})
print(sum(a.size for a in found.values()), store.read("events", ["kafka_offset"]).num_rows)
"""


def test_a_process_that_read_the_tables_exits_cleanly(store: TableStore) -> None:
    """Task processes and benchmarks exit with status 0 after threaded scans of the tables, reconciliation's and
    TableStore.read's (which the benchmarks use): reading through deltalake's Python file system, a process
    aborted at exit now and then."""
    commit_run(store, {0: (0, 400), 1: (0, 400)}, batches=4, dead_every=0)
    for _ in range(8):
        done = subprocess.run([sys.executable, "-c", EXIT_CHECK, store.root], capture_output=True, text=True,
                              timeout=120)
        assert (done.returncode, done.stdout.strip()) == (0, "800 800"), done.stderr[-2000:]


@pytest.mark.integration
def test_reconciliation_on_object_storage(s3: Any, tmp_path: Path) -> None:
    """DATA_DIR=s3://...: the tables are read through deltalake/pyarrow (no DuckDB extension), only the run's
    files are opened, and the run's folder is local (under RUNTIME_DIR)."""
    env = s3.env(f"s3://{s3.new_bucket()}/lake")
    settings = Settings(_env_file=None, data_dir=env["DATA_DIR"], runtime_dir=tmp_path / "runtime",  # type: ignore[call-arg]
                        s3_endpoint_url=env["S3_ENDPOINT_URL"], s3_region=env["S3_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    store = TableStore.from_settings(settings)
    assert not store.is_local
    commit_run(store, {0: (0, 300), 1: (0, 300)}, batches=1)
    earlier = set(store.open("events").file_uris())
    filesystem, _ = store.filesystem()
    for uri in earlier:  # damaged: the run must not need them
        with filesystem.open_output_stream(uri.removeprefix("s3://")) as out:
            out.write(b"this is not a Parquet file")
    ranges = {0: (300, 500), 1: (300, 400)}
    commit_run(store, ranges, batches=2)

    # Started a minute ago: the earlier rows are stamped after it, only their offsets keep them out.
    result = reconcile_run(settings, produced(ranges, datetime.now(UTC) - timedelta(minutes=1)))
    assert result["ok"], result
    assert result["events"] + result["dead_letters"] == 300
    assert (tmp_path / "runtime" / "runs" / "run" / "reconciliation.json").exists()
    assert processed_through(store, ("events", "dead_letter"), TOPIC, ranges) == {0: 500, 1: 400}
    assert table_asset(settings, "events").uri == f"{env['DATA_DIR']}/events"
