"""incident_processing_pipeline: produce logs, stream them through Spark, prove nothing was lost.

    validate_params -> prepare_topic -> produce_logs ----------------------------> reconcile
                                     \\-> wait_for_producer -> process_stream ---/
    reconcile -> publish_incidents -> summarize

The task logic lives in the `incident_airflow` package; this file only wires it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.bases.sensor import PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from incident_airflow import pipeline
from incident_airflow.assets import pipeline_assets
from incident_airflow.params import BadParams, RunRequest, dag_params, parse_run_request
from incident_airflow.run_note import set_run_note
from incident_airflow.runs import run_key
from incident_airflow.spark_job import PRODUCER_GAVE_UP, StreamJobOperator, producer_state
from incident_contracts.settings import load_settings

DAG_ID = "incident_processing_pipeline"
PRODUCE_TASK = "produce_logs"
ASSETS = pipeline_assets(load_settings())

DOC = """
Runs the incident pipeline once on the embedded (or compose) stack.

1. **validate_params** checks the trigger parameters (a bad value fails at once, no retry).
2. **prepare_topic** checks the Kafka broker answers and creates the topic if missing (retried with
   backoff: a broker that is briefly down comes back).
3. **produce_logs** runs the log generator for `duration` seconds (or replays `replay_file`, a file inside
   the REPLAY_DIR folder) and records the topic's end offsets before and after: the run's offset ranges.
4. **process_stream** submits the Spark streaming job (`spark_default` connection) in parallel; it stops
   once every record of the run is processed. One job at a time holds the shared checkpoint.
5. **reconcile** proves every record of the run is in `events` or `dead_letter` exactly once, or fails
   naming the partitions and offsets that are missing or duplicated.
6. **publish_incidents** records asset events for the incident tables (the triage DAG listens).
7. **summarize** writes events, incidents by severity, dead letters and throughput to the log and the
   run's note.
"""

default_args = {
    "owner": "incident-intelligence",
    "retries": 2,
    "retry_delay": timedelta(seconds=5),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=1),
}


@dag(
    dag_id=DAG_ID,
    description="Generate logs, stream them through Spark into incident tables, reconcile, publish, summarise.",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["incident-intelligence", "pipeline", "spark", "kafka"],
    params=dag_params(),
    default_args=default_args,
    doc_md=DOC,
)
def incident_processing_pipeline():
    @task(retries=0)
    def validate_params(params: dict | None = None) -> dict:
        try:
            request = parse_run_request(dict(params or {}))
        except BadParams as exc:
            raise AirflowFailException(f"bad parameters, the run cannot work: {exc}") from None
        print(f"Parameters are valid: {request.describe()}.")
        return request.to_dict()

    @task
    def prepare_topic() -> dict:
        return pipeline.prepare_topic(pipeline.pipeline_settings())

    @task(task_id=PRODUCE_TASK, execution_timeout=timedelta(hours=2), priority_weight=10)
    def produce_logs(request: dict, topic: dict, run_id: str | None = None) -> dict:
        return pipeline.produce(pipeline.pipeline_settings(), RunRequest(**request), run_key(run_id))

    @task.sensor(poke_interval=2, timeout=timedelta(minutes=30), mode="reschedule", retries=0)
    def wait_for_producer(topic: dict) -> PokeReturnValue:
        """Start Spark only once the generator runs: a job started first would go idle and stop."""
        state = producer_state(get_current_context()["ti"], PRODUCE_TASK)
        if state in PRODUCER_GAVE_UP:
            raise AirflowSkipException(f"the produce task ended in state {state}; there is nothing to stream")
        print(f"produce_logs is {state or 'not started'}")
        return PokeReturnValue(is_done=state in ("running", "success"))

    process_stream = StreamJobOperator(task_id="process_stream", producer_task_id=PRODUCE_TASK, retries=1,
                                       execution_timeout=timedelta(hours=2))

    @task(retries=0)
    def reconcile(produced: dict, run_id: str | None = None, dag_run=None) -> dict:
        settings = pipeline.pipeline_settings()
        try:
            return pipeline.reconcile_run(settings, produced)
        except pipeline.ReconciliationFailed as exc:
            note = f"**Run {run_id}: reconciliation FAILED.**\n\n{exc}"
            try:
                set_run_note(DAG_ID, run_id, note)
            except Exception as note_error:  # the failure itself matters more than its note
                print(f"could not store the run's note: {note_error}")
            raise AirflowFailException(str(exc)) from None

    @task(outlets=list(ASSETS.values()))
    def publish_incidents(produced: dict, reconciliation: dict, outlet_events=None, run_id: str | None = None) -> dict:
        incidents = pipeline.incident_digest(pipeline.pipeline_settings(), produced)
        figures = {"run_id": run_id, "run_key": produced["run_key"], "events": reconciliation["events"],
                   "dead_letters": reconciliation["dead_letters"]}
        outlet_events[ASSETS["incident_updates"]].extra = {
            **figures, "incidents_by_severity": incidents["by_severity"], "escalate": incidents["escalate"]}
        outlet_events[ASSETS["events"]].extra = figures
        outlet_events[ASSETS["dead_letter"]].extra = figures
        print(f"Published asset events for {', '.join(ASSETS)}; incidents to triage: {incidents['escalate']}")
        return incidents

    @task
    def summarize(request: dict, produced: dict, stream: dict, reconciliation: dict, incidents: dict,
                  run_id: str | None = None) -> dict:
        summary = pipeline.summarize(pipeline.pipeline_settings(), run_id, RunRequest(**request), produced,
                                     reconciliation, incidents, stream)
        where = set_run_note(DAG_ID, run_id, summary.note())
        print(f"Run note stored through the {where}.")
        return summary.to_dict()

    request = validate_params()
    topic = prepare_topic()
    request >> topic
    produced = produce_logs(request, topic)
    waited = wait_for_producer(topic)
    waited >> process_stream
    reconciliation = reconcile(produced)
    process_stream >> reconciliation
    incidents = publish_incidents(produced, reconciliation)
    summarize(request, produced, process_stream.output, reconciliation, incidents)


incident_processing_pipeline()
