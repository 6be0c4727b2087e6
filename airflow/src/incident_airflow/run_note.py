"""Write a run's summary as its Airflow note (shown on the run's page in the UI).

The Task SDK has no call for a run's note, so a task asks Airflow's REST API, as a user would.
When a DAG runs in-process (`dag.test()`, `airflow dags test`) there is no API server, but the
metadata database is open to the task; the note is written there instead.
"""

from __future__ import annotations

import logging

from incident_airflow.api_client import AirflowApi, AirflowApiError

log = logging.getLogger(__name__)

NOTE_MAX_CHARS = 1000  # the API's limit


def _clip(note: str) -> str:
    return note if len(note) <= NOTE_MAX_CHARS else note[: NOTE_MAX_CHARS - 1] + "…"


def _orm_session_open() -> bool:
    """True when this process may use the metadata database (in-process runs); Airflow blocks it in workers."""
    from airflow.sdk.execution_time.supervisor import BlockedDBSession

    from airflow import settings

    session = getattr(settings, "Session", None)
    return session is not None and session is not BlockedDBSession


def _write_in_db(dag_id: str, run_id: str, note: str) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one()
        run.note = note


def set_run_note(dag_id: str, run_id: str, note: str, api: AirflowApi | None = None) -> str:
    """Store `note` on the run; returns where it went ("api" or "metadata database")."""
    note = _clip(note)
    if api is not None:
        api.set_note(dag_id, run_id, note)
        return "api"
    if _orm_session_open():
        _write_in_db(dag_id, run_id, note)
        return "metadata database"
    from incident_contracts.settings import load_settings

    try:
        AirflowApi.for_embedded(load_settings()).set_note(dag_id, run_id, note)
    except AirflowApiError as exc:
        raise AirflowApiError(f"could not store the run's note: {exc}") from None
    return "api"
