"""Reading the query's offset log (job.py): the offsets a micro-batch reads up to, and where a query starts
that replaces the earlier job's two."""

from __future__ import annotations

import json
from pathlib import Path

from incident_stream.job import batch_end_offsets, checkpoint_end_offsets, legacy_start


def write_offsets(checkpoint: Path, batch_id: int, offsets: dict[str, int] | None, raw: str | None = None) -> None:
    """An offset log entry as Spark writes it: version, batch metadata, then one line per source."""
    folder = checkpoint / "offsets"
    folder.mkdir(parents=True, exist_ok=True)
    source = raw if raw is not None else json.dumps({"topic": "logs", "topic_id": "t1", "offsets": offsets})
    (folder / str(batch_id)).write_text(f'v1\n{{"batchWatermarkMs":0,"batchTimestampMs":1}}\n{source}',
                                        encoding="utf-8")


def test_a_batch_reads_up_to_the_offsets_of_its_log_entry(tmp_path: Path) -> None:
    write_offsets(tmp_path, 0, {"0": 300, "1": 300})
    write_offsets(tmp_path, 1, {"0": 550, "1": 600})
    assert batch_end_offsets(tmp_path, 1) == {"0": 550, "1": 600}


def test_unknown_when_the_log_cannot_tell(tmp_path: Path) -> None:
    assert batch_end_offsets(tmp_path, 2) is None  # no entry for batch 2
    write_offsets(tmp_path, 1, None, raw="not json")
    assert batch_end_offsets(tmp_path, 1) is None


def test_checkpoint_end_offsets_are_those_of_the_last_committed_batch(tmp_path: Path) -> None:
    assert checkpoint_end_offsets(tmp_path) is None
    write_offsets(tmp_path, 0, {"0": 10})
    write_offsets(tmp_path, 1, {"0": 25})
    (tmp_path / "commits").mkdir()
    (tmp_path / "commits" / "0").write_text("v1\n{}", encoding="utf-8")
    assert checkpoint_end_offsets(tmp_path) == {"0": 10}


def commit(checkpoint: Path, batch_id: int) -> None:
    (checkpoint / "commits").mkdir(parents=True, exist_ok=True)
    (checkpoint / "commits" / str(batch_id)).write_text("v1\n{}", encoding="utf-8")


def test_the_log_entry_is_read_whole_when_asked_raw(tmp_path: Path) -> None:
    write_offsets(tmp_path, 0, {"0": 10})
    assert batch_end_offsets(tmp_path, 0, raw=True) == {"topic": "logs", "topic_id": "t1", "offsets": {"0": 10}}


def test_a_new_query_starts_after_the_earlier_ingest_querys_last_commit(tmp_path: Path) -> None:
    ingest = tmp_path / "ingest"
    write_offsets(ingest, 0, {"0": 10, "1": 4})
    write_offsets(ingest, 1, {"0": 25, "1": 9})  # planned, never committed: read again
    commit(ingest, 0)
    assert legacy_start(tmp_path, "logs.events") == {"startingOffsets": json.dumps({"logs.events": {"0": 10, "1": 4}})}


def test_no_carry_over_once_the_query_has_committed_or_without_an_earlier_checkpoint(tmp_path: Path) -> None:
    assert legacy_start(tmp_path, "t") == {}  # a fresh folder
    ingest = tmp_path / "ingest"
    write_offsets(ingest, 0, {"0": 10})
    commit(ingest, 0)
    logs = tmp_path / "logs"
    write_offsets(logs, 0, {"0": 40})
    assert legacy_start(tmp_path, "t") != {}  # the new query's first batch is not committed yet: same start
    commit(logs, 0)
    assert legacy_start(tmp_path, "t") == {}  # its own checkpoint rules from now on


def test_a_batch_in_the_events_table_but_not_in_the_old_checkpoint_is_not_read_again(tmp_path: Path) -> None:
    """The earlier job died after committing batch 1 to the events table and before Spark recorded it: the
    new query starts after batch 1, which the table holds, not after batch 0."""
    from incident_contracts.table_store import TableStore
    from incident_contracts.tables import EVENTS

    ingest = tmp_path / "checkpoint" / "ingest"
    write_offsets(ingest, 0, {"0": 10})
    write_offsets(ingest, 1, {"0": 25})
    commit(ingest, 0)
    (ingest / "metadata").write_text('{"id":"old-run"}\n', encoding="utf-8")
    store = TableStore(str(tmp_path / "data"))
    store.create("events")
    assert legacy_start(ingest.parent, "t", store) == {"startingOffsets": json.dumps({"t": {"0": 10}})}
    store.append("events", EVENTS.empty_table(), "incident-stream-ingest-old-run", 1)
    assert store.committed_version("events", "incident-stream-ingest-old-run") == 1
    assert legacy_start(ingest.parent, "t", store) == {"startingOffsets": json.dumps({"t": {"0": 25}})}
