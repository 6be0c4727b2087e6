"""The job's command line writes its summary to `--summary-file`, also when the run is refused (no Spark starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from incident_contracts.stream_summary import SUMMARY_KIND, read_summary
from incident_contracts.table_store import TableStore
from incident_contracts.writer_lock import writer_lock


def test_a_refused_run_writes_its_summary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from incident_stream.cli import main

    monkeypatch.setenv("ENV_FILE", str(tmp_path / "no.env"))
    data, checkpoint = tmp_path / "data", tmp_path / "checkpoint"
    summary_file = tmp_path / "runs" / "r1" / "stream_summary.json"
    with writer_lock(checkpoint, TableStore(str(data)), "by-hand"):
        status = main(["--data-dir", str(data), "--checkpoint", str(checkpoint), "--once", "--run-id", "r1",
                       "--summary-file", str(summary_file)])
    assert status == 3
    summary = read_summary(summary_file)
    assert (summary["summary"], summary["run_id"], summary["status"]) == (SUMMARY_KIND, "r1", "refused")
    assert "run by-hand" in summary["error"]
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith('{"summary": "incident-stream"')


def test_the_summary_file_option_is_a_path() -> None:
    from incident_stream.cli import build_parser

    assert build_parser().parse_args(["--summary-file", "x/y.json"]).summary_file == Path("x/y.json")
    assert build_parser().parse_args([]).summary_file is None
