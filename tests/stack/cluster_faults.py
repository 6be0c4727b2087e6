"""What the cluster tier's fault tests (tests/stack/test_cluster.py) do and watch: the faults, the Kafka,
Spark and Airflow views they wait on, and the figures they print (lines starting with ``fault (x)``)."""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any

DAG_ID = "incident_processing_pipeline"


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


def topic_end_offsets(cluster) -> dict[int, int]:
    from incident_contracts.kafka import end_offsets

    return end_offsets(cluster.settings.kafka_bootstrap_servers, cluster.settings.kafka_topic_logs)


# --- the streaming job's checkpoint and the Spark UIs -----------------------------------------------

def batch_ids(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


class IngestCheckpoint:
    """The ingest query's offset log (a batch is planned) and commit log (the batch is done)."""

    def __init__(self, settings):
        self.root = settings.checkpoint_root / "incident_stream" / "logs"

    def planned(self) -> list[int]:
        return batch_ids(self.root / "offsets")

    def committed(self) -> list[int]:
        return batch_ids(self.root / "commits")

    def in_flight(self) -> int | None:
        """The batch planned but not committed yet, if any."""
        planned, committed = self.planned(), self.committed()
        if planned and (not committed or planned[-1] > committed[-1]):
            return planned[-1]
        return None

    def is_committed(self, batch: int) -> bool:
        return (self.root / "commits" / str(batch)).is_file()


def driver_api(settings, path: str) -> Any:
    from incident_stack.spark_standalone import get_json

    return get_json(f"http://127.0.0.1:{settings.spark_ui_port}/api/v1/{path}", timeout=5)


def running_app(cluster, since: datetime) -> str | None:
    apps = [a for a in cluster.stream_apps_since(since) if a.get("state") == "RUNNING"]
    return apps[-1]["id"] if apps else None


def worker_name(cluster, worker_ui: str) -> str:
    for index, port in enumerate(cluster.cluster.layout.worker_ui_ports, 1):
        if worker_ui.rstrip("/").endswith(f":{port}"):
            return f"spark-worker-{index}"
    raise AssertionError(f"no worker of the tier has the UI {worker_ui}")


# --- Airflow ----------------------------------------------------------------------------------------

def tries(cluster, run_id: str) -> dict[str, tuple[str | None, int]]:
    return {t["task_id"]: (t.get("state"), int(t.get("try_number") or 0))
            for t in cluster.cluster.api().task_instances(DAG_ID, run_id)}


def timeline(cluster, run_id: str, origin: datetime) -> dict[str, str]:
    """{task: "try N state, start..end s"} relative to `origin` (negative: before it)."""
    def rel(value: str | None) -> str:
        if not value:
            return "-"
        return f"{(datetime.fromisoformat(value.replace('Z', '+00:00')) - origin).total_seconds():.0f}"

    return {t["task_id"]: f"try {t.get('try_number')} {t.get('state')} "
                          f"{rel(t.get('start_date'))}..{rel(t.get('end_date'))} s"
            for t in cluster.cluster.api().task_instances(DAG_ID, run_id)}


def stream_story(cluster, run_id: str, try_number: int) -> list[str]:
    """What the streaming task said about its submissions of the job in one try (from its Airflow log)."""
    marks = ("Submitting", "submitting it again", "went idle", "stopped short", "processed every record",
             "Streaming finished", "failed")
    try:
        entries = cluster.cluster.api().task_log(DAG_ID, run_id, "process_stream", try_number)
    except Exception as exc:  # the log is only for the report
        return [f"(log not readable: {exc})"]
    events = [str(e.get("event") or "") for e in entries]
    return [e.splitlines()[0][:200] for e in events if any(m in e for m in marks)]


def failure_report(cluster, run_id: str) -> str:
    from incident_airflow.trigger import report_finished

    lines: list[str] = []
    api = cluster.cluster.api()
    report_finished(api, api.dag_run(DAG_ID, run_id), out=lines.append)
    return "\n".join(lines)


def produced(cluster, run_id: str) -> dict[str, Any]:
    return json.loads((cluster.run_folder(run_id) / "offsets.json").read_text())


def ranges(produced: dict[str, Any]) -> dict[int, tuple[int, int]]:
    return {int(p): (int(produced["start_offsets"].get(p, 0)), int(end))
            for p, end in produced["end_offsets"].items()}


def wait_for(condition, timeout: float, what: str, poll: float = 0.2):
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

def kill_leader_of_busiest_partition(cluster, watch: KafkaWatch, before: dict[int, int]) -> dict[str, Any]:
    """Fault (a): while the generator produces, kill -9 the leader of the partition that grew most."""
    partitions = sorted(before)
    grown = wait_for(lambda: (lambda h: h if sum(h[p] - before[p] for p in partitions) >= 1500 else None)(
        topic_end_offsets(cluster)), 600, "the generator producing 1,500 records", poll=0.5)
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


def tasks_lost_and_rerun(settings, app_id: str, executor: str) -> list[dict[str, Any]]:
    """Task attempts that failed with `executor`, each with the executor that then ran the same partition of the
    same stage successfully (None when none did), from the driver's REST API."""
    stages = driver_api(settings, f"applications/{app_id}/stages") or []
    attempts: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for stage in stages:
        if not int(stage.get("numFailedTasks", 0)):
            continue
        for attempt in stages:
            if attempt["stageId"] == stage["stageId"] and (attempt["stageId"], attempt["attemptId"]) not in attempts:
                path = f"applications/{app_id}/stages/{attempt['stageId']}/{attempt['attemptId']}/taskList?length=10000"
                attempts[(attempt["stageId"], attempt["attemptId"])] = driver_api(settings, path) or []
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


def kill_worker_mid_batch(cluster, since: datetime) -> dict[str, Any]:
    """Fault (b): kill -9 the Spark worker whose executor runs tasks of an in-flight micro-batch, start it again."""
    settings = cluster.settings
    checkpoint = IngestCheckpoint(settings)
    found: dict[str, Any] = {}

    def in_flight_with_tasks() -> bool:
        app = running_app(cluster, since)
        batch = checkpoint.in_flight()
        if app is None or batch is None:
            return False
        executors = [e for e in (driver_api(settings, f"applications/{app}/executors") or [])
                     if e.get("id") != "driver" and e.get("isActive", True)]
        busy = [e for e in executors if int(e.get("activeTasks", 0)) > 0]
        if len(executors) < 2 or not busy or checkpoint.is_committed(batch):
            return False
        target = max(busy, key=lambda e: int(e.get("activeTasks", 0)))
        placements = {str(p.executor_id): p for p in cluster.cluster.executors([app]) if not p.finished}
        if target["id"] not in placements:
            return False
        found.update(app=app, batch=batch, executor=target["id"], active=int(target["activeTasks"]),
                     worker=worker_name(cluster, placements[target["id"]].worker_ui))
        return True

    wait_for(in_flight_with_tasks, 600, "a micro-batch in flight with tasks on the executors of both workers",
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
        if running_app(cluster, since) != app and t_done is not None:
            break  # the application has ended
        time.sleep(0.2)
    assert t_done is not None, f"micro-batch {batch} did not commit within 600 s of the worker kill"
    assert apps_at_commit == [app], (f"micro-batch {batch} was not finished by the application that lost its "
                                     f"executor: running at the commit {apps_at_commit}")
    assert t_registered is not None, f"the restarted {worker} did not register with the master"
    assert t_executor is not None, (f"the master gave {app} no new executor on the restarted {worker} while the "
                                    "application ran")

    executors = {e["id"]: e for e in driver_api(settings, f"applications/{app}/allexecutors") or []}
    lost = executors.get(lost_executor, {})
    assert lost and not lost.get("isActive", True), f"the driver still counts executor {lost_executor}: {lost}"
    rerun = tasks_lost_and_rerun(settings, app, lost_executor)
    assert rerun, f"no task attempt failed with executor {lost_executor}: it ran none when its worker died"
    assert all(t["rerun_on"] not in (None, lost_executor) for t in rerun), rerun
    rerun_on = sorted({t["rerun_on"] for t in rerun})
    placements = {str(p.executor_id): worker_name(cluster, p.worker_ui) for p in cluster.cluster.executors([app])}
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


# --- (d) --------------------------------------------------------------------------------------------

def kill_everything(cluster) -> dict[str, Any]:
    """kill -9 every process group of the tier at once, then any process of the tier left outside them."""
    names = [n for n in cluster.names() if cluster.pid(n) is not None]
    groups = [cluster.kill(name) for name in names]
    time.sleep(0.5)
    strays = {pid: command_name(pid) for pid in cluster.cluster.leftover_processes()}
    for pid in strays:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    cluster.wait_until(lambda: not cluster.cluster.leftover_processes(), 60, "every process of the tier gone")
    return {"groups": [g.name for g in groups if g is not None], "strays": sorted(strays.values())}


def orphan_lines(cluster) -> list[str]:
    """What the restarted scheduler logged about the tasks the killed one left behind."""
    log = cluster.table.log_file("airflow-scheduler")
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    marks = ("SchedulerJob instances as failed", "orphaned TaskInstances", "heartbeat")
    found = []
    for index, line in enumerate(lines):
        if any(mark in line for mark in marks):
            found.append(" ".join(part.strip() for part in lines[index:index + 2])[:300])
    return found[-6:] or ["(nothing about orphaned tasks in its log)"]


def command_name(pid: int) -> str:
    """A short name of a process: the program, and the script or Java main class it runs."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    main = next((a for a in args[1:] if a.endswith(".py") or (a.count(".") >= 2 and not a.startswith("-")
                                                                and "/" not in a)), "")
    return f"{Path(args[0]).name} {Path(main).name}".strip()


