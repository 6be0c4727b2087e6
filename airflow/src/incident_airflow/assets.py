"""The Parquet tables a pipeline run updates, as Airflow Assets.

The pipeline DAG lists them as outlets of its publish task, so each successful run records an asset
event (with the run's figures in its extra); the triage DAG is scheduled on the incidents asset.
URIs point at the table folders, so the UI shows where the data lives.
"""

from __future__ import annotations

from airflow.sdk import Asset

from incident_contracts.settings import Settings

INCIDENTS = "incident_updates"
EVENTS = "events"
DEAD_LETTER = "dead_letter"
GROUP = "incident-tables"


def table_asset(settings: Settings, table: str) -> Asset:
    return Asset(name=table, uri=settings.table_path(table).resolve().as_uri(), group=GROUP)


def pipeline_assets(settings: Settings) -> dict[str, Asset]:
    """{table: Asset} for the tables the pipeline publishes."""
    return {table: table_asset(settings, table) for table in (INCIDENTS, EVENTS, DEAD_LETTER)}
