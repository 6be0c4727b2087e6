"""A micro-batch's plan and its tasks' manifests (batch_staging.py), on the local file system."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from incident_contracts.table_store import DataFile
from incident_stream import ingest_files
from incident_stream.batch_staging import STAGING_FOLDER, BatchStaging, StagedBatch, StagingError, end_tag, range_name
from incident_stream.ingest_files import TableFiles
from incident_stream.kafka_read import Range

END = {"topic": "logs", "topicId": "id-1", "offsets": {"0": 120, "1": 80}}
HOURLY = ingest_files.StagedTable.of(
    "t", pa.schema([("id", pa.int64()), ("at", pa.timestamp("us", tz="UTC")), ("event_date", pa.string()),
                    ("event_hour", pa.int32())]), ("event_date", "event_hour"))


def staging(tmp_path: Path) -> BatchStaging:
    return BatchStaging(pafs.LocalFileSystem(), str(tmp_path / "data"))


def staged_files(tmp_path: Path) -> list[DataFile]:
    """Files written as a task writes them: Hive partition folders, Delta statistics with timestamps."""
    files = TableFiles(pafs.LocalFileSystem(), str(tmp_path / "data" / "t"), "part-p0o0-attempt", HOURLY)
    base = dt.datetime(2026, 12, 6, 5, 30, tzinfo=dt.UTC)
    stamps = [base, base + dt.timedelta(hours=1), base + dt.timedelta(minutes=1)]
    files.add(pa.RecordBatch.from_pydict({
        "id": pa.array([7, 8, 9], pa.int64()), "at": pa.array(stamps, pa.timestamp("us", tz="UTC")),
        "event_date": [s.strftime("%Y-%m-%d") for s in stamps],
        "event_hour": pa.array([s.hour for s in stamps], pa.int32())}))
    return sorted(files.close(), key=lambda f: f.path)


def test_the_end_tag_is_the_same_for_the_same_end_in_any_key_order() -> None:
    reordered = {"offsets": {"1": 80, "0": 120}, "topicId": "id-1", "topic": "logs"}
    assert end_tag(reordered) == end_tag(END)
    assert len(end_tag(END)) == 32 and int(end_tag(END), 16) >= 0
    assert end_tag({**END, "offsets": {"0": 120, "1": 81}}) != end_tag(END)
    assert end_tag({**END, "from": {"1": 0}}) != end_tag(END)  # a batch that reset a partition is another batch


def test_a_range_is_named_by_partition_start_and_end() -> None:
    assert range_name(Range(3, 100, 250)) == "p3-100-250"


def test_the_manifests_of_the_planned_ranges_give_back_the_files_with_their_statistics(tmp_path: Path) -> None:
    store = staging(tmp_path)
    written = staged_files(tmp_path)
    assert [f.partition_values for f in written] == [{"event_date": "2026-12-06", "event_hour": "5"},
                                                    {"event_date": "2026-12-06", "event_hour": "6"}]
    assert written[0].stats["minValues"]["at"] == "2026-12-06T05:30:00.000000Z"
    letter = DataFile("dl_date=2026-12-06/part-x.zstd.parquet", 321, 4, {"dl_date": "2026-12-06"},
                      {"minValues": {"kafka_offset": 120}, "maxValues": {"kafka_offset": 123},
                       "nullCount": {"kafka_offset": 0}})
    store.write_plan(END, [Range(0, 100, 120), Range(1, 50, 80)])
    store.write_task(Range(0, 100, 120), [("events", written[0]), ("events", written[1]), ("dead_letter", letter)])
    store.write_task(Range(1, 50, 80), [])  # a range of only skipped offsets: a manifest without files

    batch = store.batch({"offsets": {"1": 80, "0": 120}, "topic": "logs", "topicId": "id-1"})
    assert batch == StagedBatch(files={"events": written, "dead_letter": [letter]}, discarded={})
    assert (batch.rows("events"), batch.rows("dead_letter"), batch.rows("incident_updates")) == (3, 4, 0)
    folder = tmp_path / "data" / STAGING_FOLDER
    assert sorted(p.name for p in (folder / "plans").iterdir()) == [f"{end_tag(END)}.json"]  # no partial file left
    assert sorted(p.name.split(".")[0] for p in (folder / "tasks").iterdir()) == ["p0-100-120", "p1-50-80"]


def test_a_batch_without_a_plan_read_nothing(tmp_path: Path) -> None:
    store = staging(tmp_path)
    assert store.batch(END) == StagedBatch()
    store.write_task(Range(0, 100, 120), [("events", staged_files(tmp_path)[0])])
    assert store.batch(END) == StagedBatch()  # a manifest alone names no batch


def test_a_planned_range_without_a_manifest_is_an_error_naming_it(tmp_path: Path) -> None:
    store = staging(tmp_path)
    store.write_plan(END, [Range(0, 100, 120), Range(1, 50, 80)])
    store.write_task(Range(0, 100, 120), [])
    store.write_task(Range(1, 50, 79), [])  # another batch's range of the partition
    with pytest.raises(StagingError, match="the task that read p1-50-80 left no manifest"):
        store.batch(END)


def test_a_manifest_that_cannot_be_read_is_an_error(tmp_path: Path) -> None:
    store = staging(tmp_path)
    store.write_plan(END, [Range(0, 100, 120)])
    (tmp_path / "data" / STAGING_FOLDER / "tasks").mkdir(parents=True)
    (tmp_path / "data" / STAGING_FOLDER / "tasks" / "p0-100-120.abc.json").write_text("{not json")
    with pytest.raises(StagingError, match=r"cannot read .*/p0-100-120\.abc\.json"):
        store.batch(END)


def test_clear_forgets_every_plan_and_manifest(tmp_path: Path) -> None:
    store = staging(tmp_path)
    store.clear()  # nothing staged yet: no error
    written = staged_files(tmp_path)
    store.write_plan(END, [Range(0, 100, 120)])
    store.write_task(Range(0, 100, 120), [("events", written[0])])
    assert store.batch(END).rows("events") == 2  # 05:30 and 05:31
    store.clear()
    folder = tmp_path / "data" / STAGING_FOLDER
    assert folder.is_dir() and list(folder.rglob("*")) == []
    assert store.batch(END) == StagedBatch()
    assert all((tmp_path / "data" / "t" / f.path).exists() for f in written)  # table files are not the staging's
