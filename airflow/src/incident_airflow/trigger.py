"""`incident-trigger`: trigger a pipeline run on the running embedded Airflow, optionally wait for it.

    incident-trigger --scenario mixed --rate 300 --duration 30 [--seed 7] [--speedup 10] [--wait]

Prints the run id and its link in the Airflow UI. With --wait it prints each task's progress, then
the run's summary, and exits non-zero when the run fails. `demo()` is what `make demo` runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from incident_airflow.api_client import AirflowApi, AirflowApiError
from incident_airflow.last_run import DAG_ID
from incident_contracts.settings import Settings, SettingsError, load_settings

FINISHED = {"success", "failed"}
TASK_ORDER = ("validate_params", "prepare_topic", "produce_logs", "wait_for_producer", "process_stream",
              "reconcile", "publish_incidents", "summarize")
# Ten minutes of event time in a minute: the detector has its minute of history per service, then the
# scenario's incidents ramp up, plateau and recover while the dashboard follows.
DEMO_CONF = {"scenario": "mixed", "rate": 300, "duration": 60, "speedup": 10, "seed": 7}


class RunFailed(RuntimeError):
    pass


def build_conf(scenario: str | None = None, rate: int | None = None, duration: int | None = None,
               seed: int | None = None, speedup: float | None = None, replay_file: str | None = None,
               replay_format: str | None = None) -> dict[str, Any]:
    """The run's conf: only what was given, so the DAG's Param defaults apply to the rest."""
    values = {"scenario": scenario, "rate": rate, "duration": duration, "seed": seed, "speedup": speedup,
              "replay_file": replay_file, "replay_format": replay_format}
    return {k: v for k, v in values.items() if v not in (None, "")}


def wait_for_dag(api: AirflowApi, timeout: float = 90.0, out: Callable[[str], None] = print) -> dict:
    """The DAG as Airflow knows it; right after start-up the DAG processor may not have parsed it yet."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            return api.dag(DAG_ID)
        except AirflowApiError as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                if exc.status == 404:
                    raise AirflowApiError(f"Airflow does not know the DAG {DAG_ID!r} after {timeout:.0f}s. Check "
                                          "for import errors in the Airflow UI (Dags > import errors) or in "
                                          "`make logs-airflow`.") from None
                raise
            if not told:
                out(f"waiting for Airflow to load the DAG {DAG_ID} (it parses airflow/dags every 10s)...")
                told = True
            time.sleep(3)


def trigger_run(api: AirflowApi, conf: dict[str, Any], out: Callable[[str], None] = print) -> dict:
    dag = wait_for_dag(api, out=out)
    if dag.get("is_paused"):
        api.set_paused(DAG_ID, False)
        out(f"unpaused the DAG {DAG_ID}")
    active = api.dag_runs(DAG_ID, limit=5, states=["running", "queued"])
    if active:
        out(f"note: run {active[0]['dag_run_id']} is {active[0]['state']}; the new run waits for it to finish "
            "(one run at a time).")
    return api.trigger(DAG_ID, conf)


def _task_states(api: AirflowApi, run_id: str) -> dict[str, str]:
    return {t["task_id"]: t.get("state") for t in api.task_instances(DAG_ID, run_id) if t.get("state")}


def wait_for_run(api: AirflowApi, run_id: str, timeout: float, poll: float = 3.0,
                 out: Callable[[str], None] = print, patience: float = 120.0) -> dict:
    """Poll until the run finishes, printing each task's state change; returns the finished run.

    A busy machine can make the API server slow to answer: unanswered polls are retried for up to
    `patience` seconds in a row before giving up (the run itself goes on regardless).
    """
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    started = time.monotonic()
    unanswered_since: float | None = None
    while True:
        try:
            run = api.dag_run(DAG_ID, run_id)
            states = _task_states(api, run_id)
        except AirflowApiError as exc:
            if exc.status is not None:
                raise
            unanswered_since = unanswered_since or time.monotonic()
            if time.monotonic() - unanswered_since > patience:
                raise
            time.sleep(poll)
            continue
        unanswered_since = None
        for task in sorted(states, key=lambda t: TASK_ORDER.index(t) if t in TASK_ORDER else 99):
            if seen.get(task) != states[task]:
                out(f"  [{time.monotonic() - started:5.0f}s] {task}: {states[task]}")
                seen[task] = states[task]
        if run["state"] in FINISHED:
            return run
        if time.monotonic() > deadline:
            raise RunFailed(f"run {run_id} is still {run['state']} after {timeout:.0f}s; it goes on in Airflow: "
                            f"{api.run_url(DAG_ID, run_id)}")
        time.sleep(poll)


