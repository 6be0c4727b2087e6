"""A task of the job's source: its events and dead letters written as Parquet files into the Delta tables'
folders (ingest_files.py), invisible to readers until the sink commits them, listed in the task's manifest,
and its partial buckets handed to detection (logs_source.read_range_once)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from stream_helpers import make_event, produce, produce_events
from table_rows import dead_letter_rows, event_rows

from incident_contracts.catalog import default_catalog
from incident_contracts.kafka import end_offsets
from incident_contracts.table_store import TableStore
from incident_contracts.tables import TABLES, check_schema
from incident_stream import ingest_files, logs_source
from incident_stream.batch_staging import STAGING_FOLDER, BatchStaging, StagedBatch
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.partials import PARTIALS_ARROW_SCHEMA, PartialsConfig, decode
from incident_stream.detection.stream import partials_config
from incident_stream.enrich_arrow import ServiceLookup
from incident_stream.ingest_files import (
    STAGED_DEAD_LETTER,
    STAGED_EVENTS,
    RangeFiles,
    TableFiles,
    split_by_partition,
)
from incident_stream.kafka_read import Range, ReadConfig
from incident_stream.kafka_source import SourceOptions
from incident_stream.logs_source import read_range_once

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
DETECTION = partials_config(DetectionParams())


def read_config(broker: str, topic: str) -> ReadConfig:
    return SourceOptions.parse({"kafka.bootstrap.servers": broker, "subscribe": topic}).read


def created_store(folder: Path) -> TableStore:
    """The tables as the job leaves them before its tasks run: events and dead_letter created."""
    store = TableStore(str(folder))
    store.create("events")
    store.create("dead_letter")
    return store


def end_of(topic: str, rng: Range) -> dict[str, Any]:
    return {"topic": topic, "topicId": "", "offsets": {str(rng.partition): rng.end}}


def run_task(read: ReadConfig, rng: Range, store: TableStore,
             detection: PartialsConfig | None = None) -> tuple[StagedBatch, list[pa.RecordBatch]]:
    """One task of a one-range batch, planned as the source plans it: the files its manifest lists, and
    the partial buckets it handed Spark."""
    staging = BatchStaging.of(store)
    staging.write_plan(end_of(read.topic, rng), [rng])
    buckets = list(read_range_once(read, rng, store, SERVICES, detection))
    return staging.batch(end_of(read.topic, rng)), buckets


def read_whole_partition(broker: str, topic: str, partition: int, store: TableStore,
                         detection: PartialsConfig | None = None) -> tuple[StagedBatch, list[pa.RecordBatch]]:
    end = end_offsets(broker, topic)[partition]
    return run_task(read_config(broker, topic), Range(partition, 0, end), store, detection)


def commit(store: TableStore, staged: StagedBatch, version: int) -> None:
    for table in ("events", "dead_letter"):
        assert store.commit_files(table, staged.files.get(table, []), "ingest-test", version)


def staged_names(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / STAGING_FOLDER).rglob("*") if p.is_file())


def test_a_range_writes_its_events_and_dead_letters_under_names_of_its_own(tmp_path: Path) -> None:
    store = created_store(tmp_path / "data")
    files = RangeFiles(store, Range(2, 40, 60))
    files.add_events(event_rows(range(40, 52), partition=2, hours=(0, 1)).to_batches()[0])
    files.add_dead_letters(dead_letter_rows(range(52, 60), partition=2).to_batches()[0])
    written = files.close()
    assert sorted((table, f.partition_values.get("event_hour", f.partition_values.get("dl_date")), f.rows)
                  for table, f in written) == [("dead_letter", "2026-12-06", 8), ("events", "5", 6),
                                               ("events", "6", 6)]
    for table, f in written:
        path = store.local_path(table) / f.path
        assert path.name.startswith("part-p2o40-") and path.name.endswith("-0000.zstd.parquet")
        assert path.stat().st_size == f.size and pq.read_metadata(path).num_rows == f.rows
        expected = STAGED_EVENTS.schema if table == "events" else STAGED_DEAD_LETTER.schema
        assert pq.read_schema(path).remove_metadata() == expected
    offsets = {t: sorted(o for _, f in written if _ == t
                         for o in pq.read_table(store.local_path(t) / f.path).column("kafka_offset").to_pylist())
               for t in ("events", "dead_letter")}
    assert offsets == {"events": list(range(40, 52)), "dead_letter": list(range(52, 60))}

    again = RangeFiles(store, Range(2, 40, 60))  # another attempt at the range: other names
    again.add_events(event_rows(range(40, 52), partition=2).to_batches()[0])
    assert {f.path for _, f in again.close()}.isdisjoint({f.path for _, f in written})
    files.remove()
    assert all(not (store.local_path(t) / f.path).exists() for t, f in written)
    assert len(list((tmp_path / "data").rglob("*.parquet"))) == 1  # the other attempt's file stays


def test_a_range_without_rows_writes_no_file(tmp_path: Path) -> None:
    store = created_store(tmp_path / "data")
    assert RangeFiles(store, Range(0, 5, 5)).close() == []
    assert not list((tmp_path / "data").rglob("*.parquet"))


@pytest.mark.integration
def test_a_task_writes_its_events_and_dead_letters_into_the_tables_uncommitted_and_lists_them(
        broker: str, topic: str, tmp_path: Path) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(300)), partition=0)
    produce(broker, topic, [b"not avro", b"", b"\x00\x00\x00\x00\x07garbage"], partition=0)
    store = created_store(tmp_path / "data")
    staged, buckets = read_whole_partition(broker, topic, 0, store)
    assert buckets == []  # without a detection configuration the task hands Spark nothing
    assert staged.discarded == {}
    assert (staged.rows("events"), staged.rows("dead_letter")) == (300, 3)
    on_disk = {(t, str(p.relative_to(store.local_path(t)))) for t in ("events", "dead_letter")
               for p in store.local_path(t).rglob("*.parquet")}
    assert on_disk == {(t, f.path) for t, files in staged.files.items() for f in files}
    for table, files in staged.files.items():
        for entry in files:
            path = store.local_path(table) / entry.path
            assert path.stat().st_size == entry.size
            assert path.name.startswith("part-p0o0-") and path.name.endswith(".zstd.parquet")
            expected = STAGED_EVENTS.schema if table == "events" else STAGED_DEAD_LETTER.schema
            assert pq.read_schema(path).remove_metadata() == expected
            assert pq.read_metadata(path).num_rows == entry.rows
    # In the tables' folders, but no reader sees them before the sink commits them.
    assert store.read("events").num_rows == 0 and store.read("dead_letter").num_rows == 0

    commit(store, staged, 0)
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
    BatchStaging.of(store).clear()
    again, _ = read_whole_partition(broker, topic, 0, store)
    names = {(t, f.path) for t, files in staged.files.items() for f in files}
    assert names.isdisjoint({(t, f.path) for t, files in again.files.items() for f in files})
    assert store.read("events").num_rows == 300


@pytest.mark.integration
def test_a_task_given_a_detection_configuration_hands_spark_its_partial_buckets(broker: str, topic: str,
                                                                                tmp_path: Path) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(300)), partition=0)
    produce(broker, topic, [b"not avro"], partition=0)
    store = created_store(tmp_path / "data")
    staged, buckets = read_whole_partition(broker, topic, 0, store, DETECTION)
    assert (staged.rows("events"), staged.rows("dead_letter")) == (300, 1)  # the files as without detection
    (batch,) = buckets
    assert batch.schema == PARTIALS_ARROW_SCHEMA
    rows = batch.to_pylist()
    assert {r["environment"] for r in rows} == {"prod"}
    assert {r["service"] for r in rows} == {"api-gateway", "order-service", "payments"}
    aggs = [decode(r["agg"]) for r in rows]
    assert sum(a.n for a in aggs) == 300  # every event once, the dead letter in none
    assert sum(a.errors for a in aggs) == 30  # make_event: every tenth is an error
    commit(store, staged, 0)
    events = store.read("events", columns=["service", "event_time"]).to_pylist()
    times_ms = [int(e["event_time"].timestamp() * 1000) for e in events]
    assert {r["newest_ms"] for r in rows} == {max(times_ms)}
    assert sorted((r["service"], r["bucket"], decode(r["agg"]).n) for r in rows) == sorted(
        (service, bucket, count) for (service, bucket), count in Counter(
            (e["service"], t // DETECTION.bucket_ms) for e, t in zip(events, times_ms, strict=True)).items())


@pytest.mark.integration
def test_the_statistics_a_task_reports_let_readers_skip_its_files(broker: str, topic: str, tmp_path: Path) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(200)), partition=1)
    store = created_store(tmp_path / "data")
    for version, (start, end) in enumerate(((0, 100), (100, 200))):  # two tasks, two micro-batches
        staged, _ = run_task(read_config(broker, topic), Range(1, start, end), store)
        commit(store, staged, version)
        BatchStaging.of(store).clear()
    actions = pa.table(store.open("events").get_add_actions(flatten=True)).to_pylist()
    ranges = sorted((a["min.kafka_offset"], a["max.kafka_offset"], a["num_records"]) for a in actions)
    assert ranges == [(0, 99, 100), (100, 199, 100)]
    assert all(a["null_count.error_type"] >= 0 and a["min.event_time"] is not None for a in actions)
    dataset = store.dataset("events")
    late = ds.field("kafka_offset") >= 150
    assert len(list(dataset.get_fragments(filter=late))) == 1 and dataset.count_rows(filter=late) == 50


@pytest.mark.integration
def test_an_empty_range_writes_nothing_and_hands_no_buckets(broker: str, topic: str, tmp_path: Path) -> None:
    store = created_store(tmp_path / "data")
    staged, buckets = read_whole_partition(broker, topic, 1, store, DETECTION)
    assert staged == StagedBatch() and buckets == []
    assert not list((tmp_path / "data").rglob("*.parquet"))
    assert len(staged_names(tmp_path / "data")) == 2  # the plan, and the manifest of the task's empty range


@pytest.mark.integration
def test_a_failed_task_attempt_removes_the_files_it_wrote_and_writes_no_manifest(
        broker: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(500)), partition=0)
    monkeypatch.setattr(ingest_files, "ROW_GROUP_ROWS", 50)  # files are on disk before the failure
    real_enrich = logs_source.enrich_batch
    calls: list[int] = []

    def fails_later(batch: pa.RecordBatch, services: Any) -> pa.RecordBatch:
        calls.append(batch.num_rows)
        if sum(calls) > 300:
            assert list((tmp_path / "data" / "events").rglob("*.parquet")), "nothing written before the failure"
            raise RuntimeError("executor lost")
        return real_enrich(batch, services)

    monkeypatch.setattr(logs_source, "enrich_batch", fails_later)
    store = created_store(tmp_path / "data")
    read = dataclasses.replace(read_config(broker, topic), arrow_batch_size=100)
    with pytest.raises(RuntimeError, match="executor lost"):
        list(read_range_once(read, Range(0, 0, 500), store, SERVICES, DETECTION))
    assert not list((tmp_path / "data").rglob("*.parquet"))
    assert staged_names(tmp_path / "data") == []


def test_the_files_have_the_delta_tables_columns_without_the_partition_ones(tmp_path: Path) -> None:
    """The sink commits the files as they are: their columns must be the table's, in its types."""
    store = created_store(tmp_path)
    for name, staged in (("events", STAGED_EVENTS), ("dead_letter", STAGED_DEAD_LETTER)):
        table_schema = pa.schema(store.open(name).schema().to_arrow())
        physical = [(f.name, f.type) for f in table_schema if f.name not in TABLES[name].partitions]
        assert [(f.name, f.type) for f in staged.schema] == physical, name
        assert staged.partitions == TABLES[name].partitions


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
