"""The job's writers (job.BatchSink, the writer locks) as the tables' readers see them.

The publisher these replace lost or duplicated rows six ways; each has a test here or in
tests/contracts/test_table_store.py (TableStore itself):

1. two jobs on one data folder: the second is refused at start, naming the first (here, with the CLI);
2. a replayed micro-batch that read fewer records deleted rows its first attempt had published;
3. a crash between writing files and publishing them left partial data visible, or duplicates;
4. compaction swapped folders under readers and beside a writer (test_table_store);
5. nothing was fsynced before the checkpoint recorded a batch as done (test_table_store);
6. retention deleted whole folders under readers (table maintenance's tests).

The sink learns a batch's files from the staging folder (batch_staging.py): the tests write them as the
source's tasks do (ingest_files.RangeFiles, BatchStaging.write_task after the planner's write_plan) and
commit with BatchSink.commit, or BatchSink.__call__ with the batch's offset log entry, without Spark.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
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
from stream_helpers import make_event, produce_events
from table_rows import dead_letter_rows, event_rows

from incident_contracts.settings import Settings
from incident_contracts.table_store import DataFile, TableStore
from incident_contracts.tables import INCIDENT_UPDATES
from incident_stream import job as job_module
from incident_stream.batch_staging import STAGING_FOLDER, BatchStaging, StagedBatch, StagingError
from incident_stream.ingest_files import RangeFiles
from incident_stream.job import BatchSink, Counters, JobOptions, run_job
from incident_stream.kafka_read import Range
from incident_stream.metrics import MetricsRecorder

ROOT = Path(__file__).resolve().parents[2]
NO_UPDATES = INCIDENT_UPDATES.empty_table()  # what a batch of the detector hands the sink when nothing changed


def checkpoint(folder: Path) -> Path:
    """A query checkpoint with the metadata file Spark writes first (its id is the application's)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata").write_text(json.dumps({"id": str(uuid.uuid4())}) + "\n")
    return folder


def end_of(**offsets: int) -> dict[str, Any]:
    """A batch's end offset as the source returns it and Spark logs it: end_of(p0=100, p1=20)."""
    return {"topic": "logs", "topicId": "topic-id",
            "offsets": {name.removeprefix("p"): offset for name, offset in offsets.items()}}


def run_task(store: TableStore, rng: Range, events: pa.Table | None = None,
             dead_letters: pa.Table | None = None) -> list[tuple[str, DataFile]]:
    """One task attempt: its range's rows written as table files, then its manifest."""
    files = RangeFiles(store, rng)
    for batch in events.to_batches() if events is not None else []:
        files.add_events(batch)
    for batch in dead_letters.to_batches() if dead_letters is not None else []:
        files.add_dead_letters(batch)
    written = files.close()
    BatchStaging.of(store).write_task(rng, written)
    return written


def plan(store: TableStore, end: dict[str, Any], *ranges: Range) -> None:
    BatchStaging.of(store).write_plan(end, list(ranges))


def paths(written: list[tuple[str, DataFile]], table: str) -> set[str]:
    return {f.path for name, f in written if name == table}


def created_store(folder: Path) -> TableStore:
    """The tables as the job creates them before its query starts."""
    store = TableStore(str(folder))
    for table in ("events", "dead_letter", "incident_updates"):
        store.create(table)
    return store


def on_disk(store: TableStore, table: str) -> set[str]:
    folder = store.local_path(table)
    return {str(p.relative_to(folder)) for p in folder.rglob("*.parquet")}


def committed(store: TableStore, table: str) -> set[str]:
    table_dt = store.open(table)
    folder = str(store.local_path(table)) + "/"
    return {uri.removeprefix("file://").removeprefix(folder) for uri in table_dt.file_uris()}


def staged(store: TableStore) -> list[str]:
    """What is left in the staging folder."""
    return sorted(str(p.relative_to(store.local_path(STAGING_FOLDER)))
                  for p in store.local_path(STAGING_FOLDER).rglob("*") if p.is_file())


def offsets(table: pa.Table) -> list[int]:
    return sorted(table.column("kafka_offset").to_pylist())


def batch_sink(store: TableStore, folder: Path, run_id: str | None = None) -> BatchSink:
    return BatchSink(store, checkpoint(folder), Counters(), MetricsRecorder(store), run_id=run_id)


def commit(sink: BatchSink, batch_id: int, end: dict[str, Any], updates: pa.Table = NO_UPDATES) -> None:
    sink.commit(batch_id, sink.staging.batch(end), updates)


# --- (2) a replay that read less -------------------------------------------------------------------------
def test_a_replayed_batch_that_read_fewer_records_keeps_what_its_first_attempt_committed(tmp_path: Path) -> None:
    store = created_store(tmp_path / "data")
    sink = batch_sink(store, tmp_path / "checkpoint" / "logs")
    end = end_of(p0=100)
    plan(store, end, Range(0, 0, 100))
    first = run_task(store, Range(0, 0, 100), event_rows(range(90), hours=(0, 1, 2)), dead_letter_rows(range(90, 100)))
    commit(sink, 3, end)
    assert (sink.counters.events, sink.counters.dead_letter, sink.counters.batches) == (90, 10, 1)
    assert sink.metrics._records[("logs", 3)] == 100
    assert staged(store) == []

    # The replay of batch 3 read only part of the range (the records past it were deleted meanwhile).
    plan(store, end, Range(0, 0, 100))
    replay = run_task(store, Range(0, 0, 100), event_rows(range(30), hours=(0,)))
    assert len(paths(replay, "events")) < len(paths(first, "events"))
    commit(sink, 3, end)

    assert offsets(store.read("events")) == list(range(90))
    assert offsets(store.read("dead_letter")) == list(range(90, 100))
    assert on_disk(store, "events") == committed(store, "events") == paths(first, "events")  # the replay's removed
    assert (sink.counters.events, sink.counters.dead_letter, sink.counters.batches) == (90, 10, 2)  # none twice
    assert sink.metrics._records[("logs", 3)] == 0
    assert staged(store) == []


# --- (3) a crash between writing and committing ----------------------------------------------------------
def test_a_crash_between_the_tables_commits_is_completed_by_the_replay_without_duplicates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch's events are committed, the job dies before its dead letters are: the replay commits the
    dead letters once, recognises the events, and readers never saw a dead-letter file uncommitted."""
    store = created_store(tmp_path / "data")
    sink = batch_sink(store, tmp_path / "checkpoint" / "logs")
    end = end_of(p0=50, p1=5)
    ranges = (Range(0, 0, 50), Range(1, 0, 5))
    plan(store, end, *ranges)
    attempt = run_task(store, ranges[0], event_rows(range(50))) + \
        run_task(store, ranges[1], dead_letters=dead_letter_rows(range(5), partition=1))
    real_commit = TableStore.commit_files

    def dies_before_dead_letters(self: TableStore, table: str, *args: Any) -> bool:
        if table == "dead_letter":
            raise RuntimeError("killed")
        return real_commit(self, table, *args)

    monkeypatch.setattr(TableStore, "commit_files", dies_before_dead_letters)
    with pytest.raises(RuntimeError, match="killed"):
        commit(sink, 0, end)
    monkeypatch.undo()
    assert offsets(store.read("events")) == list(range(50))
    assert store.read("dead_letter").num_rows == 0  # written, not committed: invisible
    assert on_disk(store, "dead_letter") == paths(attempt, "dead_letter")
    assert len(staged(store)) == 3  # the plan and both manifests: the batch never finished
    assert sink.counters.batches == 0

    # The restarted query clears the staging folder (StreamJob.start), Spark replays batch 0.
    sink.staging.clear()
    plan(store, end, *ranges)
    replay = run_task(store, ranges[0], event_rows(range(50))) + \
        run_task(store, ranges[1], dead_letters=dead_letter_rows(range(5), partition=1))
    commit(sink, 0, end)
    assert offsets(store.read("events")) == list(range(50))
    assert offsets(store.read("dead_letter")) == list(range(5))
    assert on_disk(store, "events") == committed(store, "events") == paths(attempt, "events")
    assert committed(store, "dead_letter") == paths(replay, "dead_letter")
    # The crashed attempt's dead letters stay outside every version until vacuum removes them.
    assert on_disk(store, "dead_letter") - committed(store, "dead_letter") == paths(attempt, "dead_letter")
    for table in ("events", "dead_letter"):
        assert store.committed_version(table, sink.app_id) == 0
    assert (sink.counters.events, sink.counters.dead_letter) == (0, 5)  # the events were the first attempt's
    assert staged(store) == []


# --- several attempts, stray and missing manifests -------------------------------------------------------
def order_manifests(store: TableStore, first: list[tuple[str, DataFile]], second: list[tuple[str, DataFile]],
                    first_wins: bool) -> None:
    """Rename the two attempts' manifests of one range so that the sink takes `first` or `second`: it takes
    the manifest whose name sorts first (the names are otherwise random)."""
    tasks = store.local_path(STAGING_FOLDER) / "tasks"
    by_files = {}
    for manifest in tasks.iterdir():
        named = {entry["path"] for entry in json.loads(manifest.read_text())["files"]}
        by_files[frozenset(named)] = manifest
    for written, rank in ((first, "a" if first_wins else "b"), (second, "b" if first_wins else "a")):
        manifest = by_files[frozenset(f.path for _, f in written)]
        manifest.rename(manifest.with_name(f"{manifest.name.split('.')[0]}.{rank * 32}.json"))


@pytest.mark.parametrize("first_wins", [True, False], ids=["first-attempt-taken", "second-attempt-taken"])
def test_of_two_staged_attempts_of_a_range_one_is_committed_and_the_other_deleted(
        tmp_path: Path, first_wins: bool) -> None:
    """A batch whose first attempt never reached its commit left its manifests; the replay's attempt wrote
    its own: each row is committed once, from one attempt, and the other attempt's files are gone."""
    store = created_store(tmp_path / "data")
    sink = batch_sink(store, tmp_path / "checkpoint" / "logs")
    end = end_of(p0=40)
    plan(store, end, Range(0, 0, 40))
    first = run_task(store, Range(0, 0, 40), event_rows(range(35), hours=(0, 1)), dead_letter_rows(range(35, 40)))
    plan(store, end, Range(0, 0, 40))  # the replay plans the same batch again
    second = run_task(store, Range(0, 0, 40), event_rows(range(35), hours=(0, 1)), dead_letter_rows(range(35, 40)))
    assert paths(first, "events").isdisjoint(paths(second, "events"))
    order_manifests(store, first, second, first_wins)
    taken, lost = (first, second) if first_wins else (second, first)

    commit(sink, 7, end)
    assert offsets(store.read("events")) == list(range(35))
    assert offsets(store.read("dead_letter")) == list(range(35, 40))
    for table in ("events", "dead_letter"):
        assert committed(store, table) == on_disk(store, table) == paths(taken, table), table
        assert paths(lost, table).isdisjoint(on_disk(store, table))
        assert store.committed_version(table, sink.app_id) == 7
    assert (sink.counters.events, sink.counters.dead_letter) == (35, 5)
    assert sink.metrics._records[("logs", 7)] == 40
    assert staged(store) == []


def test_a_replay_that_finds_the_committed_attempts_manifest_still_staged_keeps_its_files(tmp_path: Path,
                                                                                        monkeypatch: pytest.MonkeyPatch
                                                                                        ) -> None:
    """The first attempt committed its files but its manifests were not cleared (clear() failed, which it
    only logs); the replay's attempt is taken: the committed files must stay, the replay's must go."""
    store = created_store(tmp_path / "data")
    sink = batch_sink(store, tmp_path / "checkpoint" / "logs")
    end = end_of(p0=20)
    plan(store, end, Range(0, 0, 20))
    first = run_task(store, Range(0, 0, 20), event_rows(range(20)))
    monkeypatch.setattr(BatchStaging, "clear", lambda self: None)
    commit(sink, 2, end)
    monkeypatch.undo()
    second = run_task(store, Range(0, 0, 20), event_rows(range(20)))
    order_manifests(store, first, second, first_wins=False)
    commit(sink, 2, end)
    assert on_disk(store, "events") == committed(store, "events") == paths(first, "events")


def test_a_manifest_of_a_range_the_batch_did_not_plan_is_not_committed(tmp_path: Path) -> None:
    store = created_store(tmp_path / "data")
    sink = batch_sink(store, tmp_path / "checkpoint" / "logs")
    end = end_of(p0=30, p1=10)
    plan(store, end, Range(0, 20, 30))
    mine = run_task(store, Range(0, 20, 30), event_rows(range(20, 30)))
    other_start = run_task(store, Range(0, 0, 30), event_rows(range(30)))  # same end, another start
    other_partition = run_task(store, Range(1, 0, 10), event_rows(range(10), partition=1))
    commit(sink, 1, end)
    assert offsets(store.read("events")) == list(range(20, 30))
    assert committed(store, "events") == paths(mine, "events")
    assert not (paths(other_start, "events") | paths(other_partition, "events")) & committed(store, "events")
    assert sink.counters.events == 10
    assert staged(store) == []


class ArrowBatch:
    """What the sink is handed by foreachBatch, as far as it uses it: the batch's rows as Arrow."""

    def __init__(self, rows: pa.Table):
        self.rows = rows

    def toArrow(self) -> pa.Table:
        return self.rows


def log_offset(sink: BatchSink, batch_id: int, end: dict[str, Any]) -> None:
    """The batch's entry in the query's offset log, as Spark writes it before the batch runs."""
    folder = sink.checkpoint / "offsets"
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"batchWatermarkMs": 0, "batchTimestampMs": 0, "conf": {}}
    (folder / str(batch_id)).write_text(f"v1\n{json.dumps(metadata)}\n{json.dumps(end)}")


