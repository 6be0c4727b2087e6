"""Submitting the streaming job for one pipeline run, through `SparkSubmitOperator` and `spark_default`.

The job runs bounded: it stops once the topic has been idle for a few seconds. It starts while the
generator is still producing (they run in parallel), so a long pause in production could stop it
early. The operator therefore checks, after the job exits, whether the produce task has finished
and whether the tables cover the run's offset ranges; if not it submits the job again, which resumes
from its checkpoint. A submission made after the generator has finished (a slow start, a retry, a
cleared task, `dag.test()`) runs the job available-now instead: it processes what the topic holds and
stops without waiting for silence. The checkpoint is shared by all runs; the job itself holds the
checkpoint's and the tables' writer locks while it runs (incident_contracts.writer_lock), so the operator
waits for a running job to end before it submits, and a job that finds them taken is refused, naming
the holder.

Each submission's job writes its summary to STREAM_SUMMARY_FILE in the run folder (`--summary-file`,
incident_contracts.stream_summary); the operator reads it once spark-submit has exited. spark-submit's
output goes to the task log as the provider writes it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.exceptions import AirflowException

from incident_airflow.runs import offset_ranges, run_dir, run_key
from incident_contracts.class_data import spark_java_conf
from incident_contracts.settings import Settings, inherited_env, project_root, settings_env
from incident_contracts.spark_start import transient_start_error
from incident_contracts.stream_summary import SummaryMissing, SummaryUnreadable, read_summary
from incident_contracts.table_store import TableStore
from incident_contracts.writer_lock import Holder, current_writer

log = logging.getLogger(__name__)

SPARK_APPLICATION = Path("spark") / "submit_stream.py"
DRIVER_LOG4J2 = Path("spark") / "src" / "incident_stream" / "log4j2.properties"  # the job's driver log configuration
CHECKPOINT_NAME = "incident_stream"
STREAM_SUMMARY_FILE = "stream_summary.json"  # the job's summary, in the run folder (incident_contracts.stream_summary)
IDLE_STOP_SECONDS = 6.0  # the pipeline's stop rule: no new record for this long
PRODUCER_GRACE_SECONDS = 60.0  # after the job stops, wait this long for the produce task to finish
MAX_SUBMISSIONS = 4
LOCK_WAIT_SECONDS = 120.0
# Task states after which the produce task will not write any more records in this try.
PRODUCER_DONE = {"success"}
PRODUCER_GAVE_UP = {"failed", "upstream_failed", "skipped", "removed"}
RESUBMIT_DELAY_SECONDS = 5.0


def application_path() -> str:
    return str(project_root() / SPARK_APPLICATION)


def checkpoint_dir(settings: Settings) -> Path:
    return settings.checkpoint_root / CHECKPOINT_NAME


# What spark-submit takes from the task's environment: the system's and Java's, Spark's and Hadoop's own
# configuration. Nothing else: the task's process holds secrets (the Gemini key) the job has no use for.
_JOB_INHERITS = ("HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "PYTHONPATH", "VIRTUAL_ENV",
                 "CATALOG_FILE", "ENV_FILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE",
                 "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE")
_JOB_INHERITS_PREFIXES = ("LC_", "JAVA_", "_JAVA_", "SPARK_", "HADOOP_", "YARN_", "KRB5")


def job_env(settings: Settings, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The whole environment of spark-submit (and so of the driver): the system's basics, the settings,
    and of the secrets only the object-storage credentials, which the job needs to write the tables."""
    python = sys.executable
    bin_dir = str(Path(python).parent)
    source = inherited_env(("tables",), os.environ if environ is None else environ)
    env = {k: v for k, v in source.items() if k in _JOB_INHERITS or k.startswith(_JOB_INHERITS_PREFIXES)}
    if "AWS_SESSION_TOKEN" in source:
        env["AWS_SESSION_TOKEN"] = source["AWS_SESSION_TOKEN"]
    env.update({
        **settings_env(settings, ("tables",)),
        "PYSPARK_PYTHON": python,
        "PYSPARK_DRIVER_PYTHON": python,
        # spark-submit is found through PATH: the environment's own (pyspark ships it) comes first.
        "PATH": bin_dir + os.pathsep + source.get("PATH", ""),
    })
    if settings.spark_master.startswith("local"):
        env["SPARK_LOCAL_IP"] = "127.0.0.1"  # one machine: no need to look up a routable address
    return env


