"""A real `airflow standalone` with the project's environment: trigger through the REST API and wait.

Covers what `make trigger-dag`, `make status` and `make demo` rely on: the generated connections and
login, Param validation at trigger time, a second run queued behind the first, parallel tasks on the
LocalExecutor, the run's note written through the API, the last-run status line, and the triage DAG
started by the run's asset event. Airflow runs with a Gemini key (a local fake Gemini) and object-storage
credentials set, and no file it, its tasks or the streaming job write may contain them or its admin password.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from fake_gemini import FakeGemini

pytestmark = pytest.mark.integration

START_TIMEOUT = 240
PIPELINE = "incident_processing_pipeline"


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


# Secrets set for the module's Airflow: none of them may appear in a file any of its processes writes.
PLANTED = {"AWS_ACCESS_KEY_ID": f"AKIAPLANTED{uuid.uuid4().hex[:12].upper()}",
           "AWS_SECRET_ACCESS_KEY": f"planted-secret-{uuid.uuid4().hex}"}


@pytest.fixture(scope="module")
def gemini():
    fake = FakeGemini(key=f"AIzaSyPlanted{uuid.uuid4().hex}")
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def standalone(broker, tmp_path_factory, gemini):
    """`airflow standalone` started the way the stack starts it; yields the settings it runs with."""
    from incident_airflow.environment import airflow_env
    from incident_contracts.settings import get_settings, inherited_env, load_settings
    from incident_stack.broker import free_port
    from incident_stack.services import SERVICES, http_ok, settings_env

    base = tmp_path_factory.mktemp("standalone")
    env = {
        "ENV_FILE": str(base / "no.env"), "DATA_DIR": str(base / "data"), "RUNTIME_DIR": str(base / "runtime"),
        "KAFKA_BOOTSTRAP_SERVERS": broker, "KAFKA_TOPIC_LOGS": f"logs.trigger.{uuid.uuid4().hex[:8]}",
        "SPARK_MASTER": "local[2]", "SPARK_UI_PORT": str(free_port()), "SPARK_DRIVER_MEMORY": "1g",
        "AIRFLOW_PORT": str(free_port()), "AIRFLOW_PARALLELISM": "3",
        "GEMINI_API_KEY": gemini.key, "GEMINI_BASE_URL": gemini.url, **PLANTED,
    }
    # The scheduler and triggerer serve task logs on fixed ports; a running `make up` holds the defaults.
    log_ports = {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                 "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        for key in [k for k in os.environ if k.startswith("AIRFLOW__") or k.startswith("AIRFLOW_CONN_")]:
            patch.delenv(key)  # the test session's own Airflow configuration must not leak in
        get_settings.cache_clear()
        settings = load_settings()
        grants = SERVICES["airflow"].secrets  # the secrets `make up` gives Airflow
        child_env = {**inherited_env(grants), **settings_env(settings, grants), **airflow_env(settings), **log_ports}
        log_path = base / "airflow.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "standalone"], env=child_env,
                                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        try:
            health = f"http://127.0.0.1:{settings.airflow_port}/api/v2/monitor/health"
            deadline = time.monotonic() + START_TIMEOUT
            while not http_ok(health):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
                    pytest.fail(f"airflow standalone did not become healthy:\n{tail}")
                time.sleep(2)
            yield settings
        finally:
            _stop(process)
            get_settings.cache_clear()


def test_bad_params_are_refused_at_trigger_time(standalone, capsys):
    from incident_airflow.trigger import main

    assert main(["--scenario", "no_such_scenario", "--duration", "5"]) == 2
    assert "param scenario" in capsys.readouterr().err.lower()
    assert main(["--rate", "0"]) == 2
    assert "rate" in capsys.readouterr().err


def _state(api, run_id: str, patience: float = 120.0) -> str:
    """The run's state; a request the busy API server leaves unanswered is asked again (as the CLI does)."""
    from incident_airflow.api_client import AirflowApiError

    deadline = time.monotonic() + patience
    while True:
        try:
            return api.dag_run(PIPELINE, run_id)["state"]
        except AirflowApiError as exc:
            if exc.status is not None or time.monotonic() > deadline:
                raise
            time.sleep(1)