def test_a_planned_range_without_a_manifest_fails_the_batch_and_commits_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = created_store(tmp_path / "data")
    sink = batch_sink(store, tmp_path / "checkpoint" / "logs")
    end = end_of(p0=10, p1=20)
    plan(store, end, Range(0, 0, 10), Range(1, 0, 20))
    run_task(store, Range(0, 0, 10), event_rows(range(10)))
    log_offset(sink, 4, end)
    updates = update_rows(["inc-1"])
    with pytest.raises(StagingError, match="the task that read p1-0-20 left no manifest"):
        sink(ArrowBatch(updates), 4)
    for table in ("events", "dead_letter", "incident_updates"):
        assert store.open(table).version() == 0, table
    assert (sink.counters.batches, sink.counters.events, sink.counters.incident_updates) == (0, 0, 0)
    assert ("logs", 4) not in sink.metrics._records

    # Once the range's manifest is there (the replay), the same call commits the batch, and says so.
    run_task(store, Range(1, 0, 20), event_rows(range(20), partition=1))
    with caplog.at_level(logging.INFO, logger="incident_stream"):
        sink(ArrowBatch(updates), 4)
    assert store.read("events").num_rows == 30 and store.read("incident_updates").num_rows == 1
    assert staged(store) == []
    progress = [r.getMessage() for r in caplog.records if r.name == "incident_stream"]
    assert len(progress) == 1 and progress[0].startswith(
        "batch 4: 30 events, 0 dead letters, 1 incident updates committed in "), progress


