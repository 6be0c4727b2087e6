"""One-paragraph status of the pipeline's latest run, for `make status`."""

from __future__ import annotations

from datetime import UTC, datetime

from incident_airflow.api_client import AirflowApi, AirflowApiError
from incident_contracts.settings import Settings

DAG_ID = "incident_processing_pipeline"


def _ago(timestamp: str | None) -> str:
    if not timestamp:
        return ""
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def describe_run(run: dict, api: AirflowApi) -> str:
    state = run.get("state") or "unknown"
    if run.get("end_date"):
        when = f"ended {_ago(run['end_date'])}"
    elif run.get("start_date"):
        when = f"started {_ago(run['start_date'])}"
    else:
        when = f"queued {_ago(run.get('queued_at') or run.get('run_after'))}"
    lines = [f"Last pipeline run: {run['dag_run_id']} - {state} ({when})",
             f"  {api.run_url(DAG_ID, run['dag_run_id'])}"]
    note = (run.get("note") or "").strip()
    if note:
        lines += ["  " + line.lstrip("-* ").replace("**", "") for line in note.splitlines() if line.strip()]
    return "\n".join(lines)


def describe_last_run(settings: Settings, api: AirflowApi | None = None) -> str:
    """The latest run of the pipeline DAG: id, state, when, UI link and its summary note. Never raises."""
    try:
        api = api or AirflowApi.for_embedded(settings)
        runs = api.dag_runs(DAG_ID, limit=1)
    except AirflowApiError as exc:
        if exc.status == 404:
            return "Last pipeline run: none (the DAG is not loaded yet; Airflow parses airflow/dags every 10s)"
        return f"Last pipeline run: unknown ({exc})"
    except Exception as exc:  # status output must never crash
        return f"Last pipeline run: unknown ({type(exc).__name__}: {exc})"
    if not runs:
        return "Last pipeline run: none yet (trigger one with `make trigger-dag` or `make demo`)"
    return describe_run(runs[0], api)
