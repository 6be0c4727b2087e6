"""The tables' access layer (incident_contracts.table_store) on a folder: what a reader sees of files that
are written but not committed, replayed batches, compaction beside readers and writers, durability,
file statistics, missing tables and the layout before Delta Lake."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from table_rows import HOUR
from table_rows import event_rows as events

from incident_contracts.table_store import DELTA_LOG, DataFile, TableLayoutError, TableStore
from incident_contracts.tables import EVENTS, TABLES, check_schema


def offsets(table: pa.Table) -> list[int]:
    return sorted(table.column("kafka_offset").to_pylist())


def on_disk(store: TableStore, table: str) -> set[str]:
    folder = store.local_path(table)
    return {str(p.relative_to(folder)) for p in folder.rglob("*.parquet")}


def committed(store: TableStore, table: str) -> set[str]:
    """Files of the table's latest version, relative to its folder."""
    dt_ = store.open(table)
    assert dt_ is not None
    prefix = f"file://{store.local_path(table)}/"
    return {uri.removeprefix(prefix).removeprefix(str(store.local_path(table)) + "/") for uri in dt_.file_uris()}


@pytest.fixture
def store(tmp_path: Path) -> TableStore:
    return TableStore(str(tmp_path / "data"))


# --- reading: missing tables, the layout before Delta Lake -----------------------------------------------
def test_a_missing_table_reads_as_zero_rows_with_the_contract_schema(store: TableStore) -> None:
    for name, spec in TABLES.items():
        assert store.open(name) is None
        assert store.committed_version(name, "app") is None
        content = store.read(name)
        assert content.num_rows == 0 and content.schema.equals(spec.schema), name
        assert store.dataset(name).count_rows(filter=ds.field(spec.schema.names[0]).is_valid()) == 0
    assert not Path(store.root).exists()  # reading creates nothing
    created = store.create("events")
    assert created.version() == 0 and store.read("events").num_rows == 0
    assert check_schema("events", store.read("events").schema) == []
    assert store.create("events").version() == 0  # created once


def test_a_folder_of_plain_parquet_files_is_refused_naming_the_migration(store: TableStore) -> None:
    """Tables written before Delta Lake have no log: reading them as empty would hide all their rows."""
    old = store.local_path("events") / "event_date=2026-12-06" / "event_hour=5"
    old.mkdir(parents=True)
    pq.write_table(events(range(3)).drop_columns(["event_date", "event_hour"]), old / "part-0.parquet")
    for call in (lambda: store.open("events"), lambda: store.read("events"), lambda: store.create("events"),
                 lambda: store.append("events", events(range(3, 5)))):
        with pytest.raises(TableLayoutError, match=r"make migrate-data") as refused:
            call()
        assert str(store.local_path("events")) in str(refused.value)
    assert not (store.local_path("events") / DELTA_LOG).exists()  # nothing was written beside the old files
    store.local_path("metrics").mkdir()  # an empty folder is just a table not created yet
    assert store.open("metrics") is None


# --- writing: uncommitted files, replays, applications ---------------------------------------------------
def test_files_written_but_not_committed_are_invisible_and_a_replay_commits_once(store: TableStore) -> None:
    """A crash between writing a batch's files and committing them: readers see nothing of the attempt,
    the replay commits its own files once, and the crashed attempt's files are in no version."""
    crashed = store.write_files("events", events(range(10), hours=(0, 1)))
    assert len(crashed) == 2 and all((store.local_path("events") / f.path).exists() for f in crashed)
    assert store.read("events").num_rows == 0
    assert store.open("events").file_uris() == []
    assert store.dataset("events").count_rows() == 0

    replay = store.write_files("events", events(range(10), hours=(0, 1)))
    assert store.commit_files("events", replay, "ingest-app", 4)
    assert offsets(store.read("events")) == list(range(10))
    assert committed(store, "events") == {f.path for f in replay}
    # The crashed attempt's commit arriving late (or a second replay) is recognised: nothing twice.
    assert not store.commit_files("events", crashed, "ingest-app", 4)
    assert not store.append("events", events(range(10)), "ingest-app", 4)
    assert offsets(store.read("events")) == list(range(10))
    assert on_disk(store, "events") - committed(store, "events") == {f.path for f in crashed}
    assert store.committed_version("events", "ingest-app") == 4


