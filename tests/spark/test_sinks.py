"""The job's writers (job.IngestSink, job.UpdatesSink, the writer locks) as the tables' readers see them.

The publisher these replace lost or duplicated rows six ways; each has a test here or in
tests/contracts/test_table_store.py (TableStore itself):

1. two jobs on one data folder: the second is refused at start, naming the first (here, with the CLI);
2. a replayed micro-batch that read fewer records deleted rows its first attempt had published;
3. a crash between writing files and publishing them left partial data visible, or duplicates;
4. compaction swapped folders under readers and beside a writer (test_table_store);
5. nothing was fsynced before the checkpoint recorded a batch as done (test_table_store);
6. retention deleted whole folders under readers (table maintenance's tests).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql.pandas.types import from_arrow_schema
from stream_helpers import make_event, produce_events
from table_rows import dead_letter_rows, event_rows

from incident_contracts.settings import Settings
from incident_contracts.table_store import TableStore
from incident_contracts.tables import INCIDENT_UPDATES
from incident_stream import job as job_module
from incident_stream.ingest_files import FILES_SCHEMA, STAGED_DEAD_LETTER, STAGED_EVENTS, TableFiles
from incident_stream.job import Counters, IngestSink, JobOptions, UpdatesSink, run_job
from incident_stream.metrics import MetricsRecorder

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def checkpoint(folder: Path) -> Path:
    """A query checkpoint with the metadata file Spark writes first (its id is the application's)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata").write_text(json.dumps({"id": str(uuid.uuid4())}) + "\n")
    return folder


def task_files(store: TableStore, table: str, rows: pa.Table) -> list[dict[str, Any]]:
    """Write rows into the table's folder the way an ingest task does; the FILES_SCHEMA rows it hands Spark."""
    staged = STAGED_EVENTS if table == "events" else STAGED_DEAD_LETTER
    store.create(table)
    filesystem, root = store.filesystem()
    writer = TableFiles(filesystem, f"{root}/{table}", f"part-p0o0-{uuid.uuid4().hex}", staged)
    for batch in rows.to_batches():
        writer.add(batch)
    return [{"table": table, "path": f.path, "size": f.size, "rows": f.rows, "stats": json.dumps(f.stats)}
            for f in writer.close()]


def files_frame(spark: Any, entries: list[dict[str, Any]]) -> Any:
    return spark.createDataFrame(entries, FILES_SCHEMA)


def on_disk(store: TableStore, table: str) -> set[str]:
    folder = store.local_path(table)
    return {str(p.relative_to(folder)) for p in folder.rglob("*.parquet")}


def committed(store: TableStore, table: str) -> set[str]:
    table_dt = store.open(table)
    folder = str(store.local_path(table)) + "/"
    return {uri.removeprefix("file://").removeprefix(folder) for uri in table_dt.file_uris()}


def offsets(table: pa.Table) -> list[int]:
    return sorted(table.column("kafka_offset").to_pylist())


def ingest_sink(store: TableStore, folder: Path) -> IngestSink:
    return IngestSink(store, checkpoint(folder), Counters(), MetricsRecorder(store))


# --- (2) a replay that read less -------------------------------------------------------------------------
def test_a_replayed_batch_that_read_fewer_records_keeps_what_its_first_attempt_committed(
        spark: Any, tmp_path: Path) -> None:
    store = TableStore(str(tmp_path / "data"))
    sink = ingest_sink(store, tmp_path / "checkpoint" / "ingest")
    first = task_files(store, "events", event_rows(range(90), hours=(0, 1, 2)))
    first += task_files(store, "dead_letter", dead_letter_rows(range(90, 100)))
    sink(files_frame(spark, first), 3)
    assert (sink.counters.events, sink.counters.dead_letter) == (90, 10)
    assert sink.metrics._records[("ingest", 3)] == 100

    # The replay of batch 3 read only part of the range (the records past it were deleted meanwhile).
    replay = task_files(store, "events", event_rows(range(30), hours=(0,)))
    assert len(replay) < len([f for f in first if f["table"] == "events"])
    sink(files_frame(spark, replay), 3)

    assert offsets(store.read("events")) == list(range(90))
    assert offsets(store.read("dead_letter")) == list(range(90, 100))
    assert on_disk(store, "events") == committed(store, "events")  # the replay's files were removed
    assert not {f["path"] for f in replay} & on_disk(store, "events")
    assert (sink.counters.events, sink.counters.dead_letter) == (90, 10)  # nothing counted twice
    assert sink.metrics._records[("ingest", 3)] == 0


# --- (3) a crash between writing and committing ----------------------------------------------------------
def test_a_crash_between_the_tables_commits_is_completed_by_the_replay_without_duplicates(
        spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch's events are committed, the job dies before its dead letters are: the replay commits the
    dead letters once, recognises the events, and readers never saw a dead-letter file uncommitted."""
    store = TableStore(str(tmp_path / "data"))
    sink = ingest_sink(store, tmp_path / "checkpoint" / "ingest")
    attempt = task_files(store, "events", event_rows(range(50))) + \
        task_files(store, "dead_letter", dead_letter_rows(range(50, 55)))
    real_commit = TableStore.commit_files

    def dies_before_dead_letters(self: TableStore, table: str, *args: Any) -> bool:
        if table == "dead_letter":
            raise RuntimeError("killed")
        return real_commit(self, table, *args)

    monkeypatch.setattr(TableStore, "commit_files", dies_before_dead_letters)
    with pytest.raises(RuntimeError, match="killed"):
        sink(files_frame(spark, attempt), 0)
    monkeypatch.undo()
    assert offsets(store.read("events")) == list(range(50))
    assert store.read("dead_letter").num_rows == 0  # written, not committed: invisible
    assert len(on_disk(store, "dead_letter")) == 1

    replay = task_files(store, "events", event_rows(range(50))) + \
        task_files(store, "dead_letter", dead_letter_rows(range(50, 55)))
    sink(files_frame(spark, replay), 0)
    assert offsets(store.read("events")) == list(range(50))
    assert offsets(store.read("dead_letter")) == list(range(50, 55))
    assert on_disk(store, "events") == committed(store, "events")
    crashed_dead_letters = {f["path"] for f in attempt if f["table"] == "dead_letter"}
    assert on_disk(store, "dead_letter") - committed(store, "dead_letter") == crashed_dead_letters
    for table in ("events", "dead_letter"):
        assert store.committed_version(table, sink.app_id) == 0


# --- application ids, empty batches, incident updates ----------------------------------------------------
def test_a_fresh_checkpoint_is_a_new_application_whose_batch_0_commits(spark: Any, tmp_path: Path) -> None:
    store = TableStore(str(tmp_path / "data"))
    old = ingest_sink(store, tmp_path / "old" / "ingest")
    old(files_frame(spark, task_files(store, "events", event_rows(range(10)))), 0)
    new = ingest_sink(store, tmp_path / "new" / "ingest")
    assert new.app_id != old.app_id and new.app_id.startswith("incident-stream-ingest-")
    new(files_frame(spark, task_files(store, "events", event_rows(range(10, 20)))), 0)
    assert offsets(store.read("events")) == list(range(20))
    old(files_frame(spark, task_files(store, "events", event_rows(range(10)))), 0)  # the old one's replay
    assert offsets(store.read("events")) == list(range(20))
    assert store.committed_version("events", old.app_id) == store.committed_version("events", new.app_id) == 0


def update_rows(spark: Any, incidents: list[str]) -> Any:
    now = dt.datetime.now(dt.UTC)
    rows = [{"incident_id": incident, "update_seq": 1, "update_type": "opened", "status": "open",
             "update_time": now, "service": "payments", "environment": "prod", "severity": "P2",
             "opened_at": now, "first_seen": now, "last_seen": now} for incident in incidents]
    return spark.createDataFrame(rows, from_arrow_schema(INCIDENT_UPDATES))


def test_empty_batches_commit_nothing(spark: Any, tmp_path: Path) -> None:
    """An idle stream runs a micro-batch every trigger: none of them may add a table version."""
    store = TableStore(str(tmp_path / "data"))
    for table in ("events", "dead_letter", "incident_updates"):
        store.create(table)
    ingest = ingest_sink(store, tmp_path / "checkpoint" / "ingest")
    updates = UpdatesSink(store, checkpoint(tmp_path / "checkpoint" / "detection"), Counters())
    for batch in range(3):
        ingest(files_frame(spark, []), batch)
        updates(update_rows(spark, []), batch)
    for table in ("events", "dead_letter", "incident_updates"):
        assert store.open(table).version() == 0, table
    assert ingest.counters.batches == {"ingest": 3} and updates.counters.batches == {"detection": 3}


def test_incident_updates_of_a_replayed_batch_are_appended_once(spark: Any, tmp_path: Path) -> None:
    store = TableStore(str(tmp_path / "data"))
    sink = UpdatesSink(store, checkpoint(tmp_path / "checkpoint" / "detection"), Counters())
    sink(update_rows(spark, ["inc-1", "inc-2"]), 5)
    sink(update_rows(spark, ["inc-1", "inc-2"]), 5)  # replayed
    sink(update_rows(spark, ["inc-3"]), 6)
    content = store.read("incident_updates")
    assert sorted(content.column("incident_id").to_pylist()) == ["inc-1", "inc-2", "inc-3"]
    assert sink.counters.incident_updates == 3
    assert store.committed_version("incident_updates", sink.app_id) == 6
    assert len(on_disk(store, "incident_updates")) == 2  # the replay wrote no file


def test_detector_counter_rows_go_to_metrics_once_and_never_to_incident_updates(spark: Any, tmp_path: Path) -> None:
    from incident_stream.detection.output import counter_rows

    store = TableStore(str(tmp_path / "data"))
    sink = UpdatesSink(store, checkpoint(tmp_path / "checkpoint" / "detection"), Counters(), run_id="run-7")
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    counters = counter_rows("prod", [("late_counted", "search", 1655), ("environment_silent", "", 4)], now_ms)
    for r in counters:
        r["update_time"] = r["opened_at"] = r["first_seen"] = r["last_seen"] = dt.datetime.fromtimestamp(
            now_ms / 1000, dt.UTC)
    batch = spark.createDataFrame(update_rows(spark, ["inc-1"]).collect() + [
        {**{f.name: None for f in INCIDENT_UPDATES}, **r} for r in counters], from_arrow_schema(INCIDENT_UPDATES))
    sink(batch, 3)
    sink(batch, 3)  # replayed
    assert store.read("incident_updates").column("incident_id").to_pylist() == ["inc-1"]
    metrics = store.read("metrics").to_pylist()
    assert sorted((m["query_name"], m["query_id"], m["num_input_rows"], m["batch_id"], m["run_id"])
                  for m in metrics) == [("counter:environment_silent", "prod", 4, 3, "run-7"),
                                        ("counter:late_counted", "prod/search", 1655, 3, "run-7")]


# --- (1) two jobs on one data folder ---------------------------------------------------------------------
def cli_env(broker: str, topic: str, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "SPARK_", "STREAM_", "DATA_DIR", "CHECKPOINT_DIR", "RUNTIME_DIR"))}
    env.update(ENV_FILE=str(data.parent / "none.env"), DATA_DIR=str(data), RUNTIME_DIR=str(data.parent / "rt"),
               KAFKA_BOOTSTRAP_SERVERS=broker, KAFKA_TOPIC_LOGS=topic, KAFKA_CONSUMER_GROUP="",
               SPARK_MASTER="local[1]", SPARK_DRIVER_MEMORY="1g", PYTHONUNBUFFERED="1")
    return env


def second_job(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    """Run the real CLI; (exit status, its JSON summary, stderr). Killed if it did not refuse to start."""
    command = [sys.executable, "-m", "incident_stream.cli", "--once", "--run-id", "second-run", *args]
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"the second job was not refused within 60 s:\n{err[-3000:]}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return process.returncode, json.loads(lines[-1]) if lines else {}, err


def test_a_second_job_on_the_same_checkpoint_or_tables_is_refused_naming_the_running_one(
        spark: Any, broker: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(400)))
    data = tmp_path / "data"
    settings = Settings(_env_file=None, kafka_bootstrap_servers=broker, kafka_topic_logs=topic,  # type: ignore[call-arg]
                        data_dir=data, kafka_consumer_group="")
    options = JobOptions(data_dir=data, checkpoint=data / "_checkpoints" / "job", detection=False,
                         trigger_seconds=0.5, max_records_per_trigger=100, run_id="first-run")
    jobs: list[job_module.StreamJob] = []

    class Recorded(job_module.StreamJob):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            jobs.append(self)

    monkeypatch.setattr(job_module, "StreamJob", Recorded)
    summaries: list[dict[str, Any]] = []
    first = threading.Thread(target=lambda: summaries.append(run_job(spark, settings, options, handle_signals=False)))
    first.start()
    try:
        deadline = time.monotonic() + 120
        while (not jobs or jobs[0].counters.batches.get("ingest", 0) < 1) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert jobs and jobs[0].counters.batches.get("ingest", 0) >= 1, "the first job committed no batch"
        env = cli_env(broker, topic, data)
        running = f"run first-run (pid {os.getpid()} on "

        # The same checkpoint, other tables: the checkpoint is refused.
        other = tmp_path / "other-data"
        status, summary, err = second_job(env, "--checkpoint", str(options.checkpoint), "--data-dir", str(other))
        assert status == 3, err[-3000:]
        assert summary["status"] == "refused" and summary["run_id"] == "second-run"
        assert f"the streaming checkpoint {options.checkpoint} is in use by {running}" in summary["error"]
        assert "not started" in err and running in err
        assert not (other / "events").exists()

        # The same tables, a checkpoint of its own: the tables are refused.
        status, summary, err = second_job(env, "--checkpoint", str(tmp_path / "own-checkpoint"))
        assert status == 3, err[-3000:]
        assert f"the tables in {data} is in use by {running}" in summary["error"]
        assert not (tmp_path / "own-checkpoint" / "ingest").exists()
        assert first.is_alive()  # the running job was not disturbed
    finally:
        if jobs:
            jobs[0].request_stop("test finished")
        first.join(timeout=120)
    assert summaries and summaries[0]["status"] == "finished", summaries
    assert summaries[0]["mode"] == "continuous"
    events = TableStore(str(data)).read("events")
    assert len(set(events.column("event_id").to_pylist())) == events.num_rows  # no batch written twice


def test_tables_in_the_layout_before_delta_lake_are_refused_at_start_naming_the_migration(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old = data / "dead_letter" / "dl_date=2026-12-06"
    old.mkdir(parents=True)
    pq.write_table(dead_letter_rows(range(3)).drop_columns(["dl_date"]), old / "part-00000.parquet")
    env = cli_env("127.0.0.1:9", "logs", data)
    status, summary, err = second_job(env)
    assert status == 3, err[-3000:]
    assert summary["status"] == "refused" and "make migrate-data" in summary["error"]
    assert str(data / "dead_letter") in summary["error"]
    assert not (data / "dead_letter" / "_delta_log").exists() and not (data / "events").exists()
