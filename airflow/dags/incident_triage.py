"""incident_triage: when a pipeline run publishes the incident table, analyse its new P1/P2 incidents."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowFailException

from incident_airflow.assets import INCIDENTS, table_asset
from incident_airflow.pipeline import pipeline_settings
from incident_airflow.triage import incidents_to_triage, triage
from incident_contracts.settings import load_settings

INCIDENTS_ASSET = table_asset(load_settings(), INCIDENTS)


@dag(
    dag_id="incident_triage",
    description="Root-cause analysis of new P1/P2 incidents, as soon as a pipeline run publishes them.",
    schedule=[INCIDENTS_ASSET],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["incident-intelligence", "triage", "analysis"],
    default_args={"owner": "incident-intelligence", "retries": 1, "retry_delay": timedelta(seconds=10)},
    doc_md=__doc__,
)
def incident_triage():
    @task(execution_timeout=timedelta(minutes=20))
    def analyse_new_incidents(triggering_asset_events=None) -> dict:
        extras = [event.extra for events in (triggering_asset_events or {}).values() for event in events]
        incident_ids = incidents_to_triage(extras)
        result = triage(incident_ids, pipeline_settings())
        if incident_ids and not result.analysed:
            raise AirflowFailException(f"every analysis failed: {result.failed}")
        return result.to_dict()

    analyse_new_incidents()


incident_triage()