def test_a_replay_that_read_fewer_records_keeps_every_row_of_the_first_attempt(store: TableStore) -> None:
    """The old publisher replaced a batch's files by the replay's: a replay that read less (a shorter
    range, records deleted by Kafka retention) deleted rows the first attempt had published."""
    first = store.write_files("events", events(range(100), hours=(0, 1, 2)))
    assert store.commit_files("events", first, "ingest-app", 7)
    replay = store.write_files("events", events(range(30), hours=(0,)))  # fewer records, fewer files
    assert len(replay) < len(first)
    assert not store.commit_files("events", replay, "ingest-app", 7)
    store.delete_files("events", replay)
    content = store.read("events")
    assert offsets(content) == list(range(100)) and content.num_rows == 100
    assert on_disk(store, "events") == committed(store, "events") == {f.path for f in first}
    store.delete_files("events", replay)  # deleting what is already gone is harmless


def test_a_fresh_checkpoint_is_a_new_application_whose_batch_0_commits(store: TableStore) -> None:
    assert store.append("events", events(range(0, 5)), "ingest-old", 0)
    assert store.append("events", events(range(5, 10)), "ingest-old", 1)
    assert store.append("events", events(range(10, 15)), "ingest-new", 0)  # batch ids start over
    assert not store.append("events", events(range(0, 5)), "ingest-old", 0)
    assert not store.append("events", events(range(0, 5)), "ingest-old", 1)
    assert store.append("events", events(range(15, 20)), "ingest-new", 1)
    assert offsets(store.read("events")) == list(range(20))
    assert (store.committed_version("events", "ingest-old"), store.committed_version("events", "ingest-new")) == (1, 1)
    # Without an application id every append commits (the metrics recorder's rows).
    assert store.append("events", events(range(20, 22)))
    assert store.append("events", events(range(22, 24)))
    assert offsets(store.read("events")) == list(range(24))


def test_nothing_to_write_commits_nothing(store: TableStore) -> None:
    store.create("metrics")
    before = store.open("metrics").version()
    assert not store.commit_files("metrics", [])
    assert store.write_files("metrics", TABLES["metrics"].schema.empty_table()) == []
    assert not store.append("metrics", TABLES["metrics"].schema.empty_table())
    assert store.open("metrics").version() == before and on_disk(store, "metrics") == set()