def test_a_batch_missing_from_the_offset_log_is_refused(tmp_path: Path) -> None:
    store = created_store(tmp_path / "data")
    sink = batch_sink(store, tmp_path / "checkpoint" / "logs")
    with pytest.raises(StagingError, match=r"micro-batch 9 has no entry in .*/logs/offsets"):
        sink(ArrowBatch(NO_UPDATES), 9)


# --- application ids, empty batches, incident updates ----------------------------------------------------
def test_a_fresh_checkpoint_is_a_new_application_whose_batch_0_commits(tmp_path: Path) -> None:
    store = created_store(tmp_path / "data")
    old = batch_sink(store, tmp_path / "old" / "logs")
    end = end_of(p0=10)
    plan(store, end, Range(0, 0, 10))
    run_task(store, Range(0, 0, 10), event_rows(range(10)))
    commit(old, 0, end)
    new = batch_sink(store, tmp_path / "new" / "logs")
    assert new.app_id != old.app_id and new.app_id.startswith("incident-stream-logs-")
    new_end = end_of(p0=20)
    plan(store, new_end, Range(0, 10, 20))
    run_task(store, Range(0, 10, 20), event_rows(range(10, 20)))
    commit(new, 0, new_end)
    assert offsets(store.read("events")) == list(range(20))
    plan(store, end, Range(0, 0, 10))  # the old application's replay
    run_task(store, Range(0, 0, 10), event_rows(range(10)))
    commit(old, 0, end)
    assert offsets(store.read("events")) == list(range(20))
    assert store.committed_version("events", old.app_id) == store.committed_version("events", new.app_id) == 0


