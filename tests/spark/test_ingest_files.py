"""The ingest source's task work (ingest_files.py): events and dead letters written as Parquet files into the
Delta tables' folders, invisible to readers until the sink commits them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from stream_helpers import make_event, produce, produce_events

from incident_contracts.catalog import default_catalog
from incident_contracts.kafka import end_offsets
from incident_contracts.table_store import DataFile, TableStore
from incident_contracts.tables import TABLES, check_schema
from incident_stream import ingest_files
from incident_stream.enrich_arrow import ServiceLookup
from incident_stream.ingest_files import (
    FILES_ARROW_SCHEMA,
    STAGED_DEAD_LETTER,
    STAGED_EVENTS,
    TableFiles,
    committed_file,
    split_by_partition,
    write_range_files,
)
from incident_stream.kafka_read import Range, ReadConfig
from incident_stream.kafka_source import SourceOptions

UTC = dt.UTC


def hours_batch(stamps: list[dt.datetime]) -> pa.RecordBatch:
    """Rows with event_date/event_hour of the given times and an id column."""
    return pa.RecordBatch.from_pydict({
        "id": list(range(len(stamps))),
        "event_date": [s.strftime("%Y-%m-%d") for s in stamps],
        "event_hour": pa.array([s.hour for s in stamps], pa.int32()),
    })


HOURLY = ingest_files.StagedTable.of("t", pa.schema([("id", pa.int64()), ("event_date", pa.string()),
                                                     ("event_hour", pa.int32())]), ("event_date", "event_hour"))


def table_files(folder: Path, table: ingest_files.StagedTable) -> TableFiles:
    return TableFiles(pafs.LocalFileSystem(), str(folder), "part-attempt-1", table)


def test_rows_are_split_by_date_and_hour_into_spark_named_folders() -> None:
    base = dt.datetime(2026, 12, 5, 23, 30, tzinfo=UTC)
    stamps = [base, base + dt.timedelta(minutes=40), base, base + dt.timedelta(hours=2), base]
    groups = {folder: rows.column("id").to_pylist()
              for folder, rows in split_by_partition(hours_batch(stamps), ("event_date", "event_hour"))}
    assert groups == {"event_date=2026-12-05/event_hour=23": [0, 2, 4],
                      "event_date=2026-12-06/event_hour=0": [1],
                      "event_date=2026-12-06/event_hour=1": [3]}


def test_a_batch_of_one_hour_is_one_group() -> None:
    base = dt.datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
    (group,) = split_by_partition(hours_batch([base] * 4), ("event_date", "event_hour"))
    assert group[0] == "event_date=2026-12-06/event_hour=7" and group[1].num_rows == 4
    assert list(split_by_partition(hours_batch([]), ("event_date", "event_hour"))) == []


def test_files_stay_complete_when_more_hours_arrive_than_files_are_kept_open(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_files, "MAX_OPEN_FILES", 2)
    monkeypatch.setattr(ingest_files, "ROW_GROUP_ROWS", 3)
    files = table_files(tmp_path, HOURLY)
    base = dt.datetime(2026, 12, 6, 0, 0, tzinfo=UTC)
    expected: dict[str, list[int]] = {}
    for round_ in range(3):  # hours 0..3 again and again: files are closed and new ones opened
        for hour in range(4):
            batch = hours_batch([base + dt.timedelta(hours=hour)] * 2)
            ids = [round_ * 100 + hour * 10 + i for i in range(2)]
            batch = batch.set_column(0, "id", pa.array(ids, pa.int64()))
            files.add(batch)
            expected.setdefault(f"event_date=2026-12-06/event_hour={hour}", []).extend(ids)
    written = files.close()
    found: dict[str, list[int]] = {}
    for file in written:
        content = pq.read_table(tmp_path / file.path)
        assert content.num_rows == file.rows and content.schema.names == ["id"]
        folder = file.path.rsplit("/", 1)[0]
        assert folder == "event_date={event_date}/event_hour={event_hour}".format(**file.partition_values)
        assert file.path.rsplit("/", 1)[1].startswith("part-attempt-")
        assert file.size == (tmp_path / file.path).stat().st_size
        found.setdefault(folder, []).extend(content.column("id").to_pylist())
    assert {k: sorted(v) for k, v in found.items()} == expected
    assert len(written) > 4  # hours closed early got a second file, not an overwritten first one
    assert len({file.path for file in written}) == len(written)


def test_row_groups_hold_the_configured_number_of_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_files, "ROW_GROUP_ROWS", 4)
    table = ingest_files.StagedTable.of("t", pa.schema([("id", pa.int64()), ("day", pa.string())]), ("day",))
    files = table_files(tmp_path, table)
    for start in range(0, 10, 3):
        files.add(pa.RecordBatch.from_pydict({"id": list(range(start, min(start + 3, 10))), "day": ["d"] * 3}
                                             if start + 3 <= 10 else {"id": [9], "day": ["d"]}))
    (file,) = files.close()
    metadata = pq.read_metadata(tmp_path / file.path)
    assert (file.partition_values, file.rows) == ({"day": "d"}, 10)
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [6, 4]


SERVICES = ServiceLookup.of(default_catalog())


def read_config(broker: str, topic: str) -> ReadConfig:
    return SourceOptions.parse({"kafka.bootstrap.servers": broker, "subscribe": topic}).read


def read_range_files(broker: str, topic: str, partition: int, store: TableStore) -> list[dict[str, Any]]:
    """One task's work on the whole of a partition: the FILES_SCHEMA rows it hands Spark."""
    end = end_offsets(broker, topic)[partition]
    batches = list(write_range_files(read_config(broker, topic), Range(partition, 0, end), store, SERVICES))
    return pa.Table.from_batches(batches, FILES_ARROW_SCHEMA).to_pylist() if batches else []