def _wait_for_state(api, run_id: str, states: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = _state(api, run_id)
        if state in states or time.monotonic() > deadline:
            return state
        time.sleep(1)


def _driver_pids(data_dir: Path) -> list[int]:
    """The streaming job's driver processes (spark-submit's JVM and the Python driver) of this data folder."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "submit_stream.py" in command and str(data_dir) in command:
            pids.append(int(entry.name))
    return pids


def _committed_batches(data_dir: Path) -> int:
    commits = data_dir / "_checkpoints" / "incident_stream" / "logs" / "commits"
    return len([p for p in commits.iterdir() if p.name.isdigit()]) if commits.is_dir() else 0


# One pipeline run with a Spark job, started twice: on a loaded 2-core machine a job submission can take minutes.
@pytest.mark.timeout(1200)
def test_a_run_whose_driver_is_killed_is_retried_from_the_checkpoint_reports_and_starts_triage(standalone, capsys):
    """One run through the REST API, as `make trigger-dag` starts it, carries fault (c) and the reporting:

    - a second run triggered meanwhile is told it waits, and stays queued while the first runs;
    - the Spark driver is SIGKILLed mid-run: the task's retry resumes from the checkpoint, nothing is lost or
      written twice, and the failed try's error is what the run report names;
    - the run ends SUCCESS with its note written through the API, the last-run status line says so, and the
      published incidents asset starts the triage DAG."""
    from pipeline_checks import assert_exactly_once, assert_no_duplicate_updates

    from incident_airflow.api_client import AirflowApi
    from incident_airflow.last_run import describe_last_run
    from incident_airflow.runs import run_dir, run_key
    from incident_airflow.trigger import failure_line, main, report_finished, wait_for_run

    api = AirflowApi.for_embedded(standalone)
    data_dir = Path(standalone.data_dir)
    before = _committed_batches(data_dir)
    assert main(["--scenario", "bad_deploy", "--rate", "400", "--duration", "40", "--seed", "9"]) == 0
    out = capsys.readouterr().out
    run_id = re.search(r"Triggered incident_processing_pipeline run (manual__\S+) ", out).group(1)
    assert f"http://127.0.0.1:{standalone.airflow_port}/dags/incident_processing_pipeline/runs/manual__" in out

    # A second run triggered meanwhile is told it waits, and stays queued while the first runs
    # (max_active_runs=1: two streaming jobs never meet on the checkpoint).
    assert main(["--scenario", "none", "--duration", "5"]) == 0
    out = capsys.readouterr().out
    assert f"note: run {run_id} is " in out and "waits for it to finish" in out
    second = re.search(r"Triggered incident_processing_pipeline run (manual__\S+) ", out).group(1)
    assert _wait_for_state(api, run_id, {"running", "success", "failed"}, timeout=180) == "running"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert _state(api, second) == "queued"
        time.sleep(1)
    api.delete_run(PIPELINE, second)

    # Fault (c): the driver killed once its job has committed two micro-batches.
    deadline = time.monotonic() + 420
    while _committed_batches(data_dir) < before + 2 and time.monotonic() < deadline:
        if _state(api, run_id) not in ("queued", "running"):  # ended before the fault: say how
            report_finished(api, api.dag_run(PIPELINE, run_id))
            pytest.fail(f"run {run_id} ended before its job committed two batches:\n{capsys.readouterr().out}")
        time.sleep(0.5)
    pids = _driver_pids(data_dir)
    if not (pids and _committed_batches(data_dir) >= before + 2):
        tasks = {t["task_id"]: (t.get("state"), t.get("try_number")) for t in api.task_instances(PIPELINE, run_id)}
        pytest.fail(f"the job did not get going within 420 s: {_committed_batches(data_dir) - before} batches "
                    f"committed, driver pids {pids}, run {_state(api, run_id)}, tasks {tasks}")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    code = report_finished(api, wait_for_run(api, run_id, timeout=720))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "process_stream: running" in out and "reconcile: success" in out
    assert "finished: SUCCESS" in out
    assert "reconciled: nothing lost, nothing duplicated" in out  # the note, written through the API
    tries = {t["task_id"]: t["try_number"] for t in api.task_instances(PIPELINE, run_id)}
    assert tries["process_stream"] == 2  # the first try died with its driver, the retry finished the run
    first_try = failure_line(api.task_log(PIPELINE, run_id, "process_stream", 1))
    assert first_try is not None and first_try.startswith("AirflowException: "), first_try

    produced = json.loads((run_dir(standalone, run_key(run_id)) / "offsets.json").read_text())
    ranges = {int(p): (int(produced["start_offsets"].get(p, 0)), int(end))
              for p, end in produced["end_offsets"].items()}
    assert assert_exactly_once(data_dir, standalone.kafka_topic_logs, ranges) == produced["generator"]["delivered"]
    assert assert_no_duplicate_updates(data_dir) > 0

    status = describe_last_run(standalone)
    assert run_id in status and "success" in status and "reconciled" in status
    run = api.dag_runs(PIPELINE, limit=1)[0]
    assert run["dag_run_id"] == run_id and run["state"] == "success"
    assert run["note"].startswith("**Run manual__")

    # The published incidents asset schedules the triage DAG.
    deadline = time.monotonic() + 180
    triage_runs: list[dict] = []
    while time.monotonic() < deadline:
        triage_runs = api.dag_runs("incident_triage", limit=1)
        if triage_runs and triage_runs[0]["state"] in ("success", "failed"):
            break
        time.sleep(3)
    assert triage_runs and triage_runs[0]["run_type"] == "asset_triggered"
    assert triage_runs[0]["state"] == "success"


def test_no_secret_reaches_a_log_a_task_log_or_any_other_file(standalone, gemini):
    """After the runs above (generator, streaming job, reconciliation, triage with Gemini), every file under
    the module's folder - Airflow's own and task logs, the job's logs and summaries, run folders, tables - is
    free of the Gemini key, the object-storage credentials and Airflow's admin password."""
    assert gemini.requests, "triage never called Gemini: the key was not in use, so the search proves nothing"
    assert {request.api_key for request in gemini.requests} == {gemini.key}
    from incident_airflow.environment import admin_password, passwords_file

    password = admin_password(standalone)  # the API client signed in with it for the runs above
    assert password
    secrets = [gemini.key.encode(), password.encode(), *(value.encode() for value in PLANTED.values())]
    base = Path(standalone.runtime_dir).parent
    files = {}  # path: content; the running Airflow may rename or remove a file meanwhile
    for path in base.rglob("*"):
        if path == passwords_file(standalone):  # where the password is kept (mode 600), and the only place
            continue
        if not path.is_symlink():
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                files[path] = path.read_bytes()
    assert len(files) > 50 and any(path.suffix == ".log" for path in files)
    leaks = sorted(str(path.relative_to(base)) for path, content in files.items()
                   if any(secret in content for secret in secrets))
    assert leaks == [], f"secrets written to {leaks}"