def update_rows(incidents: list[str]) -> pa.Table:
    now = dt.datetime.now(dt.UTC)
    rows = [{"incident_id": incident, "update_seq": 1, "update_type": "opened", "status": "open",
             "update_time": now, "service": "payments", "environment": "prod", "severity": "P2",
             "opened_at": now, "first_seen": now, "last_seen": now} for incident in incidents]
    return pa.Table.from_pylist(rows, schema=INCIDENT_UPDATES)


def test_empty_batches_commit_nothing(tmp_path: Path) -> None:
    """An idle stream runs a micro-batch every trigger: none of them may add a table version."""
    store = created_store(tmp_path / "data")
    sink = batch_sink(store, tmp_path / "checkpoint" / "logs")
    end = end_of(p0=0)
    for batch in range(3):
        commit(sink, batch, end)  # no plan: the source planned no task
        sink.commit(batch, StagedBatch(), pa.table({}))  # the job without detection: no update columns
    for table in ("events", "dead_letter", "incident_updates"):
        assert store.open(table).version() == 0, table
    assert store.open("metrics") is None
    assert sink.counters.batches == 6 and sink.counters.events == sink.counters.incident_updates == 0
    assert len(sink.counters.commit_seconds) == 6


def test_incident_updates_of_a_replayed_batch_are_appended_once(tmp_path: Path) -> None:
    store = TableStore(str(tmp_path / "data"))
    sink = batch_sink(store, tmp_path / "checkpoint" / "logs")
    first = sink.commit(5, StagedBatch(), update_rows(["inc-1", "inc-2"]))
    replayed = sink.commit(5, StagedBatch(), update_rows(["inc-1", "inc-2"]))
    sink.commit(6, StagedBatch(), update_rows(["inc-3"]))
    # what the batch's progress line reports: the rows each table gained, none for the replay
    assert first == {"events": 0, "dead_letter": 0, "incident_updates": 2}
    assert replayed == {"events": 0, "dead_letter": 0, "incident_updates": 0}
    content = store.read("incident_updates")
    assert sorted(content.column("incident_id").to_pylist()) == ["inc-1", "inc-2", "inc-3"]
    assert sink.counters.incident_updates == 3
    assert store.committed_version("incident_updates", sink.app_id) == 6
    assert len(on_disk(store, "incident_updates")) == 2  # the replay wrote no file