def created_store(folder: Path) -> TableStore:
    """The tables as the job leaves them before its tasks run: events and dead_letter created."""
    store = TableStore(str(folder))
    store.create("events")
    store.create("dead_letter")
    return store


def commit(store: TableStore, files: list[dict[str, Any]], version: int) -> None:
    for table in ("events", "dead_letter"):
        written = [committed_file(SimpleNamespace(**f)) for f in files if f["table"] == table]
        assert store.commit_files(table, written, "ingest-test", version)


@pytest.mark.integration
def test_a_task_writes_its_events_and_dead_letters_into_the_tables_uncommitted(broker: str, topic: str,
                                                                             tmp_path: Path) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(300)), partition=0)
    produce(broker, topic, [b"not avro", b"", b"\x00\x00\x00\x00\x07garbage"], partition=0)
    store = created_store(tmp_path / "data")
    files = read_range_files(broker, topic, 0, store)
    by_table: dict[str, int] = {}
    for entry in files:
        by_table[entry["table"]] = by_table.get(entry["table"], 0) + entry["rows"]
        path = store.local_path(entry["table"]) / entry["path"]
        assert path.stat().st_size == entry["size"]
        assert path.name.startswith("part-p0o0-") and path.name.endswith(".zstd.parquet")
        expected = STAGED_EVENTS.schema if entry["table"] == "events" else STAGED_DEAD_LETTER.schema
        assert pq.read_schema(path).remove_metadata() == expected
        assert pq.read_metadata(path).num_rows == entry["rows"]
    assert by_table == {"events": 300, "dead_letter": 3}
    # In the tables' folders, but no reader sees them before the sink commits them.
    assert store.read("events").num_rows == 0 and store.read("dead_letter").num_rows == 0

    commit(store, files, 0)
    events = store.read("events")
    assert sorted(events.column("event_id").to_pylist()) == sorted(f"evt-{i}" for i in range(300))
    assert all(events.column(name).null_count == 0 for name in ("signature", "signature_id", "level"))
    tiers = dict(zip(events.column("service").to_pylist(), events.column("tier").to_pylist(), strict=True))
    assert tiers == {"api-gateway": "1", "order-service": "1", "payments": None}  # not in the catalog
    letters = store.read("dead_letter")
    assert sorted(letters.column("kafka_offset").to_pylist()) == [300, 301, 302]
    assert set(letters.column("reason").to_pylist()) <= {"empty", "bad_magic", "truncated", "malformed_body",
                                                          "unknown_fingerprint", "unknown_schema_id"}
    for name in ("events", "dead_letter"):
        assert check_schema(name, store.read(name).schema) == [], name
    # Another attempt at the same range writes files of its own names: it never overwrites a committed file.
    again = read_range_files(broker, topic, 0, store)
    assert {(e["table"], e["path"]) for e in again}.isdisjoint({(e["table"], e["path"]) for e in files})
    assert store.read("events").num_rows == 300