def job_arguments(settings: Settings, key: str, idle_stop: float, once: bool = False,
                  summary_file: Path | None = None) -> list[str]:
    """The job's options: stop after `idle_stop` seconds without records, or (`once`) when the topic is read;
    write the summary to `summary_file` (by default the run folder's STREAM_SUMMARY_FILE)."""
    stop = ["--once"] if once else ["--idle-stop", f"{idle_stop:g}"]
    summary_file = summary_file or run_dir(settings, key) / STREAM_SUMMARY_FILE
    return ["--data-dir", str(settings.data_dir), "--checkpoint", str(checkpoint_dir(settings)), *stop,
            "--run-id", key, "--summary-file", str(summary_file)]


def producer_state(ti: Any, producer_task_id: str) -> str | None:
    """The state of the run's produce task (None before it was scheduled), asked through the task instance."""
    states = ti.get_task_states(dag_id=ti.dag_id, task_ids=[producer_task_id], run_ids=[ti.run_id])
    return (states.get(ti.run_id) or {}).get(producer_task_id)


def job_conf(settings: Settings) -> dict[str, str]:
    return {"spark.ui.port": str(settings.spark_ui_port),
            "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
            "spark.ui.showConsoleProgress": "false",
            # Spark's own INFO lines would bury what the job says in the task log.
            "spark.log.level": "WARN",
            **spark_java_conf(settings, f"-Dlog4j2.configurationFile={project_root() / DRIVER_LOG4J2}")}


def wait_for_writer(settings: Settings, wait_seconds: float = LOCK_WAIT_SECONDS,
                    poll_seconds: float = 2.0) -> None:
    """Return once no streaming job holds the checkpoint or the tables; raise AirflowException naming the
    holder after `wait_seconds`."""
    deadline = time.monotonic() + wait_seconds
    holder: Holder | None = None
    while True:
        holder = current_writer(checkpoint_dir(settings), TableStore.from_settings(settings))
        if holder is None:
            return
        if time.monotonic() >= deadline:
            raise AirflowException(
                f"another streaming job holds the checkpoint or the tables: {holder.describe()}. Two jobs would "
                "write every record twice; wait for it to finish (or stop it), then clear this task.")
        log.info("Waiting for the streaming job %s to finish before submitting this run's.", holder.describe())
        time.sleep(poll_seconds)


def job_error(summaries: list[dict[str, Any]]) -> str | None:
    """The first line of the error the last job summary reports, if it failed or was refused."""
    if not summaries or summaries[-1].get("status") not in ("failed", "refused"):
        return None
    lines = str(summaries[-1].get("error") or "").strip().splitlines()
    return lines[0] if lines else None


def passing_failure(summaries: list[dict[str, Any]]) -> str | None:
    """The reason, if the last job summary reports a failure worth submitting again (TRANSIENT_START_ERRORS)."""
    if not summaries or summaries[-1].get("status") != "failed":
        return None
    return transient_start_error(str(summaries[-1].get("error") or ""))


def submission_summary(summary_file: Path, failure: AirflowException | None) -> dict[str, Any]:
    """The summary the job wrote to `summary_file` once spark-submit has ended (`failure`: its error, if it
    exited with an error status).

    A job that ended without writing one re-raises `failure` (the job's log in the task log says why), or,
    when spark-submit exited cleanly, raises AirflowException naming the missing file; a damaged summary
    raises AirflowException naming the file."""
    try:
        return read_summary(summary_file)
    except SummaryMissing as exc:
        if failure is not None:
            log.warning("%s", exc)
            raise failure from None
        raise AirflowException(str(exc)) from None
    except SummaryUnreadable as exc:
        raise AirflowException(str(exc)) from failure