# --- statistics ------------------------------------------------------------------------------------------
def test_file_statistics_let_readers_skip_files_by_offset_time_and_partition(store: TableStore) -> None:
    for start in (0, 100, 200):
        assert store.append("events", events(range(start, start + 100)), "ingest-app", start // 100)
    assert store.append("events", events(range(300, 310), hours=(3,)), "ingest-app", 3)
    actions = pa.table(store.open("events").get_add_actions(flatten=True)).to_pylist()
    assert len(actions) == 4
    low = min(actions, key=lambda a: a["min.kafka_offset"])
    assert (low["num_records"], low["min.kafka_offset"], low["max.kafka_offset"]) == (100, 0, 99)
    assert low["null_count.trace_id"] == 100 and low["null_count.event_id"] == 0
    assert low["min.event_time"] == HOUR and low["max.event_time"] == HOUR + dt.timedelta(seconds=99)

    dataset = store.dataset("events")
    by_offset = ds.field("kafka_offset") >= 250
    assert len(list(dataset.get_fragments(filter=by_offset))) == 2  # offsets 200-299 and 300-309
    assert dataset.count_rows(filter=by_offset) == 60
    by_time = ds.field("event_time") < pa.scalar(HOUR + dt.timedelta(seconds=50), EVENTS.field("event_time").type)
    assert len(list(dataset.get_fragments(filter=by_time))) == 1  # only the file of offsets 0-99
    by_hour = (ds.field("event_date") == "2026-12-06") & (ds.field("event_hour") == 8)
    assert len(list(dataset.get_fragments(filter=by_hour))) == 1
    assert offsets(dataset.to_table(filter=by_hour)) == list(range(300, 310))


# --- compaction beside readers and writers ---------------------------------------------------------------
def test_compaction_beside_a_snapshot_reader_and_a_concurrent_writer_loses_nothing(store: TableStore) -> None:
    """The old compaction swapped folders under readers; Delta's replaces files in a commit of its own, so a
    reader keeps its snapshot, and a writer's concurrent commits are neither lost nor doubled."""
    batches, rows = 40, 20
    for batch in range(10):
        assert store.append("events", events(range(batch * rows, (batch + 1) * rows), hours=(0, 1)), "w", batch)
    snapshot_table = store.open("events")
    snapshot = store.dataset("events", snapshot_table)
    held = offsets(snapshot.to_table())
    assert held == list(range(10 * rows))

    failures: list[BaseException] = []
    writing = threading.Event()
    writing.set()
    merged: list[int] = []
    reads: list[int] = []

    def guarded(work: Any) -> Any:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # reported by the test thread
                failures.append(exc)
        return run

    def writer() -> None:
        try:
            for batch in range(10, batches):
                assert store.append("events", events(range(batch * rows, (batch + 1) * rows), hours=(0, 1)),
                                    "w", batch)
        finally:
            writing.clear()

    def compactor() -> None:
        while writing.is_set() or not merged:
            result = store.compact("events")
            merged.append(int(result.get("numFilesRemoved", 0)))

    def reader() -> None:
        last = 0
        while writing.is_set():
            assert offsets(snapshot.to_table()) == held  # the snapshot is unchanged and complete
            latest = offsets(store.read("events"))
            assert len(latest) == len(set(latest)) and latest == list(range(len(latest)))
            assert len(latest) >= last
            last = len(latest)
            reads.append(last)

    threads = [threading.Thread(target=guarded(work)) for work in (writer, compactor, reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert sum(merged) > 0 and len(reads) > 1
    assert offsets(store.read("events")) == list(range(batches * rows))
    assert offsets(store.dataset("events", snapshot_table).to_table()) == held
    assert store.committed_version("events", "w") == batches - 1
    assert not store.append("events", events(range(20)), "w", 5)  # application ids survive compaction


# --- durability ------------------------------------------------------------------------------------------
def test_a_commit_fsyncs_its_data_files_before_its_log_entry_exists_and_the_entry_before_returning(
        store: TableStore, monkeypatch: pytest.MonkeyPatch) -> None:
    files = store.write_files("events", events(range(50), hours=(0, 1)))
    folder = store.local_path("events")
    entry = folder / DELTA_LOG / f"{store.open('events').version() + 1:020d}.json"
    synced: list[tuple[str, bool]] = []  # (path, whether the log entry existed then)
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), entry.exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    assert store.commit_files("events", files, "ingest-app", 0)
    monkeypatch.undo()

    paths = {path for path, _ in synced}
    data = {str(folder / f.path) for f in files}
    assert data <= paths
    assert all(not existed for path, existed in synced if path in data), "a data file was synced after the commit"
    assert str(entry) in paths and str(folder / DELTA_LOG) in paths and str(folder) in paths
    assert {str((folder / f.path).parent) for f in files} <= paths  # the partition folders' entries
    assert json.loads(entry.read_text().splitlines()[0])  # the entry is the commit that returned
    first_data = min(i for i, (path, _) in enumerate(synced) if path in data)
    assert first_data < [path for path, _ in synced].index(str(entry))


def test_an_append_is_durable_too(store: TableStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.create("metrics")
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    rows = pa.table({"query_name": ["ingest"], "batch_id": [0],
                     "timestamp": pa.array([HOUR], pa.timestamp("us", tz="UTC"))})
    for name in TABLES["metrics"].schema.names:
        if name not in rows.column_names:
            rows = rows.append_column(name, pa.nulls(1, TABLES["metrics"].schema.field(name).type))
    assert store.append("metrics", rows)
    monkeypatch.undo()
    folder = store.local_path("metrics")
    (data_file,) = folder.glob("*.parquet")
    assert str(data_file) in synced and str(folder / DELTA_LOG / f"{1:020d}.json") in synced


def test_a_data_file_added_by_hand_carries_its_statistics_into_the_log(store: TableStore) -> None:
    """DataFile.add_action: the row count and statistics a task computed are what the log records."""
    (written,) = store.write_files("events", events(range(5)))
    stats = {"minValues": {"kafka_offset": 0}, "maxValues": {"kafka_offset": 4}, "nullCount": {"kafka_offset": 0}}
    by_hand = DataFile(written.path, written.size, written.rows, written.partition_values, stats)
    assert store.commit_files("events", [by_hand], "app", 0)
    (action,) = pa.table(store.open("events").get_add_actions(flatten=True)).to_pylist()
    assert (action["num_records"], action["min.kafka_offset"], action["max.kafka_offset"]) == (5, 0, 4)
    assert written.partition_values == {"event_date": "2026-12-06", "event_hour": "5"}
    assert (action["partition.event_date"], action["partition.event_hour"]) == ("2026-12-06", 5)


def test_compaction_fsyncs_the_files_it_wrote_then_its_log_entry_before_returning(
        store: TableStore, monkeypatch: pytest.MonkeyPatch) -> None:
    for batch in range(5):
        assert store.append("events", events(range(batch * 10, batch * 10 + 10)), "w", batch)
    before = {str(p) for p in store.local_path("events").rglob("*.parquet")}
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    assert store.compact("events")["numFilesAdded"] == 1
    monkeypatch.undo()
    (merged,) = {str(p) for p in store.local_path("events").rglob("*.parquet")} - before
    entry = str(store.local_path("events") / DELTA_LOG / f"{6:020d}.json")
    assert entry in synced and merged in synced
    assert synced.index(merged) < synced.index(entry), "the merged file must reach the disk before its log entry"
