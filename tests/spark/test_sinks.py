"""The exactly-once Parquet writer and compaction, as a plain folder reader sees the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stream_helpers import read_table

from incident_stream import compaction
from incident_stream.compaction import compact_table, swap_folder
from incident_stream.sinks import batch_file_name, discard_batch, parse_file_name, write_batch_exactly_once


def files(table: Path) -> list[str]:
    return sorted(str(p.relative_to(table)) for p in table.rglob("*.parquet"))


@pytest.mark.integration
def test_a_replayed_batch_replaces_the_first_attempt(spark: Any, tmp_path: Path) -> None:
    table = tmp_path / "data" / "events"
    frame = spark.createDataFrame([(i, f"d{i % 2}") for i in range(10)], "id int, day string")
    first = write_batch_exactly_once(frame.repartition(3), 0, table, ["day"], tag="ab12")
    assert first.rows == 10 and len(first.files) >= 3
    assert all(parse_file_name(p.name) == ("ab12", "b", 0) for p in first.files)
    # The replay lays the same rows out differently (one file): the first attempt's extra files must go.
    second = write_batch_exactly_once(frame.coalesce(1), 0, table, ["day"], tag="ab12")
    assert second.rows == 10
    assert files(table) == sorted(str(p.relative_to(table)) for p in second.files)
    content = read_table(table)
    assert sorted(content.column("id").to_pylist()) == list(range(10))
    assert not list((tmp_path / "data" / "_staging").glob("events-*"))  # staging cleaned


@pytest.mark.integration
def test_batches_add_up_and_empty_batches_write_nothing(spark: Any, tmp_path: Path) -> None:
    table = tmp_path / "updates"
    schema = "id int, name string"
    write_batch_exactly_once(spark.createDataFrame([(1, "a"), (2, "b")], schema), 0, table, tag="x1")
    empty = write_batch_exactly_once(spark.createDataFrame([], schema), 1, table, tag="x1")
    write_batch_exactly_once(spark.createDataFrame([(3, "c")], schema), 2, table, tag="x1")
    assert empty.rows == 0 and empty.files == []
    # A fresh checkpoint (another tag) starting again at batch 0 does not overwrite the old files.
    write_batch_exactly_once(spark.createDataFrame([(4, "d")], schema), 0, table, tag="y2")
    assert sorted(read_table(table).column("id").to_pylist()) == [1, 2, 3, 4]


def _write(table: Path, folder: str, tag: str, batch: int, rows: list[int], seq: int = 0) -> None:
    (table / folder).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": pa.array(rows, pa.int64())}), table / folder / batch_file_name(tag, batch, seq))


def test_discarding_a_batch_removes_what_an_earlier_attempt_wrote(tmp_path: Path) -> None:
    from incident_stream.sinks import publish_staged

    table, stage = tmp_path / "dead_letter", tmp_path / "_staging" / "attempt"
    stage.mkdir(parents=True)
    pq.write_table(pa.table({"id": [1]}), stage / "part-0.parquet")
    publish_staged(stage, table, 5, "t")
    assert len(files(table)) == 1
    discard_batch(table, 5, "t")  # the replay of batch 5 found nothing for this table
    assert files(table) == []


def test_files_staged_by_tasks_are_published_under_batch_names_and_a_replay_replaces_them(tmp_path: Path) -> None:
    from incident_stream.sinks import publish_files

    table, stage = tmp_path / "events", tmp_path / "_staging" / "ingest" / "events"

    def staged(attempt: str, folder: str, ids: list[int]) -> tuple[Path, str]:
        path = stage / attempt / folder / "part-0000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": pa.array(ids, pa.int64())}), path)
        return path, folder

    hour3, hour4 = "event_date=2026-01-01/event_hour=3", "event_date=2026-01-01/event_hour=4"
    first = publish_files([staged("p1-o0-5-aa", hour3, [5, 6]), staged("p0-o0-5-bb", hour3, [1]),
                           staged("p0-o0-5-bb", hour4, [2, 3])], table, 7, "t")
    assert (first.rows, first.per_partition) == (5, {hour3: 3, hour4: 2})
    assert files(table) == [f"{hour3}/{batch_file_name('t', 7, 0)}", f"{hour3}/{batch_file_name('t', 7, 1)}",
                            f"{hour4}/{batch_file_name('t', 7, 2)}"]
    assert not list(stage.rglob("*.parquet"))  # moved, not copied
    # The replay of batch 7 (same offsets) after a crash before the commit: its events are all in hour 3.
    publish_files([staged("p0-o0-5-cc", hour3, [1, 2, 3]), staged("p1-o0-5-dd", hour3, [5, 6])], table, 7, "t")
    assert sorted(read_table(table).column("id").to_pylist()) == [1, 2, 3, 5, 6]
    assert all(name.startswith(hour3) for name in files(table))


def test_compaction_merges_committed_small_files_only(tmp_path: Path) -> None:
    table = tmp_path / "data" / "events"
    for batch in range(20):
        _write(table, "event_date=2026-01-01/event_hour=3", "t", batch, [batch * 10, batch * 10 + 1])
    _write(table, "event_date=2026-01-01/event_hour=4", "t", 19, [999])
    result = compact_table(table, tag="t", before_batch=18, min_files=16)
    assert (result.folders, result.files_merged) == (1, 18)
    left = files(table)
    assert "event_date=2026-01-01/event_hour=3/" + batch_file_name("t", 18, 0) in left
    assert "event_date=2026-01-01/event_hour=3/" + batch_file_name("t", 19, 0) in left
    assert sum(1 for name in left if "-c000000000017-" in name) == 1
    ids = read_table(table).column("id").to_pylist()
    assert sorted(ids) == sorted([b * 10 + k for b in range(20) for k in (0, 1)] + [999])
    # Too few small files left: nothing more to do.
    assert compact_table(table, tag="t", before_batch=20, min_files=16).files_merged == 0


@pytest.mark.parametrize("atomic", [True, False])
def test_swap_folder_exchanges_contents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, atomic: bool) -> None:
    if not atomic:
        monkeypatch.setattr(compaction, "_exchange", lambda a, b: False)
    old, new = tmp_path / "part", tmp_path / "staging"
    old.mkdir()
    new.mkdir()
    (old / "a.parquet").write_text("old")
    (new / "b.parquet").write_text("new")
    swap_folder(new, old)
    assert [p.name for p in old.iterdir()] == ["b.parquet"]
    assert [p.name for p in new.iterdir()] == ["a.parquet"]