class StreamJobOperator(SparkSubmitOperator):
    """Submit the streaming job until the run's records are processed (see the module docstring)."""

    def __init__(self, *, producer_task_id: str, idle_stop: float = IDLE_STOP_SECONDS,
                 max_submissions: int = MAX_SUBMISSIONS, **kwargs: Any):
        self.producer_task_id = producer_task_id
        self.idle_stop = idle_stop
        self.max_submissions = max_submissions
        super().__init__(application=application_path(), conn_id="spark_default", name="incident-stream",
                         **kwargs)

    def _producer_state(self, context: Any) -> str | None:
        return producer_state(context["ti"], self.producer_task_id)

    def _submit(self, env: dict[str, str], summary_file: Path) -> tuple[dict[str, Any], AirflowException | None]:
        """Run spark-submit once, with exactly `env` as its environment; then read the job's summary file.

        Returns the summary and spark-submit's error (None when it exited with 0). A job that ended
        without writing a summary fails the task with spark-submit's error (or, if spark-submit exited
        cleanly, naming the missing file); a damaged summary fails it naming the file."""
        summary_file.unlink(missing_ok=True)  # a summary left by an earlier submission is not this one's
        # The hook gets no env_vars: it would start spark-submit with this process's whole environment
        # plus them. Its public submit() passes `env` on to Popen instead.
        self.env_vars = None
        self._hook = self._get_hook()  # a fresh spark-submit each time; on_kill stops this one
        failure: AirflowException | None = None
        try:
            self._hook.submit(self.application, env=env)
        except AirflowException as exc:
            failure = exc
        return submission_summary(summary_file, failure), failure

    def _wait_for_producer(self, context: Any) -> str | None:
        deadline = time.monotonic() + PRODUCER_GRACE_SECONDS
        state = self._producer_state(context)
        while state not in PRODUCER_DONE | PRODUCER_GAVE_UP and time.monotonic() < deadline:
            time.sleep(2)
            state = self._producer_state(context)
        return state

    def execute(self, context: Any) -> dict[str, Any]:
        # Imported here: the DAG file imports this module at every parse.
        from incident_airflow import run_tables
        from incident_airflow.pipeline import pipeline_settings

        settings = pipeline_settings()
        key = run_key(context["run_id"])
        # Resolved when the task runs (not when the DAG file is parsed), from the same settings as the
        # other tasks, so the job reads the broker and writes the tables the rest of the run uses.
        env = job_env(settings)
        summary_file = run_dir(settings, key) / STREAM_SUMMARY_FILE
        self.conf = job_conf(settings)
        self._driver_memory = settings.spark_driver_memory
        self.job_summaries: list[dict[str, Any]] = []
        started = time.monotonic()
        submissions = 0
        wait_for_writer(settings)
        while True:
            submissions += 1
            once = self._producer_state(context) in PRODUCER_DONE
            self.application_args = job_arguments(settings, key, self.idle_stop, once=once,
                                                  summary_file=summary_file)
            if once:
                self.log.info("Submitting the streaming job (submission %d). The generator has finished, so "
                              "the job processes what the topic holds, then stops.", submissions)
            else:
                self.log.info("Submitting the streaming job (submission %d; it stops after %gs without new "
                              "records).", submissions, self.idle_stop)
            summary, failure = self._submit(env, summary_file)
            self.job_summaries.append(summary)
            if failure is not None or summary["status"] != "finished":
                reason = passing_failure(self.job_summaries)
                if reason is None or submissions >= self.max_submissions:
                    error = job_error(self.job_summaries)
                    if error:  # the job's own first line beats spark-submit's exit code
                        raise AirflowException(f"the streaming job failed: {error}") from failure
                    raise failure or AirflowException(
                        f"the streaming job ended with status {summary['status']!r} ({summary_file})")
                self.log.warning("The streaming job failed on a passing problem of a busy machine (%s); "
                                 "submitting it again in %gs, it resumes from its checkpoint.", reason,
                                 RESUBMIT_DELAY_SECONDS)
                time.sleep(RESUBMIT_DELAY_SECONDS)
                continue
            state = self._wait_for_producer(context)
            if state in PRODUCER_GAVE_UP:
                self.log.warning("The produce task ended in state %s; not waiting for more records.", state)
                break
            if state in PRODUCER_DONE:
                produced = context["ti"].xcom_pull(task_ids=self.producer_task_id)
                ranges = offset_ranges(produced)
                through = run_tables.processed_through(TableStore.from_settings(settings), ("events", "dead_letter"),
                                                       produced["topic"], ranges)
                # The checkpoint's committed end counts too: a range that ends on offsets holding no
                # record (transaction markers) has no row at its last offsets.
                committed = (self.job_summaries[-1].get("end_offsets") or {}) if self.job_summaries else {}
                through = {p: max(t, int(committed.get(str(p), 0))) for p, t in through.items()}
                behind = {p: end - through[p] for p, (_, end) in ranges.items() if through[p] < end}
                if not behind:
                    self.log.info("The job has processed every record of the run (up to offsets %s).",
                                  {p: e for p, (_, e) in ranges.items()})
                    break
                self.log.info("The generator has finished but the job stopped short of the run's end "
                              "offsets (records still to process per partition: %s).", behind)
            else:
                self.log.info("The generator is still producing (produce task: %s) but the job went idle.",
                              state or "not started")
            if submissions >= self.max_submissions:
                self.log.warning("Stopping after %d submissions; reconciliation will name what is missing.",
                                 submissions)
                break
            self.log.info("Submitting again: the job resumes from its checkpoint.")
        result = {"seconds": round(time.monotonic() - started, 2), "submissions": submissions,
                  "jobs": self.job_summaries}
        self.log.info("Streaming finished: %s", json.dumps(result))
        return result
