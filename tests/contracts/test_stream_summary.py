"""The streaming job's summary file: written whole or not at all, read back or refused with the file named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from incident_contracts.stream_summary import (
    SUMMARY_KIND,
    SummaryMissing,
    SummaryUnreadable,
    read_summary,
    write_summary,
)

SUMMARY = {"summary": SUMMARY_KIND, "run_id": "r1", "status": "finished", "error": None,
           "end_offsets": {"0": 120, "1": 98}, "input_rows": 218, "rows_per_second": 1500.0}


def test_a_written_summary_reads_back_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "r1" / "stream_summary.json"  # the folder is created
    write_summary(path, SUMMARY)
    assert read_summary(path) == SUMMARY
    assert [p.name for p in path.parent.iterdir()] == ["stream_summary.json"]  # no temporary file left


def test_a_summary_that_cannot_be_written_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "stream_summary.json"
    write_summary(path, SUMMARY)

    class Unwritable:
        def __str__(self) -> str:
            raise RuntimeError("cannot be written")

    with pytest.raises(RuntimeError, match="cannot be written"):
        write_summary(path, {**SUMMARY, "status": "failed", "error": Unwritable()})
    assert read_summary(path) == SUMMARY
    assert [p.name for p in tmp_path.iterdir()] == ["stream_summary.json"]


def test_a_missing_summary_says_the_job_ended_before_it_reported(tmp_path: Path) -> None:
    path = tmp_path / "stream_summary.json"
    with pytest.raises(SummaryMissing, match=r"wrote no summary to .*stream_summary\.json: it ended before"):
        read_summary(path)


@pytest.mark.parametrize(("text", "message"), [
    ('{"summary": "incident-stream", "status": "fini', r"is not JSON"),
    ("", r"is not JSON"),
    ('{"summary": "something else", "status": "finished"}', r"is not a summary of the streaming job"),
    ('{"summary": "incident-stream"}', r"is not a summary of the streaming job"),
    ('["incident-stream"]', r"is not a summary of the streaming job"),
])
def test_a_damaged_or_foreign_file_is_refused_naming_it(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "stream_summary.json"
    path.write_text(text)
    with pytest.raises(SummaryUnreadable, match=message) as raised:
        read_summary(path)
    assert str(path) in str(raised.value)
    assert not isinstance(raised.value, SummaryMissing)


def test_bytes_that_are_not_text_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "stream_summary.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SummaryUnreadable, match="cannot be read"):
        read_summary(path)


def test_the_summary_is_one_json_object_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    write_summary(path, SUMMARY)
    assert json.loads(path.read_text()) == SUMMARY
