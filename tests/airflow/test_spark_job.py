"""How the stream operator reads the job's output: its summary line, and which failures are worth a resubmission."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from incident_airflow.spark_job import job_summary, passing_failure

WORKER_TIMEOUT = ("Python worker failed to connect back.\n=== Streaming Query ===\nIdentifier: ingest [id = 1]\n"
                  "Current State: INITIALIZING")


def _summary(status: str, error: str | None) -> dict:
    return {"summary": "incident-stream", "status": status, "stopped_by": "query ingest failed", "error": error}


def test_the_summary_line_is_recognised_and_other_lines_are_not():
    line = json.dumps(_summary("finished", None)) + "\n"
    assert job_summary(line) == _summary("finished", None)
    assert job_summary('{"summary": "something else"}') is None
    assert job_summary("26/11/23 12:49:36 WARN ResolveWriteToStream: ...") is None
    assert job_summary('{"summary": "incident-stream", broken') is None


def test_a_python_worker_that_did_not_connect_back_is_worth_a_resubmission():
    assert passing_failure([_summary("failed", WORKER_TIMEOUT)]) == "Python worker failed to connect back"
    # Only the last submission counts: an earlier passing failure does not excuse a later real one.
    assert passing_failure([_summary("failed", WORKER_TIMEOUT), _summary("failed", "AnalysisException: bad")]) is None


def test_real_failures_and_missing_summaries_are_not_resubmitted():
    assert passing_failure([]) is None  # the job died before it could report: fail the task
    assert passing_failure([_summary("failed", "FileNotFoundError: checkpoint metadata is corrupt")]) is None
    assert passing_failure([_summary("finished", None)]) is None


def test_the_jobs_error_is_named_in_one_line():
    from incident_airflow.spark_job import job_error

    assert job_error([]) is None
    assert job_error([_summary("ok", "")]) is None
    failed = _summary("failed", "DataLossError: Partition 0 of 'logs.events': offset 5 is gone\n  at line 2")
    assert job_error([_summary("failed", "earlier"), failed]) == (
        "DataLossError: Partition 0 of 'logs.events': offset 5 is gone")
    refused = _summary("refused", "the tables in /data is in use by run manual (pid 7 on host, started ...).")
    assert job_error([refused]) == refused["error"]


def test_the_operator_waits_for_a_running_job_and_names_it_when_it_does_not_end(tmp_path: Path) -> None:
    """A job started by hand holds the writer locks: the operator waits, then fails naming it; once that
    job ends (here: its process is killed), the operator goes on at once."""
    from airflow.sdk.exceptions import AirflowException

    from incident_airflow.spark_job import checkpoint_dir, wait_for_writer
    from incident_contracts.settings import Settings
    from incident_contracts.table_store import TableStore

    settings = Settings(_env_file=None, data_dir=tmp_path / "data", runtime_dir=tmp_path / "rt")  # type: ignore[call-arg]
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pathlib import Path\nfrom incident_contracts.table_store import TableStore\n"
         "from incident_contracts.writer_lock import writer_lock\n"
         "with writer_lock(Path(sys.argv[1]), TableStore(sys.argv[2]), 'by-hand'):\n"
         "    print('held', flush=True)\n    time.sleep(600)\n",
         str(checkpoint_dir(settings)), str((tmp_path / "data").resolve())],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(AirflowException, match=rf"run by-hand \(pid {holder.pid} "):
            wait_for_writer(settings, wait_seconds=0.5, poll_seconds=0.1)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    started = time.monotonic()
    wait_for_writer(settings, wait_seconds=5, poll_seconds=0.1)
    assert time.monotonic() - started < 1
    assert TableStore.from_settings(settings).root == str((tmp_path / "data").resolve())