def failure_line(entries: list[dict]) -> str | None:
    """The error a task failed with, in one line: the exception's type and the first line of its message.

    Airflow 3 logs the exception of a failed try as an entry with ``error_detail``: structlog's stacks, the
    exception raised first, then its causes. Without one, the last entry logged at error level.
    """
    for entry in reversed(entries):
        detail = entry.get("error_detail")
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            kind = str(detail[0].get("exc_type") or "Error")
            message = str(detail[0].get("exc_value") or "").strip().splitlines()
            return f"{kind}: {message[0]}" if message else kind
    for entry in reversed(entries):
        if str(entry.get("level", "")).lower() in ("error", "critical"):
            lines = str(entry.get("event") or "").strip().splitlines()
            if lines:
                return lines[0]
    return None


def _failure_of(api: AirflowApi, run_id: str, instance: dict) -> str:
    try:
        entries = api.task_log(DAG_ID, run_id, instance["task_id"], max(1, int(instance.get("try_number") or 1)))
    except AirflowApiError as exc:
        return f"(its log could not be read: {exc})"
    return failure_line(entries) or "(no error in its log)"


def report_finished(api: AirflowApi, run: dict, out: Callable[[str], None] = print) -> int:
    run_id = run["dag_run_id"]
    out(f"\nRun {run_id} finished: {run['state'].upper()}")
    note = (run.get("note") or "").strip()
    if note:
        out("\n".join(line.replace("**", "") for line in note.splitlines()))
    if run["state"] != "success":
        instances = {t["task_id"]: t for t in api.task_instances(DAG_ID, run_id)}
        states = {task: instance.get("state") for task, instance in instances.items()}
        failed = [t for t in TASK_ORDER if states.get(t) == "failed"]
        skipped = [t for t in TASK_ORDER if states.get(t) in ("upstream_failed", "skipped")]
        if failed:
            out(f"Failed: {', '.join(failed)}" + (f" (so not run: {', '.join(skipped)})" if skipped else ""))
            for task in failed:
                out(f"  {task}: {_failure_of(api, run_id, instances[task])}")
            out(f"Their logs: {api.run_url(DAG_ID, run_id)}")
        return 1
    return 0


def run_and_report(settings: Settings, conf: dict[str, Any], wait: bool, timeout: float,
                   api: AirflowApi | None = None, out: Callable[[str], None] = print) -> int:
    api = api or AirflowApi.for_embedded(settings)
    run = trigger_run(api, conf, out=out)
    run_id = run["dag_run_id"]
    shown = ", ".join(f"{k}={v}" for k, v in conf.items()) or "the DAG's defaults"
    out(f"Triggered {DAG_ID} run {run_id} ({shown})")
    out(f"  {api.run_url(DAG_ID, run_id)}")
    if not wait:
        return 0
    return report_finished(api, wait_for_run(api, run_id, timeout, out=out), out=out)


def demo(settings: Settings, conf: dict[str, Any] | None = None, timeout: float = 900.0,
         out: Callable[[str], None] = print) -> int:
    """`make demo`: run the pipeline once on a mixed scenario, wait, and say where to look."""
    conf = {**DEMO_CONF, **(conf or {})}
    api = AirflowApi.for_embedded(settings)
    code = run_and_report(settings, conf, wait=True, timeout=timeout, api=api, out=out)
    out("\nWhere to look:")
    out(f"  Dashboard:  http://127.0.0.1:{settings.dashboard_port}")
    out(f"  Airflow:    {api.base_url}  (login {api.username} / {api.password})")
    out(f"  Spark UI:   http://127.0.0.1:{settings.spark_ui_port}  (while a streaming job runs; "
        "`make trigger-dag` starts another)")
    out(f"  Data:       {settings.data_dir}")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-trigger", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", help="scenario of the log generator (default: the DAG's, mixed)")
    parser.add_argument("--rate", type=int, help="events per second")
    parser.add_argument("--duration", type=int, help="seconds to produce for")
    parser.add_argument("--seed", type=int, help="random seed (same seed, same events)")
    parser.add_argument("--speedup", type=float, help="event-time seconds per second (default 10; 1 = real time)")
    parser.add_argument("--replay-file", help="replay this log file (a path inside REPLAY_DIR) instead of a scenario")
    parser.add_argument("--replay-format", help="format of the replay file (default: auto)")
    parser.add_argument("--wait", action="store_true", help="wait for the run, print progress and its summary")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait with --wait (default 1800)")
    parser.add_argument("--demo", action="store_true", help="run the demo: mixed scenario, wait, where to look")
    args = parser.parse_args(argv)
    conf = build_conf(args.scenario, args.rate, args.duration, args.seed, args.speedup, args.replay_file,
                      args.replay_format)
    try:
        settings = load_settings()
        if args.demo:
            return demo(settings, conf, timeout=args.timeout)
        return run_and_report(settings, conf, args.wait, args.timeout)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AirflowApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if exc.status == 400 else 1
    except RunFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopped waiting; the run goes on in Airflow", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
