"""The ingest source's task work (ingest_files.py): events and dead letters written as staged Parquet files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stream_helpers import make_event, produce, produce_events

from incident_contracts.catalog import default_catalog
from incident_contracts.kafka import end_offsets
from incident_contracts.tables import EVENTS
from incident_stream import ingest_files
from incident_stream.enrich_arrow import ServiceLookup
from incident_stream.ingest_files import (
    FILES_ARROW_SCHEMA,
    STAGED_DEAD_LETTER,
    STAGED_EVENTS,
    TableFiles,
    split_by_partition,
    write_range_files,
)
from incident_stream.kafka_read import Range
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
    files = TableFiles(tmp_path, HOURLY)
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
    for folder, path, rows in written:
        content = pq.read_table(path)
        assert content.num_rows == rows and content.schema.names == ["id"]
        assert path.parent == tmp_path / folder
        found.setdefault(folder, []).extend(content.column("id").to_pylist())
    assert {k: sorted(v) for k, v in found.items()} == expected
    assert len(written) > 4  # hours closed early got a second file, not an overwritten first one
    assert len({path for _, path, _ in written}) == len(written)


def test_row_groups_hold_the_configured_number_of_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_files, "ROW_GROUP_ROWS", 4)
    table = ingest_files.StagedTable.of("t", pa.schema([("id", pa.int64()), ("day", pa.string())]), ("day",))
    files = TableFiles(tmp_path, table)
    for start in range(0, 10, 3):
        files.add(pa.RecordBatch.from_pydict({"id": list(range(start, min(start + 3, 10))), "day": ["d"] * 3}
                                             if start + 3 <= 10 else {"id": [9], "day": ["d"]}))
    ((folder, path, rows),) = files.close()
    metadata = pq.read_metadata(path)
    assert (folder, rows) == ("day=d", 10)
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [6, 4]


def read_range_files(broker: str, topic: str, partition: int, stage: Path) -> list[dict[str, Any]]:
    options = SourceOptions.parse({"kafka.bootstrap.servers": broker, "subscribe": topic, "format": "events",
                                   "serviceCatalog": json.dumps(ServiceLookup.of(default_catalog()).to_dict())})
    end = end_offsets(broker, topic)[partition]
    batches = list(write_range_files(options.read, Range(partition, 0, end), str(stage)))
    return pa.Table.from_batches(batches, FILES_ARROW_SCHEMA).to_pylist() if batches else []


@pytest.mark.integration
def test_a_task_stages_its_events_and_dead_letters_with_the_tables_schemas(broker: str, topic: str,
                                                                           tmp_path: Path) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(300)), partition=0)
    produce(broker, topic, [b"not avro", b"", b"\x00\x00\x00\x00\x07garbage"], partition=0)
    stage = tmp_path / "stage"
    files = read_range_files(broker, topic, 0, stage)
    by_table: dict[str, int] = {}
    for entry in files:
        by_table[entry["table"]] = by_table.get(entry["table"], 0) + entry["rows"]
        path = Path(entry["path"])
        assert path.is_relative_to(Path(entry["task_dir"])) and Path(entry["task_dir"]).parent == stage / entry["table"]
        expected = STAGED_EVENTS.schema if entry["table"] == "events" else STAGED_DEAD_LETTER.schema
        assert pq.read_schema(path).remove_metadata() == expected
        assert pq.read_metadata(path).num_rows == entry["rows"]
    assert by_table == {"events": 300, "dead_letter": 3}
    events = pa.concat_tables(pq.read_table(e["path"]) for e in files if e["table"] == "events")
    assert sorted(events.column("event_id").to_pylist()) == sorted(f"evt-{i}" for i in range(300))
    assert all(events.column(name).null_count == 0 for name in ("signature", "signature_id", "level"))
    tiers = dict(zip(events.column("service").to_pylist(), events.column("tier").to_pylist(), strict=True))
    assert tiers == {"api-gateway": "1", "order-service": "1", "payments": None}  # not in the catalog
    letters = pa.concat_tables(pq.read_table(e["path"]) for e in files if e["table"] == "dead_letter")
    assert sorted(letters.column("kafka_offset").to_pylist()) == [300, 301, 302]
    assert set(letters.column("reason").to_pylist()) <= {"empty", "bad_magic", "truncated", "malformed_body",
                                                          "unknown_fingerprint", "unknown_schema_id"}
    # Another attempt at the same range writes into a folder of its own.
    again = read_range_files(broker, topic, 0, stage)
    assert {e["task_dir"] for e in again}.isdisjoint({e["task_dir"] for e in files})


@pytest.mark.integration
def test_an_empty_range_stages_nothing(broker: str, topic: str, tmp_path: Path) -> None:
    assert read_range_files(broker, topic, 1, tmp_path / "stage") == []
    assert not (tmp_path / "stage").exists()


@pytest.mark.integration
def test_staged_files_have_the_column_types_sparks_writer_gives_the_table(spark: Any, broker: str, topic: str,
                                                                         tmp_path: Path) -> None:
    """Readers see one schema whichever writer wrote a file (a table may hold files of both)."""
    produce_events(broker, topic, (make_event(i) for i in range(50)), partition=0)
    files = read_range_files(broker, topic, 0, tmp_path / "stage")
    ours = pq.read_schema(files[0]["path"])
    rows = (spark.read.format("kafka_arrow").option("kafka.bootstrap.servers", broker).option("subscribe", topic)
            .option("format", "events").load().select(*EVENTS.names))
    rows.write.partitionBy("event_date", "event_hour").parquet(str(tmp_path / "spark"))
    theirs = pq.read_schema(next((tmp_path / "spark").rglob("*.parquet")))
    assert [(f.name, f.type) for f in ours] == [(f.name, f.type) for f in theirs]


def test_rows_interleaved_over_hours_are_written_before_the_buffers_grow_past_their_cap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_files, "ROW_GROUP_ROWS", 100)
    monkeypatch.setattr(ingest_files, "MAX_BUFFERED_ROWS", 5)
    files = TableFiles(tmp_path, HOURLY)
    base = dt.datetime(2026, 12, 6, 0, 0, tzinfo=UTC)
    for step in range(6):  # two rows of each of three hours per step
        batch = hours_batch([base + dt.timedelta(hours=h) for h in (0, 1, 2, 0, 1, 2)])
        files.add(batch.set_column(0, "id", pa.array(range(step * 6, step * 6 + 6), pa.int64())))
        assert sum(file.buffered for file in files._open.values()) <= 5
    written = files.close()
    assert sorted(i for _, path, _ in written for i in pq.read_table(path).column("id").to_pylist()) == list(range(36))
    assert all(pq.read_metadata(path).num_row_groups > 1 for _, path, _ in written)