@pytest.mark.integration
def test_the_statistics_a_task_reports_let_readers_skip_its_files(broker: str, topic: str, tmp_path: Path) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(200)), partition=1)
    store = created_store(tmp_path / "data")
    for version, (start, end) in enumerate(((0, 100), (100, 200))):  # two tasks, two micro-batches
        batches = list(write_range_files(read_config(broker, topic), Range(1, start, end), store, SERVICES))
        commit(store, pa.Table.from_batches(batches, FILES_ARROW_SCHEMA).to_pylist(), version)
    actions = pa.table(store.open("events").get_add_actions(flatten=True)).to_pylist()
    ranges = sorted((a["min.kafka_offset"], a["max.kafka_offset"], a["num_records"]) for a in actions)
    assert ranges == [(0, 99, 100), (100, 199, 100)]
    assert all(a["null_count.error_type"] >= 0 and a["min.event_time"] is not None for a in actions)
    dataset = store.dataset("events")
    late = ds.field("kafka_offset") >= 150
    assert len(list(dataset.get_fragments(filter=late))) == 1 and dataset.count_rows(filter=late) == 50


@pytest.mark.integration
def test_an_empty_range_writes_nothing(broker: str, topic: str, tmp_path: Path) -> None:
    store = created_store(tmp_path / "data")
    assert read_range_files(broker, topic, 1, store) == []
    assert not list((tmp_path / "data").rglob("*.parquet"))


@pytest.mark.integration
def test_a_failed_task_attempt_removes_the_files_it_wrote(broker: str, topic: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(500)), partition=0)
    monkeypatch.setattr(ingest_files, "ROW_GROUP_ROWS", 50)  # files are on disk before the failure
    real_enrich = ingest_files.enrich_batch
    calls: list[int] = []

    def fails_later(batch: pa.RecordBatch, services: Any) -> pa.RecordBatch:
        calls.append(batch.num_rows)
        if sum(calls) > 300:
            assert list((tmp_path / "data" / "events").rglob("*.parquet")), "nothing written before the failure"
            raise RuntimeError("executor lost")
        return real_enrich(batch, services)

    monkeypatch.setattr(ingest_files, "enrich_batch", fails_later)
    store = created_store(tmp_path / "data")
    read = dataclasses.replace(read_config(broker, topic), arrow_batch_size=100)
    with pytest.raises(RuntimeError, match="executor lost"):
        list(write_range_files(read, Range(0, 0, 500), store, SERVICES))
    assert not list((tmp_path / "data").rglob("*.parquet"))


def test_the_files_have_the_delta_tables_columns_without_the_partition_ones(tmp_path: Path) -> None:
    """The sink commits the files as they are: their columns must be the table's, in its types."""
    store = created_store(tmp_path)
    for name, staged in (("events", STAGED_EVENTS), ("dead_letter", STAGED_DEAD_LETTER)):
        table_schema = pa.schema(store.open(name).schema().to_arrow())
        physical = [(f.name, f.type) for f in table_schema if f.name not in TABLES[name].partitions]
        assert [(f.name, f.type) for f in staged.schema] == physical, name
        assert staged.partitions == TABLES[name].partitions


def test_a_data_file_rebuilt_from_the_row_spark_carried_is_the_one_the_task_wrote(tmp_path: Path) -> None:
    files = table_files(tmp_path, HOURLY)
    files.add(hours_batch([dt.datetime(2026, 12, 6, 3, 0, tzinfo=UTC)] * 3))
    (written,) = files.close()
    row = SimpleNamespace(table="t", path=written.path, size=written.size, rows=written.rows,
                          stats=json.dumps(written.stats, default=str))
    assert committed_file(row) == DataFile(written.path, written.size, 3, {"event_date": "2026-12-06",
                                                                           "event_hour": "3"}, written.stats)
    assert written.stats["minValues"]["id"] == 0 and written.stats["maxValues"]["id"] == 2


def test_rows_interleaved_over_hours_are_written_before_the_buffers_grow_past_their_cap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_files, "ROW_GROUP_ROWS", 100)
    monkeypatch.setattr(ingest_files, "MAX_BUFFERED_ROWS", 5)
    files = table_files(tmp_path, HOURLY)
    base = dt.datetime(2026, 12, 6, 0, 0, tzinfo=UTC)
    for step in range(6):  # two rows of each of three hours per step
        batch = hours_batch([base + dt.timedelta(hours=h) for h in (0, 1, 2, 0, 1, 2)])
        files.add(batch.set_column(0, "id", pa.array(range(step * 6, step * 6 + 6), pa.int64())))
        assert sum(file.buffered for file in files._open.values()) <= 5
    written = files.close()
    assert sorted(i for f in written for i in pq.read_table(tmp_path / f.path).column("id").to_pylist()) == \
        list(range(36))
    assert all(pq.read_metadata(tmp_path / f.path).num_row_groups > 1 for f in written)
