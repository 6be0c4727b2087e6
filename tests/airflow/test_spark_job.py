"""How the stream operator reads the job's output: its summary line, and which failures are worth a resubmission."""

from __future__ import annotations

import json

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
