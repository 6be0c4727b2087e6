"""table_maintenance: retention, compaction, vacuum and log checkpoints of the Delta tables, on a schedule.

    maintain_events    maintain_dead_letter    maintain_incident_updates    maintain_metrics

One task per table, each running that table's steps in their order (retention, compaction, vacuum, log
checkpoint and cleanup; see `incident_contracts.table_maintenance`): a table's steps depend on each other
(compaction after retention has dropped whole partitions, vacuum after both), tables do not. So a table that
fails (object storage briefly unreachable) is retried alone and does not hold the others back, and each
task's return value is its table's report: files before and after, rows deleted, files vacuumed, seconds.

The tasks run one at a time (max_active_tasks=1): compaction takes every core it is given, and the streaming
job, which keeps appending meanwhile, must keep up. Maintenance never blocks or fails the job: a maintenance
commit a job commit conflicts with is made again on the newer version, and the other way round.

Scheduled by TABLE_MAINTENANCE_SCHEDULE (cron); one run at a time; a missed run is not caught up (the next
one does the same work). Retention: RETENTION_DAYS_EVENTS / _DEAD_LETTER / _METRICS (0 keeps everything;
incident_updates is always kept); vacuum: TABLE_VACUUM_RETAIN_HOURS.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta

from airflow.sdk import dag, task

from incident_contracts import table_maintenance
from incident_contracts.settings import load_settings
from incident_contracts.table_store import TableStore
from incident_contracts.tables import TABLES

SETTINGS = load_settings()


@dag(
    dag_id="table_maintenance",
    description="Retention, compaction, vacuum and log checkpoints of the Delta tables, safe while the job writes.",
    schedule=SETTINGS.table_maintenance_schedule,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1,
    tags=["incident-intelligence", "maintenance", "delta-lake"],
    default_args={"owner": "incident-intelligence", "retries": 2, "retry_delay": timedelta(minutes=1)},
    doc_md=__doc__,
)
def table_maintenance_dag():
    @task(execution_timeout=timedelta(hours=2))
    def maintain_table(table: str) -> dict:
        settings = load_settings()
        report = table_maintenance.maintain_table(TableStore.from_settings(settings), table, settings)
        return asdict(report)

    for table in TABLES:
        maintain_table.override(task_id=f"maintain_{table}")(table)


table_maintenance_dag()
