"""Fault tests on the cluster tier, each while a pipeline run is in progress.

(a) ``kill -9`` the Kafka broker that leads the busiest partition while the generator produces: the
    idempotent producer (acks=all) loses and duplicates nothing, another replica takes over the
    partition, and the restarted broker rejoins the in-sync replicas.
(b) ``kill -9`` one Spark worker (its process group: the worker daemon, its executor and the executor's
    Python workers) while a micro-batch is in flight: the tasks it ran are run again on the other
    worker, the same application finishes the batch, and the restarted worker gets a new executor.
(d) ``kill -9`` every process of the tier at once while a micro-batch of a run's streaming job is in
    flight (every process crashes; unlike a power cut, the operating system's page cache survives),
    start the tier again with ``cluster up``: the interrupted run is taken up again by Airflow (or
    fails), and a new run succeeds.

(a) and (b) share one run (the broker fault while the generator produces, the worker fault once the
streaming job processes); (d) has runs of its own. Every test ends with its runs SUCCESS, every record
they produced in `events` or `dead_letter` exactly once and no `(incident_id, update_seq)` twice, read
from the Parquet files by tests/pipeline_checks.py. Each prints what it measured (lines starting with
``fault (x)``).
"""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pipeline_checks import assert_exactly_once, assert_no_duplicate_updates

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

DAG_ID = "incident_processing_pipeline"
# A scenario that opens incidents (so the duplicate-update check has updates to look at). The generator of the
# (a)+(b) run produces for long after the broker fault; the streaming job starts about when it ends.
RUN_AB = {"scenario": "bad_deploy", "rate": 300, "duration": 40, "seed": 11}
RUN_D1 = {"scenario": "bad_deploy", "rate": 300, "duration": 20, "seed": 12}
RUN_D2 = {"scenario": "memory_leak", "rate": 300, "duration": 10, "seed": 13}


def say(line: str) -> None:
    print(line, flush=True)


# --- Kafka ------------------------------------------------------------------------------------------

class KafkaWatch:
    """One client kept open to read high watermarks and partition leaders quickly, whichever broker is down."""

    def __init__(self, bootstrap: str, topic: str):
        from confluent_kafka import Consumer

        from incident_contracts.kafka import QUIET

        self.topic = topic
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"fault-watch-{os.getpid()}",
                                  "enable.auto.commit": False, "socket.connection.setup.timeout.ms": 3000,
                                  **QUIET})

    def high(self, partition: int, timeout: float = 3.0) -> int | None:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            return self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=timeout,
                                                       cached=False)[1]
        except KafkaException:
            return None

    def highs(self, partitions: list[int]) -> dict[int, int | None]:
        return {p: self.high(p) for p in partitions}

    def leader(self, partition: int, timeout: float = 3.0) -> int | None:
        from confluent_kafka import KafkaException

        try:
            metadata = self.consumer.list_topics(self.topic, timeout=timeout)
        except KafkaException:
            return None
        found = metadata.topics[self.topic].partitions.get(partition)
        return None if found is None else found.leader

    def close(self) -> None:
        self.consumer.close()


def _end_offsets(cluster) -> dict[int, int]:
    from incident_contracts.kafka import end_offsets

    return end_offsets(cluster.settings.kafka_bootstrap_servers, cluster.settings.kafka_topic_logs)


# --- the streaming job's checkpoint and the Spark UIs -----------------------------------------------