def test_detector_counter_rows_go_to_metrics_once_and_never_to_incident_updates(tmp_path: Path) -> None:
    from incident_stream.detection.output import counter_rows

    store = TableStore(str(tmp_path / "data"))
    sink = batch_sink(store, tmp_path / "checkpoint" / "logs", run_id="run-7")
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    counters = counter_rows("prod", [("late_counted", "search", 1655), ("environment_silent", "", 4)], now_ms)
    for r in counters:
        r["update_time"] = r["opened_at"] = r["first_seen"] = r["last_seen"] = dt.datetime.fromtimestamp(
            now_ms / 1000, dt.UTC)
    batch = pa.concat_tables([update_rows(["inc-1"]), pa.Table.from_pylist(counters, schema=INCIDENT_UPDATES)])
    sink.commit(3, StagedBatch(), batch)
    sink.commit(3, StagedBatch(), batch)  # replayed
    assert store.read("incident_updates").column("incident_id").to_pylist() == ["inc-1"]
    metrics = store.read("metrics").to_pylist()
    assert sorted((m["query_name"], m["query_id"], m["num_input_rows"], m["batch_id"], m["run_id"])
                  for m in metrics) == [("counter:environment_silent", "prod", 4, 3, "run-7"),
                                        ("counter:late_counted", "prod/search", 1655, 3, "run-7")]
    assert sink.counters.incident_updates == 1


def test_the_records_a_batch_committed_reach_the_metrics_recorder_and_prometheus(tmp_path: Path) -> None:
    from incident_stream.prometheus import JobMetrics

    store = created_store(tmp_path / "data")
    prometheus = JobMetrics()
    sink = BatchSink(store, checkpoint(tmp_path / "checkpoint" / "logs"), Counters(), MetricsRecorder(store),
                     prometheus)
    end = end_of(p0=12, p1=7)
    plan(store, end, Range(0, 0, 12), Range(1, 0, 7))
    run_task(store, Range(0, 0, 12), event_rows(range(9)), dead_letter_rows(range(9, 12)))
    run_task(store, Range(1, 0, 7), event_rows(range(7), partition=1))
    commit(sink, 0, end)
    assert sink.metrics._records == {("logs", 0): 19}
    assert prometheus.registry.get_sample_value("incident_stream_dead_letters_total") == 3
    assert (sink.counters.events, sink.counters.dead_letter) == (16, 3)


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


@pytest.mark.integration
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
        while (not jobs or jobs[0].counters.batches < 1) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert jobs and jobs[0].counters.batches >= 1, "the first job committed no batch"
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
        assert not (tmp_path / "own-checkpoint" / "logs").exists()
        assert first.is_alive()  # the running job was not disturbed
    finally:
        if jobs:
            jobs[0].request_stop("test finished")
        first.join(timeout=120)
    assert summaries and summaries[0]["status"] == "finished", summaries
    assert summaries[0]["mode"] == "continuous"
    events = TableStore(str(data)).read("events")
    assert len(set(events.column("event_id").to_pylist())) == events.num_rows  # no batch written twice


@pytest.mark.integration
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
