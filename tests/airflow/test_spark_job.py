"""How the stream operator reads the job's output: its summary file, and which failures are worth a resubmission."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException

from incident_airflow.runs import offset_ranges, run_dir
from incident_airflow.spark_job import (
    STREAM_SUMMARY_FILE,
    job_arguments,
    job_conf,
    passing_failure,
    submission_summary,
)
from incident_contracts.settings import Settings
from incident_contracts.stream_summary import write_summary

WORKER_TIMEOUT = ("Python worker failed to connect back.\n=== Streaming Query ===\nIdentifier: ingest [id = 1]\n"
                  "Current State: INITIALIZING")


def _summary(status: str, error: str | None) -> dict:
    return {"summary": "incident-stream", "status": status, "stopped_by": "query ingest failed", "error": error}


def test_the_job_is_told_to_write_its_summary_into_the_run_folder(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    arguments = job_arguments(settings, "manual__run-1", 6.0)
    assert arguments[arguments.index("--summary-file") + 1] == str(run_dir(settings, "manual__run-1") /
                                                                    STREAM_SUMMARY_FILE)
    assert arguments[arguments.index("--run-id") + 1] == "manual__run-1"


def test_the_summary_the_job_wrote_is_what_the_operator_reads(tmp_path: Path) -> None:
    path = tmp_path / STREAM_SUMMARY_FILE
    write_summary(path, _summary("finished", None))
    assert submission_summary(path, None) == _summary("finished", None)
    # A failed job's summary is read too: its error names the failure.
    write_summary(path, _summary("failed", WORKER_TIMEOUT))
    assert submission_summary(path, AirflowException("exit code 1"))["error"] == WORKER_TIMEOUT


def test_a_job_that_wrote_no_summary_fails_with_spark_submits_error(tmp_path: Path) -> None:
    path = tmp_path / STREAM_SUMMARY_FILE
    failure = AirflowException("Cannot execute: spark-submit ... Error code is: 137.")
    with pytest.raises(AirflowException) as raised:
        submission_summary(path, failure)
    assert raised.value is failure


def test_a_clean_exit_without_a_summary_fails_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / STREAM_SUMMARY_FILE
    with pytest.raises(AirflowException, match=rf"wrote no summary to {path}"):
        submission_summary(path, None)


def test_a_damaged_summary_fails_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / STREAM_SUMMARY_FILE
    path.write_text('{"summary": "incident-stream", broken')
    with pytest.raises(AirflowException, match=rf"{path} is not JSON"):
        submission_summary(path, None)
    with pytest.raises(AirflowException, match=rf"{path} is not JSON"):
        submission_summary(path, AirflowException("exit code 1"))


def test_the_runs_offset_ranges_come_from_the_produce_tasks_result() -> None:
    produced = {"start_offsets": {"0": 100, "1": "7"}, "end_offsets": {"0": 150, "1": 7, "2": 30}}
    assert offset_ranges(produced) == {0: (100, 150), 1: (7, 7), 2: (0, 30)}


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
    wait_for_writer(settings, wait_seconds=60, poll_seconds=0.1)
    assert time.monotonic() - started < 20  # did not wait the 60 s out
    assert TableStore.from_settings(settings).root == str((tmp_path / "data").resolve())


def test_the_driver_and_executors_start_from_the_class_data_archive_when_it_is_built() -> None:
    from incident_contracts.class_data import archive_path

    archive = archive_path()
    assert archive is not None and archive.is_file(), f"no class-data archive at {archive}: `make setup` builds it"
    conf = job_conf(Settings(_env_file=None))  # type: ignore[call-arg]
    assert f"-XX:SharedArchiveFile={archive}" in conf["spark.driver.extraJavaOptions"].split()
    assert f"-XX:SharedArchiveFile={archive}" in conf["spark.executor.extraJavaOptions"].split()
    off = job_conf(Settings(_env_file=None, spark_class_data=False))  # type: ignore[call-arg]
    assert "SharedArchiveFile" not in off["spark.driver.extraJavaOptions"]
    assert "spark.executor.extraJavaOptions" not in off


def test_the_driver_is_given_the_jobs_log_configuration() -> None:
    """spark-submit starts the driver JVM before the job's session exists: the operator names the file."""
    conf = job_conf(Settings(_env_file=None))  # type: ignore[call-arg]
    option = conf["spark.driver.extraJavaOptions"].split()[0]
    assert option.startswith("-Dlog4j2.configurationFile=")
    path = Path(option.split("=", 1)[1])
    assert path.is_file() and "rootLogger.level = warn" in path.read_text()
    from incident_stream.session import LOG4J2_FILE  # the one the job's own session names

    assert path.resolve() == LOG4J2_FILE.resolve()
