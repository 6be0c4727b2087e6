"""End to end: `dag.test()` of the pipeline on the real embedded broker and Spark in local mode.

One short scenario runs once for the module; the tests then check what it left behind, and that rows
of the run removed from the events table make reconciliation fail, naming the gap.
"""

from __future__ import annotations

import json
import uuid

import pytest

from incident_airflow.runs import run_dir

# The module's one dag.test() run (a Spark job) happens in the first test's setup: minutes on a loaded machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

PIPELINE = "incident_processing_pipeline"
# dag.test() runs the tasks one at a time, so the generator's wall time is pure waiting: three minutes
# of event time (enough for the detector's baseline and a P1/P2 page) in four seconds.
CONF = {"scenario": "db_pool_exhaustion", "rate": 1500, "duration": 4, "speedup": 45, "seed": 11}


@pytest.fixture(scope="module")
def run_settings(broker, tmp_path_factory, airflow_db, dags_folder):
    """Settings of an isolated pipeline: its own topic, data folder and Spark UI port."""
    from incident_airflow.environment import kafka_connection, spark_connection
    from incident_contracts.settings import get_settings, load_settings
    from incident_stack.broker import free_port

    base = tmp_path_factory.mktemp("pipeline")
    env = {
        "ENV_FILE": str(base / "no.env"), "DATA_DIR": str(base / "data"), "RUNTIME_DIR": str(base / "runtime"),
        "KAFKA_BOOTSTRAP_SERVERS": broker, "KAFKA_TOPIC_LOGS": f"logs.e2e.{uuid.uuid4().hex[:8]}",
        "KAFKA_TOPIC_PARTITIONS": "2", "SPARK_MASTER": "local[2]", "SPARK_UI_PORT": str(free_port()),
        "SPARK_DRIVER_MEMORY": "1g", "GEMINI_API_KEY": "", "CHECKPOINT_DIR": "",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        settings = load_settings()
        patch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps(spark_connection(settings)))
        patch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps(kafka_connection(settings)))
        yield settings
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def finished_run(run_settings, dags_folder):
    """Run the DAG once with dag.test(); returns (dag run, the run's folder)."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(dags_folder)).dags[PIPELINE]
    dag_run = dag.test(run_conf=CONF)
    from incident_airflow.runs import run_key

    return dag_run, run_dir(run_settings, run_key(dag_run.run_id))


def _task_states(dag_run) -> dict[str, str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances(session=session)}


def test_run_succeeds_and_reconciles_with_zero_loss(finished_run):
    dag_run, folder = finished_run
    assert str(dag_run.state) == "success", _task_states(dag_run)
    produced = json.loads((folder / "offsets.json").read_text())
    reconciliation = json.loads((folder / "reconciliation.json").read_text())
    generator = produced["generator"]
    assert generator["delivered"] == generator["events_sent"] > 0
    assert reconciliation["ok"] is True
    assert reconciliation["missing"] == 0 and reconciliation["duplicates"] == 0
    assert reconciliation["expected"] == generator["delivered"]
    assert reconciliation["events"] + reconciliation["dead_letters"] == generator["delivered"]


def test_incidents_were_written_and_summarised(finished_run, run_settings):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from incident_contracts.table_store import TableStore

    dag_run, folder = finished_run
    assert TableStore.from_settings(run_settings).read("incident_updates").num_rows, "no incident_updates written"
    summary = json.loads((folder / "run_summary.json").read_text())
    assert summary["incidents"] > 0
    assert summary["reconciled"] is True
    with create_session() as session:
        note = session.query(DagRun).filter(DagRun.dag_id == PIPELINE, DagRun.run_id == dag_run.run_id).one().note
    assert note and "reconciled: nothing lost" in note and "Incidents touched" in note


def test_triage_analyses_the_runs_p1_p2_incidents(finished_run, run_settings):
    """What the triage DAG does with the asset event of this run: offline analyses, stored for the dashboard."""
    from incident_airflow.pipeline import incident_digest
    from incident_airflow.triage import incidents_to_triage, triage
    from incident_rca.service import cached_analysis

    _, folder = finished_run
    produced = json.loads((folder / "offsets.json").read_text())
    digest = incident_digest(run_settings, produced)
    incident_ids = incidents_to_triage([{"escalate": digest["escalate"]}])
    assert incident_ids, f"the scenario should open P1/P2 incidents: {digest}"
    result = triage([*incident_ids, "inc-does-not-exist"], run_settings)
    assert result.analysed == incident_ids
    assert list(result.failed) == ["inc-does-not-exist"]  # reported, and the others still analysed
    stored = cached_analysis(incident_ids[0], settings=run_settings)
    assert stored is not None and stored.engine == "offline"
    assert stored.result.summary


def test_rows_removed_from_events_make_reconciliation_fail(finished_run, run_settings):
    import pyarrow.compute as pc

    from incident_airflow.pipeline import ReconciliationFailed, check_run, reconcile_run
    from incident_contracts.table_store import TableStore

    _, folder = finished_run
    produced = json.loads((folder / "offsets.json").read_text())
    store = TableStore.from_settings(run_settings)
    partition = int(max(produced["end_offsets"], key=lambda p: produced["end_offsets"][p] -
                        produced["start_offsets"].get(p, 0)))
    offsets = store.read("events", ["kafka_partition", "kafka_offset"], pc.field("kafka_partition") == partition)
    first, last = pc.min(offsets["kafka_offset"]).as_py(), pc.max(offsets["kafka_offset"]).as_py()
    middle = (first + last) // 2
    removed = store.open("events").delete(
        f"kafka_partition = {partition} AND kafka_offset >= {middle} AND kafka_offset < {middle + 25}")
    assert removed["num_deleted_rows"] > 0
    result = check_run(run_settings, produced)
    assert not result.ok
    assert result.missing == removed["num_deleted_rows"]
    assert any(f"partition {partition}: " in problem and "in neither events nor dead_letter" in problem
               for problem in result.problems)
    with pytest.raises(ReconciliationFailed, match=rf"partition {partition}: \d+ of \d+ records"):
        reconcile_run(run_settings, produced)
