"""DAG integrity: the DAG files import cleanly, have no cycles, and declare tags, params, retries and schedules."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest

PIPELINE = "incident_processing_pipeline"
TRIAGE = "incident_triage"
MAINTENANCE = "table_maintenance"


@pytest.fixture(scope="module")
def dagbag(dags_folder):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(dags_folder))


def test_dag_files_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {PIPELINE, TRIAGE, MAINTENANCE} <= set(dagbag.dag_ids)


@pytest.mark.parametrize("dag_id", [PIPELINE, TRIAGE, MAINTENANCE])
def test_no_cycles_tags_and_owner(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    dag.check_cycle()
    assert "incident-intelligence" in dag.tags
    assert dag.max_active_runs == 1
    assert not dag.catchup
    assert all(task.owner == "incident-intelligence" for task in dag.tasks)


def test_pipeline_shape(dagbag):
    dag = dagbag.dags[PIPELINE]
    assert dag.schedule is None and type(dag.timetable).__name__ == "NullTimetable"  # manual trigger only
    downstream = {t.task_id: set(t.downstream_task_ids) for t in dag.tasks}
    assert downstream["validate_params"] >= {"prepare_topic"}
    assert downstream["prepare_topic"] == {"produce_logs", "wait_for_producer"}
    assert downstream["wait_for_producer"] == {"process_stream"}
    assert downstream["produce_logs"] >= {"reconcile"}
    assert downstream["process_stream"] >= {"reconcile"}
    assert downstream["reconcile"] >= {"publish_incidents"}
    assert "produce_logs" not in downstream["process_stream"] and "process_stream" not in downstream["produce_logs"]
    assert downstream["summarize"] == set()
    spark = dag.get_task("process_stream")
    assert spark.task_type == "StreamJobOperator" and spark._conn_id == "spark_default"
    assert [a.name for a in dag.get_task("publish_incidents").outlets] == ["incident_updates", "events", "dead_letter"]


def test_retries_only_where_a_retry_can_help(dagbag):
    dag = dagbag.dags[PIPELINE]
    retries = {t.task_id: t.retries for t in dag.tasks}
    assert retries["validate_params"] == 0  # bad params stay bad
    assert retries["reconcile"] == 0  # a gap in the data does not close by itself
    assert retries["prepare_topic"] >= 2 and retries["produce_logs"] >= 2  # the broker may be briefly down
    assert retries["process_stream"] >= 1
    broker_task = dag.get_task("prepare_topic")
    assert broker_task.retry_exponential_backoff
    assert broker_task.max_retry_delay <= timedelta(minutes=5)


def test_params_refuse_bad_values(dagbag):
    from airflow.sdk.exceptions import ParamValidationError

    params = dagbag.dags[PIPELINE].params
    assert set(params) == {"scenario", "rate", "duration", "seed", "speedup", "replay_file",
                           "replay_format"}
    good = copy.deepcopy(params)
    for name, value in {"scenario": "memory_leak", "rate": 50, "duration": 10, "seed": 3}.items():
        good[name] = value
    assert good.validate()["scenario"] == "memory_leak"
    for name, bad in [("rate", 0), ("rate", "many"), ("duration", 100_000), ("scenario", "nope"), ("seed", -5),
                      ("replay_format", "xml"), ("speedup", 0)]:
        attempt = copy.deepcopy(params)
        with pytest.raises(ParamValidationError, match=name):
            attempt[name] = bad
            attempt.validate()


def test_triage_is_scheduled_on_the_incidents_asset(dagbag):
    dag = dagbag.dags[TRIAGE]
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["incident_updates"]


def test_maintenance_has_one_independent_task_per_table_one_at_a_time(dagbag):
    from incident_contracts.tables import TABLES

    dag = dagbag.dags[MAINTENANCE]
    assert {t.task_id for t in dag.tasks} == {f"maintain_{table}" for table in TABLES}
    assert all(not t.upstream_task_ids and not t.downstream_task_ids for t in dag.tasks)  # a failure blocks no other
    assert dag.max_active_tasks == 1  # the streaming job keeps the other cores
    assert all(t.retries >= 1 for t in dag.tasks)
    assert "one task per table" in dag.doc_md.lower()


def test_maintenance_is_scheduled_by_the_setting(dags_folder, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("TABLE_MAINTENANCE_SCHEDULE", "5 3 * * *")
    dag = DagBag(dag_folder=str(dags_folder / "table_maintenance.py")).dags[MAINTENANCE]
    assert dag.schedule == "5 3 * * *" and dag.timetable.expression == "5 3 * * *"
