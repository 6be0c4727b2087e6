"""A whole run of the table_maintenance DAG with dag.test().

It runs after the pipeline's end-to-end module (file order): a dag.test() run of another DAG earlier in the
session's Airflow database left the pipeline's tasks with that run's data folder in their asset outlets.
"""

from __future__ import annotations

import pytest

MAINTENANCE = "table_maintenance"


@pytest.mark.integration
def test_maintenance_run_compacts_every_table(airflow_db, dags_folder, tmp_path, monkeypatch):
    """A whole run with dag.test() on tables of small files: every task succeeds and returns its report."""
    import pyarrow as pa
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from incident_contracts.settings import load_settings
    from incident_contracts.table_store import TableStore
    from incident_contracts.tables import TABLES

    monkeypatch.setenv("ENV_FILE", str(tmp_path / "no.env"))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    store = TableStore.from_settings(load_settings())
    for table in TABLES:
        schema = TABLES[table].schema
        for batch in range(3):  # one row per file: all-null optional columns, the required ones filled
            row = {f.name: pa.nulls(1, f.type) if f.nullable else pa.array([_value(f)], f.type) for f in schema}
            store.append(table, pa.table(row, schema=schema), app_id="job", version=batch)

    dag = DagBag(dag_folder=str(dags_folder / "table_maintenance.py")).dags[MAINTENANCE]
    dag_run = dag.test()

    assert str(dag_run.state) == "success"
    with create_session() as session:
        reports = {x.task_id: x.value for x in session.query(XComModel).filter(
            XComModel.dag_id == MAINTENANCE, XComModel.run_id == dag_run.run_id, XComModel.key == "return_value")}
    for table in TABLES:
        report = reports[f"maintain_{table}"]
        assert (report["files_before"], report["files_after"]) == (3, 1), report
        assert store.open(table).transaction_version("job") == 2


def _value(field):
    from datetime import UTC, datetime

    import pyarrow as pa

    if pa.types.is_timestamp(field.type):
        return datetime.now(UTC)
    if field.name in ("event_date", "dl_date"):
        return datetime.now(UTC).date().isoformat()
    if pa.types.is_integer(field.type):
        return 1
    if pa.types.is_boolean(field.type):
        return False
    return "x"
