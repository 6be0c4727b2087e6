"""The Delta Lake tables a pipeline run updates, as Airflow Assets.

The pipeline DAG lists them as outlets of its publish task, so each successful run records an asset
event (with the run's figures in its extra); the triage DAG is scheduled on the incidents asset.
URIs are where the tables live (``file://`` for a folder, ``s3://`` for object storage), so the UI
shows where the data is.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import Asset

from incident_contracts.settings import Settings

INCIDENTS = "incident_updates"
EVENTS = "events"
DEAD_LETTER = "dead_letter"
GROUP = "incident-tables"


def table_uri(settings: Settings, table: str) -> str:
    """The table's location as ``TableStore.uri`` gives it, as a URI. Worked out from the settings: the DAG
    files call this at every parse, and importing the table store (pyarrow, deltalake) takes seconds."""
    if settings.data_is_local:
        return (Path(settings.data_dir).resolve() / table).as_uri()
    return f"{str(settings.data_dir).rstrip('/')}/{table}"


def table_asset(settings: Settings, table: str) -> Asset:
    return Asset(name=table, uri=table_uri(settings, table), group=GROUP)


def pipeline_assets(settings: Settings) -> dict[str, Asset]:
    """{table: Asset} for the tables the pipeline publishes."""
    return {table: table_asset(settings, table) for table in (INCIDENTS, EVENTS, DEAD_LETTER)}