def _batch_ids(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


class IngestCheckpoint:
    """The ingest query's offset log (a batch is planned) and commit log (the batch is done)."""

    def __init__(self, settings):
        self.root = settings.checkpoint_root / "incident_stream" / "ingest"

    def planned(self) -> list[int]:
        return _batch_ids(self.root / "offsets")

    def committed(self) -> list[int]:
        return _batch_ids(self.root / "commits")

    def in_flight(self) -> int | None:
        """The batch planned but not committed yet, if any."""
        planned, committed = self.planned(), self.committed()
        if planned and (not committed or planned[-1] > committed[-1]):
            return planned[-1]
        return None

    def is_committed(self, batch: int) -> bool:
        return (self.root / "commits" / str(batch)).is_file()


def _driver_api(settings, path: str) -> Any:
    from incident_stack.spark_standalone import get_json

    return get_json(f"http://127.0.0.1:{settings.spark_ui_port}/api/v1/{path}", timeout=5)


def _running_app(cluster, since: datetime) -> str | None:
    apps = [a for a in cluster.stream_apps_since(since) if a.get("state") == "RUNNING"]
    return apps[-1]["id"] if apps else None


def _worker_name(cluster, worker_ui: str) -> str:
    for index, port in enumerate(cluster.cluster.layout.worker_ui_ports, 1):
        if worker_ui.rstrip("/").endswith(f":{port}"):
            return f"spark-worker-{index}"
    raise AssertionError(f"no worker of the tier has the UI {worker_ui}")


# --- Airflow ----------------------------------------------------------------------------------------

def _tries(cluster, run_id: str) -> dict[str, tuple[str | None, int]]:
    return {t["task_id"]: (t.get("state"), int(t.get("try_number") or 0))
            for t in cluster.cluster.api().task_instances(DAG_ID, run_id)}


def _timeline(cluster, run_id: str, origin: datetime) -> dict[str, str]:
    """{task: "try N state, start..end s"} relative to `origin` (negative: before it)."""
    def rel(value: str | None) -> str:
        if not value:
            return "-"
        return f"{(datetime.fromisoformat(value.replace('Z', '+00:00')) - origin).total_seconds():.0f}"

    return {t["task_id"]: f"try {t.get('try_number')} {t.get('state')} "
                          f"{rel(t.get('start_date'))}..{rel(t.get('end_date'))} s"
            for t in cluster.cluster.api().task_instances(DAG_ID, run_id)}


def _stream_story(cluster, run_id: str, try_number: int) -> list[str]:
    """What the streaming task said about its submissions of the job in one try (from its Airflow log)."""
    marks = ("Submitting", "submitting it again", "went idle", "stopped short", "processed every record",
             "Streaming finished", "failed")
    try:
        entries = cluster.cluster.api().task_log(DAG_ID, run_id, "process_stream", try_number)
    except Exception as exc:  # the log is only for the report
        return [f"(log not readable: {exc})"]
    events = [str(e.get("event") or "") for e in entries]
    return [e.splitlines()[0][:200] for e in events if any(m in e for m in marks)]


def _failure_report(cluster, run_id: str) -> str:
    from incident_airflow.trigger import report_finished

    lines: list[str] = []
    api = cluster.cluster.api()
    report_finished(api, api.dag_run(DAG_ID, run_id), out=lines.append)
    return "\n".join(lines)


def _produced(cluster, run_id: str) -> dict[str, Any]:
    return json.loads((cluster.run_folder(run_id) / "offsets.json").read_text())


def _ranges(produced: dict[str, Any]) -> dict[int, tuple[int, int]]:
    return {int(p): (int(produced["start_offsets"].get(p, 0)), int(end))
            for p, end in produced["end_offsets"].items()}


def _wait_for(condition, timeout: float, what: str, poll: float = 0.2):
    """Poll `condition` until it returns something truthy; returns it. Fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(poll)


# --- (a) + (b) --------------------------------------------------------------------------------------

def _kill_leader_of_busiest_partition(cluster, watch: KafkaWatch, before: dict[int, int]) -> dict[str, Any]:
    """Fault (a): while the generator produces, kill -9 the leader of the partition that grew most."""
    partitions = sorted(before)
    grown = _wait_for(lambda: (lambda h: h if sum(h[p] - before[p] for p in partitions) >= 1500 else None)(
        _end_offsets(cluster)), 600, "the generator producing 1,500 records", poll=0.5)
    busiest = max(partitions, key=lambda p: grown[p] - before[p])
    layout = cluster.cluster.topic()
    victim = layout.partitions[busiest]["leader"]
    led = sorted(p for p, info in layout.partitions.items() if info["leader"] == victim)
    assert layout.under_replicated == [], layout.describe()
    at_kill = watch.highs(partitions)
    killed = cluster.kill(f"kafka-{victim}")
    t_kill = time.monotonic()
    assert killed is not None, f"kafka-{victim} was not running"
    say(f"fault (a): killed kafka-{victim} (pid {killed.pid}, kill -9) leading partitions {led}; busiest partition "
        f"{busiest} ({grown[busiest] - before[busiest]} of {sum(grown[p] - before[p] for p in partitions)} records "
        f"of the run so far); high watermarks at the kill {at_kill}")

    # The partition's new leader, then the first record it accepts (the high watermark grows again).
    t_elected = new_leader = hw_elected = t_accepted = None
    deadline = t_kill + 120
    while time.monotonic() < deadline:
        if new_leader is None:
            leader = watch.leader(busiest)
            if leader is not None and leader not in (-1, victim):
                new_leader, t_elected = leader, time.monotonic()
                hw_elected = watch.high(busiest)
        elif hw_elected is None:
            hw_elected = watch.high(busiest)
        else:
            high = watch.high(busiest)
            if high is not None and high > hw_elected:
                t_accepted = time.monotonic()
                break
        time.sleep(0.1)
    assert new_leader is not None, f"partition {busiest} had no new leader 120 s after kafka-{victim} died"
    assert t_accepted is not None, (f"partition {busiest} accepted no record under its new leader broker "
                                    f"{new_leader} within 120 s of the kill")
    during = cluster.cluster.topic()
    assert victim not in during.partitions[busiest]["isr"], during.describe()
    assert len(during.partitions[busiest]["isr"]) >= 2, during.describe()  # min.insync.replicas holds

    # Restart the broker; it catches up and rejoins the in-sync replicas of every partition.
    t_restart = time.monotonic()
    cluster.start(f"kafka-{victim}")
    t_answers = time.monotonic()
    cluster.wait_until(lambda: cluster.cluster.topic().under_replicated == [], 180,
                       f"kafka-{victim} rejoining the in-sync replicas")
    t_isr = time.monotonic()
    after = cluster.cluster.topic()
    assert all(victim in info["isr"] for info in after.partitions.values()), after.describe()
    figures = {"broker": victim, "partitions_led": led, "busiest": busiest, "new_leader": new_leader,
               "election_s": round(t_elected - t_kill, 1), "first_accepted_s": round(t_accepted - t_kill, 1),
               "down_s": round(t_restart - t_kill, 1), "restart_answers_s": round(t_answers - t_restart, 1),
               "rejoin_isr_s": round(t_isr - t_restart, 1)}
    say(f"fault (a): partition {busiest}: new leader broker {new_leader} {figures['election_s']} s after the kill, "
        f"first record accepted under it {figures['first_accepted_s']} s after the kill; kafka-{victim} restarted "
        f"after {figures['down_s']} s down, answered in {figures['restart_answers_s']} s, all partitions fully "
        f"in sync {figures['rejoin_isr_s']} s after the restart ({after.describe()})")
    return figures


def _tasks_lost_and_rerun(settings, app_id: str, executor: str) -> list[dict[str, Any]]:
    """Task attempts that failed with `executor`, each with the executor that then ran the same partition of the
    same stage successfully (None when none did), from the driver's REST API."""
    stages = _driver_api(settings, f"applications/{app_id}/stages") or []
    attempts: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for stage in stages:
        if not int(stage.get("numFailedTasks", 0)):
            continue
        for attempt in stages:
            if attempt["stageId"] == stage["stageId"] and (attempt["stageId"], attempt["attemptId"]) not in attempts:
                path = f"applications/{app_id}/stages/{attempt['stageId']}/{attempt['attemptId']}/taskList?length=10000"
                attempts[(attempt["stageId"], attempt["attemptId"])] = _driver_api(settings, path) or []
    lost = []
    for (stage_id, _), tasks in sorted(attempts.items()):
        for task in tasks:
            if task.get("executorId") != executor or task.get("status") != "FAILED":
                continue
            partition = task.get("partitionId", task.get("index"))
            rerun = [t for (sid, _), ts in attempts.items() if sid == stage_id for t in ts
                     if t.get("partitionId", t.get("index")) == partition and t.get("status") == "SUCCESS"]
            lost.append({"stage": stage_id, "partition": partition,
                         "error": (task.get("errorMessage") or "").strip().splitlines()[0][:160] or None,
                         "rerun_on": rerun[0].get("executorId") if rerun else None})
    return lost


def _kill_worker_mid_batch(cluster, since: datetime) -> dict[str, Any]:
    """Fault (b): kill -9 the Spark worker whose executor runs tasks of an in-flight micro-batch, start it again."""
    settings = cluster.settings
    checkpoint = IngestCheckpoint(settings)
    found: dict[str, Any] = {}

    def in_flight_with_tasks() -> bool:
        app = _running_app(cluster, since)
        batch = checkpoint.in_flight()
        if app is None or batch is None:
            return False
        executors = [e for e in (_driver_api(settings, f"applications/{app}/executors") or [])
                     if e.get("id") != "driver" and e.get("isActive", True)]
        busy = [e for e in executors if int(e.get("activeTasks", 0)) > 0]
        if len(executors) < 2 or not busy or checkpoint.is_committed(batch):
            return False
        target = max(busy, key=lambda e: int(e.get("activeTasks", 0)))
        placements = {str(p.executor_id): p for p in cluster.cluster.executors([app]) if not p.finished}
        if target["id"] not in placements:
            return False
        found.update(app=app, batch=batch, executor=target["id"], active=int(target["activeTasks"]),
                     worker=_worker_name(cluster, placements[target["id"]].worker_ui))
        return True

    _wait_for(in_flight_with_tasks, 600, "a micro-batch in flight with tasks on the executors of both workers",
              poll=0.1)
    app, batch, worker, lost_executor = found["app"], found["batch"], found["worker"], found["executor"]
    killed = cluster.kill(worker)
    t_kill = time.monotonic()
    assert killed is not None
    say(f"fault (b): killed {worker} (pid {killed.pid}, kill -9, with executor {lost_executor} of {app}) while "
        f"that executor ran {found['active']} tasks; ingest micro-batch {batch} planned, not committed")

    # Start the worker again at once (a supervisor restarting it); meanwhile the batch must finish without it.
    cluster.wait_until(lambda: not cluster.healthy(worker), 60, f"the master dropping {worker}")
    t_restart = time.monotonic()
    cluster.cluster.start(worker, wait=False)
    ui = cluster.cluster.layout.worker_ui(int(worker.rsplit("-", 1)[1]))
    t_done = t_registered = t_executor = None
    deadline = t_restart + 600
    while time.monotonic() < deadline and None in (t_done, t_registered, t_executor):
        now = time.monotonic()
        if t_done is None and checkpoint.is_committed(batch):
            t_done = now
            apps_at_commit = [a["id"] for a in cluster.stream_apps_since(since) if a.get("state") == "RUNNING"]
        if t_registered is None and cluster.healthy(worker):
            t_registered = now
        if t_registered is not None and t_executor is None and any(
                p.worker_ui.rstrip("/") == ui and not p.finished for p in cluster.cluster.executors([app])):
            t_executor = now
        if _running_app(cluster, since) != app and t_done is not None:
            break  # the application has ended
        time.sleep(0.2)
    assert t_done is not None, f"micro-batch {batch} did not commit within 600 s of the worker kill"
    assert apps_at_commit == [app], (f"micro-batch {batch} was not finished by the application that lost its "
                                     f"executor: running at the commit {apps_at_commit}")
    assert t_registered is not None, f"the restarted {worker} did not register with the master"
    assert t_executor is not None, (f"the master gave {app} no new executor on the restarted {worker} while the "
                                    "application ran")

    executors = {e["id"]: e for e in _driver_api(settings, f"applications/{app}/allexecutors") or []}
    lost = executors.get(lost_executor, {})
    assert lost and not lost.get("isActive", True), f"the driver still counts executor {lost_executor}: {lost}"
    rerun = _tasks_lost_and_rerun(settings, app, lost_executor)
    assert rerun, f"no task attempt failed with executor {lost_executor}: it ran none when its worker died"
    assert all(t["rerun_on"] not in (None, lost_executor) for t in rerun), rerun
    rerun_on = sorted({t["rerun_on"] for t in rerun})
    placements = {str(p.executor_id): _worker_name(cluster, p.worker_ui) for p in cluster.cluster.executors([app])}
    figures = {"worker": worker, "app": app, "batch": batch, "tasks_running_at_kill": found["active"],
               "failed_task_attempts": len(rerun), "rerun_on": {e: placements.get(e) for e in rerun_on},
               "lost_executor_reason": lost.get("removeReason"), "task_error": rerun[0]["error"],
               "batch_done_s": round(t_done - t_kill, 1), "restart_after_s": round(t_restart - t_kill, 1),
               "worker_registered_s": round(t_registered - t_kill, 1),
               "new_executor_s": round(t_executor - t_kill, 1)}
    say(f"fault (b): micro-batch {batch} committed {figures['batch_done_s']} s after the kill by the same "
        f"application; {len(rerun)} task attempts failed with executor {lost_executor} "
        f"({rerun[0]['error']!r}) and ran again on executor(s) {figures['rerun_on']}; driver's reason: "
        f"{lost.get('removeReason')!r}; {worker} started again {figures['restart_after_s']} s after the kill, "
        f"registered {figures['worker_registered_s']} s and had a new executor of {app} "
        f"{figures['new_executor_s']} s after the kill")
    return figures


# One run of 40 s with both faults, on a busy 2-core machine: several minutes.
@pytest.mark.timeout(1500)
def test_broker_leader_then_spark_worker_killed_mid_run(cluster) -> None:
    settings = cluster.settings
    topic = settings.kafka_topic_logs
    before = _end_offsets(cluster)
    data = settings.data_dir
    since = datetime.now().astimezone()
    t0 = time.monotonic()
    run_id = cluster.start_run(RUN_AB)
    say(f"fault (a)+(b): run {run_id} triggered ({RUN_AB})")
    watch = KafkaWatch(settings.kafka_bootstrap_servers, topic)
    try:
        broker = _kill_leader_of_busiest_partition(cluster, watch, before)
    finally:
        watch.close()
    worker = _kill_worker_mid_batch(cluster, since)

    run = cluster.wait_for_run(run_id, timeout=900)
    assert run["state"] == "success", _failure_report(cluster, run_id)
    say(f"fault (a)+(b): the run's tasks, seconds after the trigger: {_timeline(cluster, run_id, since)}")
    tries = _tries(cluster, run_id)
    took = time.monotonic() - t0

    # (a) The producer lost and duplicated nothing: what it counts as delivered is what Kafka holds.
    produced = _produced(cluster, run_id)
    generator, ranges = produced["generator"], _ranges(produced)
    expected = RUN_AB["rate"] * RUN_AB["duration"]
    assert generator["failed"] == 0 and generator["events_sent"] == generator["delivered"] == expected, generator
    in_kafka = {p: end - start for p, (start, end) in ranges.items()}
    assert {int(p): int(n) for p, n in generator["partitions"].items()} == {p: n for p, n in in_kafka.items() if n}, (
        f"delivered per partition {generator['partitions']} != records in Kafka {in_kafka}")
    assert {p: start for p, (start, _) in ranges.items()} == before

    # Every record once in the tables, no incident update twice (read from the files, not by reconcile).
    assert assert_exactly_once(data, topic, ranges) == expected
    updates = assert_no_duplicate_updates(data)
    assert updates > 0, "the bad_deploy scenario opened no incident"
    say(f"fault (a)+(b): run {run_id} SUCCESS in {took:.0f} s (tries: "
        f"{', '.join(f'{t} {n}' for t, (_, n) in tries.items())}); generator delivered {generator['delivered']} "
        f"of {generator['events_sent']}, failed {generator['failed']}; records in Kafka {sum(in_kafka.values())} "
        f"{in_kafka}; in events/dead_letter exactly once: {expected}; lost 0, duplicated 0; incident updates "
        f"{updates}, none twice")
    say(f"fault (a) figures: {json.dumps(broker)}")
    say(f"fault (b) figures: {json.dumps(worker)}")


# --- (d) --------------------------------------------------------------------------------------------

def _kill_everything(cluster) -> dict[str, Any]:
    """kill -9 every process group of the tier at once, then any process of the tier left outside them."""
    names = [n for n in cluster.names() if cluster.pid(n) is not None]
    groups = [cluster.kill(name) for name in names]
    time.sleep(0.5)
    strays = {pid: _command_name(pid) for pid in cluster.cluster.leftover_processes()}
    for pid in strays:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    cluster.wait_until(lambda: not cluster.cluster.leftover_processes(), 60, "every process of the tier gone")
    return {"groups": [g.name for g in groups if g is not None], "strays": sorted(strays.values())}


def _orphan_lines(cluster) -> list[str]:
    """What the restarted scheduler logged about the tasks the killed one left behind."""
    log = cluster.table.log_file("airflow-scheduler")
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    marks = ("SchedulerJob instances as failed", "orphaned TaskInstances", "heartbeat")
    found = []
    for index, line in enumerate(lines):
        if any(mark in line for mark in marks):
            found.append(" ".join(part.strip() for part in lines[index:index + 2])[:300])
    return found[-6:] or ["(nothing about orphaned tasks in its log)"]


def _command_name(pid: int) -> str:
    """A short name of a process: the program, and the script or Java main class it runs."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    main = next((a for a in args[1:] if a.endswith(".py") or (a.count(".") >= 2 and not a.startswith("-")
                                                                and "/" not in a)), "")
    return f"{Path(args[0]).name} {Path(main).name}".strip()


@pytest.mark.timeout(1800)
def test_whole_cluster_killed_mid_run_restarts_and_runs_again(cluster) -> None:
    settings = cluster.settings
    topic = settings.kafka_topic_logs
    data = settings.data_dir
    before = _end_offsets(cluster)
    checkpoint = IngestCheckpoint(settings)
    planned_before, committed_before = len(checkpoint.planned()), len(checkpoint.committed())
    since = datetime.now().astimezone()
    first = cluster.start_run(RUN_D1)
    say(f"fault (d): run {first} triggered ({RUN_D1})")

    # Mid-run: a micro-batch of the run's streaming job in flight, its tasks running on the executors.
    def mid_batch() -> bool:
        app = _running_app(cluster, since)
        if app is None or checkpoint.in_flight() is None or len(checkpoint.planned()) <= planned_before:
            return False
        executors = _driver_api(settings, f"applications/{app}/executors") or []
        return sum(int(e.get("activeTasks", 0)) for e in executors if e.get("id") != "driver") > 0

    _wait_for(mid_batch, 600, "a micro-batch of the run's streaming job in flight", poll=0.2)
    at_kill = {"records_so_far": sum(_end_offsets(cluster).values()) - sum(before.values()),
               "batches_committed": len(checkpoint.committed()) - committed_before,
               "batch_in_flight": checkpoint.in_flight(),
               "tasks": {t: s for t, (s, _) in _tries(cluster, first).items() if s}}
    killed = _kill_everything(cluster)
    t_kill, killed_at = time.monotonic(), datetime.now().astimezone()
    say(f"fault (d): killed every process of the tier (kill -9: {', '.join(killed['groups'])}; "
        f"{len(killed['strays'])} processes outside those groups: {killed['strays']}) with {at_kill}")
    assert len(killed["groups"]) == len(cluster.names())
    assert all(cluster.pid(n) is None for n in cluster.names())

    # `cluster up` (what `make cluster-up` runs) brings the whole tier back on its files.
    result = cluster.cli("up", timeout=900)
    t_up = time.monotonic()
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{cluster.log_tails()}"
    cluster.wait_until(lambda: all(cluster.healthy(n) for n in cluster.names()), 120,
                       "every process of the tier answering after `cluster up`")
    assert cluster.cluster.topic().under_replicated == [], cluster.cluster.topic().describe()

    # The interrupted run is taken up again by Airflow; it ends (success or failure), then a new run succeeds.
    second = cluster.start_run(RUN_D2)  # queued until the interrupted run ends (one run at a time)
    run = cluster.wait_for_run(first, timeout=900)
    t_first = time.monotonic()
    first_tries = _tries(cluster, first)
    say(f"fault (d): the interrupted run's tasks, seconds after the kill: {_timeline(cluster, first, killed_at)}")
    say("fault (d): the scheduler after the restart: " + " | ".join(_orphan_lines(cluster)))
    for number in range(1, first_tries["process_stream"][1] + 1):
        say(f"fault (d): process_stream try {number}: " + " | ".join(_stream_story(cluster, first, number)))
    run2 = cluster.wait_for_run(second, timeout=900)
    t_second = time.monotonic()
    say(f"fault (d): the new run's tasks, seconds after the kill: {_timeline(cluster, second, killed_at)}")
    assert run2["state"] == "success", _failure_report(cluster, second)

    # Everything produced since the first run was triggered (by the interrupted try, the retry and the new run)
    # is in the tables exactly once, and nothing produced earlier in the module was lost or doubled either.
    end = _produced(cluster, second)
    ranges = {p: (before[p], int(end["end_offsets"][str(p)])) for p in before}
    records = assert_exactly_once(data, topic, ranges)
    assert records >= RUN_D2["rate"] * RUN_D2["duration"] + at_kill["records_so_far"]
    whole = assert_exactly_once(data, topic, {p: (0, e) for p, (_, e) in ranges.items()})
    first_produced = None
    if (cluster.run_folder(first) / "offsets.json").is_file():
        first_produced = _produced(cluster, first)
        assert assert_exactly_once(data, topic, _ranges(first_produced)) == first_produced["generator"]["delivered"]
    assert assert_exactly_once(data, topic, _ranges(end)) == end["generator"]["delivered"] == \
        RUN_D2["rate"] * RUN_D2["duration"]
    updates = assert_no_duplicate_updates(data)
    assert updates > 0
    figures = {"killed_at": at_kill, "up_s": round(t_up - t_kill, 1), "interrupted_run": run["state"],
               "interrupted_run_tries": {t: n for t, (_, n) in first_tries.items()},
               "interrupted_run_done_s": round(t_first - t_kill, 1),
               "interrupted_run_delivered": first_produced and first_produced["generator"]["delivered"],
               "new_run_s": round(t_second - t_first, 1), "records_checked_since_first_run": records,
               "records_checked_whole_topic": whole, "incident_updates": updates}
    say(f"fault (d): tier up again {figures['up_s']} s after the kill; interrupted run {first} ended "
        f"{run['state'].upper()} {figures['interrupted_run_done_s']} s after the kill (tries: "
        f"{figures['interrupted_run_tries']}); new run {second} SUCCESS in {figures['new_run_s']} s; {records} records "
        f"produced since the interrupted run was triggered, {whole} in the whole topic, each in events/dead_letter "
        f"exactly once; lost 0, duplicated 0; incident updates {updates}, none twice")
    say(f"fault (d) figures: {json.dumps(figures)}")
