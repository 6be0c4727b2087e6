"""The cluster tier: the Spark job end to end against the embedded stack, and recovery after a kill.

    .venv/bin/python bench/cluster_bench.py [--quick] [--json OUT.json] [--events N] [--repeats N]
                                            [--recoveries N] [--no-detection]

Starts, on free ports in a temporary folder, a one-node Kafka (the embedded stack's broker) and the processes
of the cluster tier these measurements need, as `make cluster-up` starts them (incident_stack.cluster): three
Kafka nodes (topic logs.events with 6 partitions, replication factor 3, min.insync.replicas 2) and the Spark
standalone master with two workers (1 core and 1g for executors each). Airflow, PostgreSQL and the dashboard
are not started.

1. Same backlog, two deployments. The log generator (scenario mixed, fixed seed and start time: the same
   events) produces the backlog (default 300,000 events; --quick 100,000) to A, the one-node Kafka (the
   embedded topic: 2 partitions), and to B, the tier's three brokers. `incident-stream --once` (detection on,
   as deployed; --no-detection for the job without detection) runs as its own process on A with `--master
   local[2]` (the embedded stack's local[*] on 2 cores) and on B with `--master spark://...` (the driver here,
   one executor on each worker). Runs alternate (A B, then B A, ...), each from a fresh checkpoint and
   data folder. Figures per run: records / the job's own elapsed time (from the job's JSON summary: queries
   started to stopped, without the JVM and session start), records / the process's wall time (with them),
   records / time in micro-batches, CPU per event of the Spark processes and of Kafka (process trees sampled
   every 0.5 s). Every run must land every record: events + dead_letter = backlog, each offset exactly once
   (read from the Parquet files by tests/pipeline_checks.py). The table shows B/A.
2. Broker kill: a producer (idempotent, acks=all) writes continuously to partition 0 of a topic laid out
   like logs.events; `kill -9` of the broker leading that partition; time from the kill to the first record
   acknowledged by the new leader, and to the new leader showing in the metadata. The broker is restarted
   and back in every in-sync replica set before the next repeat. Median of 3 (--quick: 1).
3. Worker kill: the job runs continuously on the tier (2 s trigger, detection on) while the log generator
   produces in real time; `kill -9` of one worker's process group (the worker, its executor and the
   executor's Python workers) while an ingest micro-batch is in flight (planned in the checkpoint's offset
   log, not in its commit log) and that worker's executor runs tasks (the driver's REST API); time from the
   kill to that batch's commit, then the worker is restarted and gets a new executor before the next repeat.
   Median of 3 (--quick: 1). Afterwards every record produced during the repeats is in the tables exactly once.

There are no targets for these figures: every row is "info". The load average is printed and saved with
the results. Exit status 0 when the measurements completed and every record landed exactly once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))  # pipeline_checks: the exactly-once check the fault tests use

import psutil  # noqa: E402
from measure import PeakMemory  # noqa: E402
from report import Metric, emit, median_metric  # noqa: E402

from incident_stack.cluster import tier_env  # noqa: E402

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
TOPIC = "logs.events"
FAILOVER_TOPIC = "bench.failover"
RECOVERY_TOPIC = "bench.recovery"
SEED = 7
BACKLOG_RATE = 5000  # events per second of event time in the backlog (how dense the simulated traffic is)
LIVE_RATE = 500  # events per second produced in real time while workers are killed (the tier keeps up)
FAILOVER_RATE = 1000  # records per second to the partition whose leader is killed
SILENCE_S = 1.0  # a silence this long after a broker kill separates the old leader's acks from the new one's
TIER = ["kafka-1", "kafka-2", "kafka-3", "spark-master", "spark-worker-1", "spark-worker-2"]
JOB_TIMEOUT = 1200
# Settings a child must not inherit from this process's environment: each deployment gets its own.
FOREIGN_ENV = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME", "KAFKA_", "SPARK_", "CLUSTER_", "DATA_DIR",
               "RUNTIME_DIR", "CHECKPOINT_DIR", "PYSPARK_")


def say(line: str) -> None:
    print(line, flush=True)


# --- pure helpers (tests/bench/test_cluster_bench.py) ---------------------------------------------

def job_rates(summary: dict[str, Any], wall_s: float, backlog: int) -> dict[str, float]:
    """Rates of one `incident-stream --once` run from its JSON summary and the process's wall time.

    job: records / the job's elapsed time (queries started to stopped; no JVM or session start);
    wall: records / the process's whole life; busy: the summary's records / time in micro-batches."""
    elapsed = float(summary.get("elapsed_s") or 0.0)
    landed = int(summary.get("events_written", 0)) + int(summary.get("dead_letter_written", 0))
    return {"landed": landed, "missing": backlog - landed, "elapsed_s": elapsed, "wall_s": wall_s,
            "startup_s": max(0.0, wall_s - elapsed),
            "job_rate": backlog / elapsed if elapsed > 0 else 0.0,
            "wall_rate": backlog / wall_s if wall_s > 0 else 0.0,
            "busy_rate": float(summary.get("rows_per_second") or 0.0)}


def alternating(repeats: int) -> list[str]:
    """Run order of the two deployments: A B, B A, A B, ... (each pair starts with the other one)."""
    order: list[str] = []
    for i in range(repeats):
        order += ["A", "B"] if i % 2 == 0 else ["B", "A"]
    return order


def paired_ratios(b: Sequence[float], a: Sequence[float]) -> list[float]:
    """B/A per repeat (the two runs of a repeat ran back to back)."""
    return [x / y for x, y in zip(b, a, strict=True) if y]


def first_new_leader_ack(acks: Sequence[float], killed_at: float, leader_seen_at: float | None,
                         silence: float = SILENCE_S) -> float | None:
    """When the first record acknowledged by a partition's new leader was reported, or None if none was.

    `acks`: times of successful delivery reports for that partition. Reports that arrive just after the
    kill, before any silence, were in flight from the old leader (acknowledged before it died). The new
    leader's first acknowledgement is the first report that follows a silence of at least `silence`
    seconds after the kill, or the first report once the new leader showed in the metadata
    (`leader_seen_at`), whichever comes first.
    """
    ordered = sorted(acks)
    candidates = []
    previous = max([t for t in ordered if t <= killed_at], default=killed_at)
    for t in ordered:
        if t <= killed_at:
            continue
        if t - max(previous, killed_at) >= silence:
            candidates.append(t)
            break
        previous = t
    if leader_seen_at is not None:
        after = [t for t in ordered if t >= leader_seen_at]
        if after:
            candidates.append(after[0])
    return min(candidates) if candidates else None


def batch_ids(names: Iterable[str]) -> list[int]:
    """Batch ids among the file names of a checkpoint's offsets/ or commits/ folder."""
    return sorted(int(n) for n in names if n.isdigit())


def in_flight(planned: Sequence[int], committed: Sequence[int]) -> int | None:
    """The micro-batch planned (offset log) but not committed yet, if any."""
    if planned and (not committed or max(planned) > max(committed)):
        return max(planned)
    return None


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def batch_durations(rows: Iterable[tuple[str, int, int]], query: str, killed: Iterable[int],
                    skip_first: int = 1) -> tuple[list[float], dict[int, float]]:
    """Seconds per micro-batch of `query` from (query name, batch id, duration ms) rows of the metrics
    table: those of batches without a kill (the first `skip_first` left out: they read what piled up while
    the job started) and {batch id: seconds} of the batches a kill hit. A batch reported twice (a
    progress report repeated at stop) counts once."""
    hit = set(killed)
    seen: dict[int, float] = {}
    for name, batch, ms in rows:
        if name == query and batch >= 0:
            seen[batch] = ms / 1000
    ordered = sorted(seen)
    calm = [seen[b] for b in ordered[skip_first:] if b not in hit]
    return calm, {b: seen[b] for b in ordered if b in hit}


# --- processes: CPU and memory of process trees -------------------------------------------------------

def tree(pid: int | None, include_root: bool = True) -> list[int]:
    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        children = [c.pid for c in root.children(recursive=True)]
    except psutil.Error:
        return []
    return [pid, *children] if include_root else children


@dataclass
class Window:
    start: dict[tuple[str, int, float], float]
    peak_mb: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)


class Usage:
    """CPU seconds and peak resident memory (measure.PeakMemory) of groups of processes, sampled every
    `interval` seconds.

    A process that ends between two samples keeps the CPU time of its last sample (Spark's executors end
    with their application), so what it used in its last interval is not counted."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], interval: float = 0.5):
        self.groups = groups
        self.cpu: dict[tuple[str, int, float], float] = {}
        self.memory = PeakMemory(groups, interval=interval)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="usage")
        self.interval = interval

    def sample(self) -> None:
        with self.lock:
            pid_groups = {group: list(pids()) for group, pids in self.groups.items()}
            for group, pids in pid_groups.items():
                for pid in pids:
                    try:
                        process = psutil.Process(pid)
                        times = process.cpu_times()
                        key = (group, pid, process.create_time())
                    except psutil.Error:
                        continue
                    self.cpu[key] = times.user + times.system
            self.memory.sample(pid_groups)

    def open(self) -> Window:
        self.sample()
        with self.lock:
            window = Window(start=dict(self.cpu), peak_mb=self.memory.open_window())
        return window

    def close(self, window: Window) -> Window:
        self.sample()
        with self.lock:
            self.memory.close_window(window.peak_mb)
            for group in self.groups:
                window.cpu_s[group] = sum(v - window.start.get(k, 0.0) for k, v in self.cpu.items() if k[0] == group)
        return window

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> Usage:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the deployments -------------------------------------------------------------------------------

def child_env(settings: Any, **extra: str) -> dict[str, str]:
    """This process's environment without settings of its own, plus `settings` as variables (as the stack
    passes them to its processes) and what the Spark driver needs."""
    from incident_stack.services import settings_env

    keep = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}
    return {**keep, **settings_env(settings), "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": HOST,
            "PATH": str(BIN) + os.pathsep + os.environ.get("PATH", ""),
            "ENV_FILE": str(Path(settings.runtime_dir) / "none.env"), **extra}


def load_tier(env: dict[str, str]) -> Any:
    from incident_contracts.settings import Settings
    from incident_stack.cluster import Cluster

    values = {k.lower(): v for k, v in env.items() if k != "ENV_FILE"}
    base = Settings(_env_file=None, **values).resolved()  # type: ignore[call-arg]
    return Cluster(base, out=lambda line: say(f"  tier:{line}"))


def generate(settings: Any, topic: str, work: Path, *args: str, wait: bool = True,
             log_name: str = "generator") -> subprocess.Popen[str] | dict[str, Any]:
    """The log-generator command against `settings`' Kafka; its JSON summary, or the process when not `wait`."""
    command = [str(BIN / "log-generator"), "--bootstrap-servers", settings.kafka_bootstrap_servers,
               "--topic", topic, "--no-create-topic", "--data-dir", str(work / "generator"), "--json", "-q", *args]
    out = open(work / f"{log_name}.out", "w")  # noqa: SIM115 (the child writes it; closed with the process)
    err = open(work / f"{log_name}.err", "w")  # noqa: SIM115
    process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=child_env(settings), cwd=work,
                               start_new_session=True)
    if not wait:
        return process
    code = process.wait(timeout=900)
    return generator_summary(work, log_name, code)


def generator_summary(work: Path, log_name: str, code: int | None) -> dict[str, Any]:
    """The generator's JSON summary; exit status 1 is expected of a run stopped by SIGTERM that delivered
    everything it sent."""
    text = (work / f"{log_name}.out").read_text()
    start = text.find("{")
    summary = json.loads(text[start:]) if start >= 0 else None
    stopped_clean = (code == 1 and summary is not None and summary.get("interrupted") and summary["failed"] == 0
                     and summary["delivered"] == summary["events_sent"])
    if summary is None or (code != 0 and not stopped_clean):
        raise RuntimeError(f"log-generator exited with {code}: {text[-2000:]}\n"
                           f"{(work / f'{log_name}.err').read_text()[-2000:]}")
    return summary


@dataclass
class Deployment:
    label: str
    what: str
    settings: Any
    master: str
    kafka_pids: Callable[[], list[int]]


def run_job(deployment: Deployment, work: Path, usage: Usage, job_pid: list[int | None], *, once: bool = True,
            detection: bool = True, topic: str = TOPIC, stop_when: Callable[[], bool] | None = None,
            wait: bool = True) -> Any:
    """`incident-stream` as its own process; returns (summary, wall seconds, usage window) or the process."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    settings = deployment.settings.model_copy(update={"kafka_topic_logs": topic, "data_dir": work / "data"})
    command = [str(BIN / "incident-stream"), "--master", deployment.master, "--data-dir", str(work / "data"),
               "--checkpoint", str(work / "checkpoint"), *(["--once"] if once else []),
               *([] if detection else ["--no-detection"])]
    out = open(work / "job.out", "w")  # noqa: SIM115
    err = open(work / "job.err", "w")  # noqa: SIM115
    window = usage.open()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=child_env(settings), cwd=work,
                               start_new_session=True)
    job_pid[0] = process.pid
    if not wait:
        return process, started, window
    try:
        code = process.wait(timeout=JOB_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise RuntimeError(f"{deployment.label}: the job did not finish within {JOB_TIMEOUT}s; see {work}") from None
    wall = time.perf_counter() - started
    job_pid[0] = None
    usage.close(window)
    return job_summary(work, code), wall, window


def job_summary(work: Path, code: int | None) -> dict[str, Any]:
    lines = (work / "job.out").read_text().strip().splitlines()
    summary = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    if code != 0 or summary is None or summary.get("status") != "finished":
        tail = "\n".join((work / "job.err").read_text().splitlines()[-40:])
        raise RuntimeError(f"incident-stream exited with {code}: {lines[-1:] if lines else ''}\n{tail}")
    return summary


def exactly_once(data_dir: Path, topic: str, ranges: dict[int, tuple[int, int]]) -> int:
    from pipeline_checks import assert_exactly_once

    return assert_exactly_once(data_dir, topic, ranges)


def throughput(deployments: dict[str, Deployment], work: Path, usage: Usage, job_pid: list[int | None],
               count: int, repeats: int, detection: bool) -> dict[str, list[dict[str, Any]]]:
    from incident_contracts.kafka import end_offsets

    ranges = {label: {p: (0, end) for p, end in end_offsets(d.settings.kafka_bootstrap_servers, TOPIC).items()}
              for label, d in deployments.items()}
    results: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    for i, label in enumerate(alternating(repeats)):
        deployment = deployments[label]
        folder = work / f"run{i}-{label}"
        summary, wall, window = run_job(deployment, folder, usage, job_pid, detection=detection)
        rates = job_rates(summary, wall, count)
        checked = exactly_once(folder / "data", TOPIC, ranges[label])
        # Local mode runs everything in the driver's process tree; on the tier the executors run under the
        # workers, and the master and worker daemons are part of the deployment too.
        spark_groups = ["spark driver"] if label == "A" else ["spark driver", "spark executors", "spark daemons"]
        spark_cpu = sum(window.cpu_s.get(g, 0.0) for g in spark_groups)
        figures = {**rates, "checked_exactly_once": checked, "events": summary["events_written"],
                   "dead_letter": summary["dead_letter_written"],
                   "incident_updates": summary["incident_updates_written"], "batches": summary["batches"],
                   "spark_cpu_us": spark_cpu / count * 1e6,
                   "kafka_cpu_us": window.cpu_s.get(f"kafka {label}", 0) / count * 1e6,
                   "cpu_s": {g: round(v, 1) for g, v in window.cpu_s.items()},
                   "peak_mb": {g: round(v) for g, v in window.peak_mb.items()},
                   "load": os.getloadavg()[0]}
        if rates["missing"] != 0:
            raise RuntimeError(f"{label}: events + dead_letter = {rates['landed']:,}, backlog {count:,}")
        results[label].append(figures)
        say(f"{label} ({deployment.what}) run {len(results[label])}: {rates['job_rate']:,.0f} ev/s in the job "
            f"({rates['elapsed_s']:.1f} s), {rates['wall_rate']:,.0f} ev/s with process start "
            f"({rates['wall_s']:.1f} s, {rates['startup_s']:.1f} s before/after the queries), "
            f"{rates['busy_rate']:,.0f} ev/s in micro-batches; events {summary['events_written']:,} + dead letters "
            f"{summary['dead_letter_written']:,} = {rates['landed']:,} (each offset once: {checked:,}); Spark CPU "
            f"{figures['spark_cpu_us']:.1f} us/event, Kafka {figures['kafka_cpu_us']:.1f} us/event; "
            f"CPU s {figures['cpu_s']}; peak MB {figures['peak_mb']}; load {figures['load']:.1f}")
    return results


# --- broker kill ---------------------------------------------------------------------------------------

class PartitionProducer(threading.Thread):
    """Produces `rate` records per second to one partition (idempotent, acks=all) and records when each
    delivery report arrives."""

    def __init__(self, bootstrap: str, topic: str, partition: int, rate: int, value: bytes):
        super().__init__(daemon=True, name="failover-producer")
        from confluent_kafka import Producer

        from incident_contracts.kafka import QUIET

        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 5, "delivery.timeout.ms": 300_000, **QUIET})
        self.topic, self.partition, self.rate, self.value = topic, partition, rate, value
        self.acks: list[float] = []
        self.offsets: list[int] = []
        self.errors: list[str] = []
        self.sent = 0
        self.stopping = threading.Event()
        self.unflushed = 0

    def _report(self, err: Any, msg: Any) -> None:
        now = time.monotonic()
        if err is not None:
            self.errors.append(str(err))
        else:
            self.acks.append(now)
            self.offsets.append(msg.offset())

    def run(self) -> None:
        tick = 0.01
        per_tick = max(1, round(self.rate * tick))
        due = time.monotonic()
        while not self.stopping.is_set():
            for _ in range(per_tick):
                while True:
                    try:
                        self.producer.produce(self.topic, self.value, partition=self.partition,
                                              on_delivery=self._report)
                        self.sent += 1
                        break
                    except BufferError:
                        self.producer.poll(0.01)
            due += tick
            while (left := due - time.monotonic()) > 0:
                self.producer.poll(min(left, 0.002))
            self.producer.poll(0)
        self.unflushed = self.producer.flush(120)

    def last_ack(self) -> float | None:
        return self.acks[-1] if self.acks else None


def leader_of(bootstrap: str, topic: str, partition: int, admin: Any) -> int | None:
    try:
        metadata = admin.list_topics(topic, timeout=2)
    except Exception:
        return None
    found = metadata.topics.get(topic)
    info = found.partitions.get(partition) if found is not None else None
    return None if info is None else info.leader


def broker_failover(tier: Any, repeats: int) -> list[dict[str, Any]]:
    from incident_contracts.codec import default_codec
    from incident_contracts.kafka import TopicSpec, admin_client, end_offsets, ensure_topics
    from incident_stack.cluster import topic_layout
    from log_generator.api import generate as generate_events

    s = tier.settings
    bootstrap = s.kafka_bootstrap_servers
    spec = tier.topic_spec()
    ensure_topics(bootstrap, [TopicSpec(FAILOVER_TOPIC, spec.partitions, spec.replication_factor, spec.configs)])
    partition = 0
    events, _ = generate_events("none", rate=1000, count=1, seed=SEED)
    value = default_codec("", FAILOVER_TOPIC).encode(next(iter(events)))
    admin = admin_client(bootstrap)
    start = end_offsets(bootstrap, FAILOVER_TOPIC, [partition])[partition]
    producer = PartitionProducer(bootstrap, FAILOVER_TOPIC, partition, FAILOVER_RATE, value)
    producer.start()
    samples: list[dict[str, Any]] = []
    try:
        for i in range(repeats):
            tier.wait_until(lambda: topic_layout(bootstrap, FAILOVER_TOPIC).under_replicated == [], 180,
                            f"{FAILOVER_TOPIC} fully in sync")
            tier.wait_until(lambda: (producer.last_ack() or 0) > time.monotonic() - 0.5 and not producer.errors, 60,
                            "the producer's records acknowledged")
            time.sleep(2.0)
            victim = topic_layout(bootstrap, FAILOVER_TOPIC).partitions[partition]["leader"]
            acked_before = len(producer.acks)
            killed = tier.kill(f"kafka-{victim}")
            killed_at = time.monotonic()
            assert killed is not None, f"kafka-{victim} was not running"
            seen_at = new_leader = None
            deadline = killed_at + 180
            first = None
            while time.monotonic() < deadline:
                if seen_at is None:
                    leader = leader_of(bootstrap, FAILOVER_TOPIC, partition, admin)
                    if leader is not None and leader not in (-1, victim):
                        seen_at, new_leader = time.monotonic(), leader
                first = first_new_leader_ack(producer.acks, killed_at, seen_at)
                if first is not None and seen_at is not None:
                    break
                time.sleep(0.05)
            if first is None:
                raise RuntimeError(f"no record acknowledged on partition {partition} within 180 s of killing "
                                   f"kafka-{victim} (errors: {producer.errors[:3]})")
            in_flight_acks = sum(1 for t in producer.acks[acked_before:] if killed_at < t < first)
            restart_at = time.monotonic()
            tier.start(f"kafka-{victim}")
            answered_at = time.monotonic()
            tier.wait_until(lambda v=victim: all(v in info["isr"] for info in
                                                 topic_layout(bootstrap, FAILOVER_TOPIC).partitions.values())
                            and topic_layout(bootstrap, TOPIC).under_replicated == [], 300,
                            f"kafka-{victim} back in every in-sync replica set")
            sample = {"broker": victim, "new_leader": new_leader, "first_ack_s": first - killed_at,
                      "leader_seen_s": (seen_at - killed_at) if seen_at else None,
                      "acks_in_flight_after_kill": in_flight_acks, "down_s": restart_at - killed_at,
                      "restart_answers_s": answered_at - restart_at,
                      "back_in_sync_s": time.monotonic() - restart_at, "load": os.getloadavg()[0]}
            samples.append(sample)
            say(f"broker kill {i + 1}/{repeats}: kafka-{victim} (leader of partition {partition}) killed; first "
                f"record acknowledged by the new leader (broker {new_leader}) {sample['first_ack_s']:.2f} s after "
                f"the kill; new leader in the metadata after {sample['leader_seen_s']:.2f} s; "
                f"{in_flight_acks} acks from the old leader reported after the kill; restarted broker answered in "
                f"{sample['restart_answers_s']:.1f} s, back in sync {sample['back_in_sync_s']:.1f} s after the "
                f"restart; load {sample['load']:.1f}")
    finally:
        producer.stopping.set()
        producer.join(timeout=180)
    end = end_offsets(bootstrap, FAILOVER_TOPIC, [partition])[partition]
    delivered = len(producer.acks)
    duplicated = len(producer.offsets) - len(set(producer.offsets))
    say(f"broker kill: {producer.sent:,} records sent, {delivered:,} acknowledged, {len(producer.errors)} failed, "
        f"{producer.unflushed} unflushed; the partition grew by {end - start:,} records; {duplicated} offsets "
        "acknowledged twice")
    if producer.errors or producer.unflushed or delivered != producer.sent or end - start != delivered or duplicated:
        raise RuntimeError(f"broker kill: sent {producer.sent}, acknowledged {delivered}, failed "
                           f"{producer.errors[:3]}, partition grew by {end - start}, {duplicated} duplicated offsets")
    for sample in samples:
        sample["records_checked"] = delivered
    return samples


# --- worker kill ---------------------------------------------------------------------------------------

class Checkpoint:
    def __init__(self, folder: Path):
        self.root = folder

    def _ids(self, name: str) -> list[int]:
        folder = self.root / name
        return batch_ids(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def planned(self) -> list[int]:
        return self._ids("offsets")

    def committed(self) -> list[int]:
        return self._ids("commits")

    def in_flight(self) -> int | None:
        return in_flight(self.planned(), self.committed())

    def commit_time(self, batch: int) -> float | None:
        """When the batch's commit file was written (epoch seconds), or None."""
        try:
            return (self.root / "commits" / str(batch)).stat().st_mtime
        except OSError:
            return None


def driver_api(ui_port: int, path: str) -> Any:
    from incident_stack.spark_standalone import get_json

    return get_json(f"http://{HOST}:{ui_port}/api/v1/{path}", timeout=3)


def worker_kill(tier: Any, deployment: Deployment, work: Path, usage: Usage, job_pid: list[int | None],
                repeats: int, detection: bool) -> list[dict[str, Any]]:
    from incident_contracts.kafka import TopicSpec, end_offsets, ensure_topics
    from incident_stream.job import LOGS

    s = tier.settings
    bootstrap = s.kafka_bootstrap_servers
    spec = tier.topic_spec()
    ensure_topics(bootstrap, [TopicSpec(RECOVERY_TOPIC, spec.partitions, spec.replication_factor, spec.configs)])
    ui_port = s.spark_ui_port
    worker_uis = {f"spark-worker-{i}": tier.layout.worker_ui(i) for i in range(1, tier.layout.workers + 1)}
    folder = work / "worker-kill"
    generator = generate(s, RECOVERY_TOPIC, work, "--scenario", "mixed", "--rate", str(LIVE_RATE), "--seed",
                         str(SEED), wait=False, log_name="live-generator")
    job, _, window = run_job(deployment, folder, usage, job_pid, once=False, detection=detection,
                             topic=RECOVERY_TOPIC, wait=False)
    checkpoint = Checkpoint(folder / "checkpoint" / LOGS)
    samples: list[dict[str, Any]] = []

    def app_id() -> str | None:
        apps = driver_api(ui_port, "applications") or []
        return apps[0]["id"] if apps else None

    def executors(app: str) -> list[dict[str, Any]]:
        return [e for e in (driver_api(ui_port, f"applications/{app}/executors") or [])
                if e.get("id") != "driver" and e.get("isActive", True)]

    def worker_of(app: str, executor: str) -> str | None:
        for placement in tier.executors([app]):
            if str(placement.executor_id) == executor and not placement.finished:
                for name, ui in worker_uis.items():
                    if placement.worker_ui.rstrip("/") == ui:
                        return name
        return None

    def failed_tasks(app: str) -> int:
        return sum(int(stage.get("numFailedTasks", 0)) for stage in driver_api(ui_port, f"applications/{app}/stages")
                   or [])

    def wait_for(condition: Callable[[], Any], timeout: float, what: str, poll: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            if job.poll() is not None:
                raise RuntimeError(f"the job exited ({job.returncode}) while waiting for {what}: "
                                   f"{(folder / 'job.err').read_text()[-3000:]}")
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
            time.sleep(poll)

    try:
        app = wait_for(app_id, 300, "the job's Spark application", poll=1.0)
        wait_for(lambda: len(executors(app)) >= 2 and len(checkpoint.committed()) >= 3, 600,
                 "two executors and three committed micro-batches", poll=1.0)
        # The records produced from here on are checked afterwards (the generator keeps producing).
        start = end_offsets(bootstrap, RECOVERY_TOPIC)
        found: dict[str, Any] = {}

        def target() -> bool:
            found.clear()
            batch = checkpoint.in_flight()
            if batch is None:
                return False
            active = executors(app)
            busy = [e for e in active if int(e.get("activeTasks", 0)) > 0]
            if len(active) < 2 or not busy or checkpoint.commit_time(batch) is not None:
                return False
            chosen = max(busy, key=lambda e: int(e.get("activeTasks", 0)))
            worker = worker_of(app, chosen["id"])
            if worker is None or checkpoint.commit_time(batch) is not None:
                return False
            found.update(batch=batch, executor=chosen["id"], tasks=int(chosen["activeTasks"]), worker=worker,
                         failed_before=failed_tasks(app))
            return True

        for i in range(repeats):
            wait_for(target, 600, "a micro-batch in flight with tasks on an executor", poll=0.05)
            batch, worker = found["batch"], found["worker"]
            killed = tier.kill(worker)
            killed_at, killed_wall = time.monotonic(), time.time()
            assert killed is not None, f"{worker} was not running"
            wait_for(lambda b=batch: checkpoint.commit_time(b) is not None, 900, f"micro-batch {batch} committed",
                     poll=0.05)
            done = time.monotonic()
            committed_wall = checkpoint.commit_time(batch) or time.time()
            failed = failed_tasks(app) - found["failed_before"]
            restart_at = time.monotonic()
            tier.start(worker)
            registered = time.monotonic()
            ui = worker_uis[worker]
            lost = found["executor"]
            wait_for(lambda u=ui, x=lost: any(p.worker_ui.rstrip("/") == u and not p.finished
                                              and str(p.executor_id) != x for p in tier.executors([app])),
                     300, f"a new executor on {worker}", poll=0.5)
            new_executor = time.monotonic()
            # Back to the steady state before the next repeat: both executors and a batch committed since.
            after = max(checkpoint.committed(), default=batch)
            wait_for(lambda a=after: len(executors(app)) >= 2 and max(checkpoint.committed(), default=-1) > a, 300,
                     "a micro-batch committed with both executors", poll=0.5)
            sample = {"worker": worker, "batch": batch, "executor": lost, "tasks_at_kill": found["tasks"],
                      "failed_task_attempts": failed, "batch_done_s": done - killed_at,
                      "batch_done_file_s": committed_wall - killed_wall,
                      "restart_registered_s": registered - restart_at,
                      "new_executor_s": new_executor - restart_at, "load": os.getloadavg()[0]}
            samples.append(sample)
            say(f"worker kill {i + 1}/{repeats}: {worker} killed (with executor {lost}, {found['tasks']} tasks "
                f"running) during micro-batch {batch}; the batch committed {sample['batch_done_s']:.1f} s after the "
                f"kill ({failed} task attempts failed); restarted worker registered in "
                f"{sample['restart_registered_s']:.1f} s, new executor {sample['new_executor_s']:.1f} s after the "
                f"restart; load {sample['load']:.1f}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(generator.pid, signal.SIGTERM)
        code = generator.wait(timeout=120)
    produced = generator_summary(work, "live-generator", code)
    end = end_offsets(bootstrap, RECOVERY_TOPIC)
    # Let the job read everything produced, then stop it (SIGTERM: after the running micro-batch).
    from incident_stream.job import LOGS, checkpoint_end_offsets

    deadline = time.monotonic() + 600
    while True:
        done_to = checkpoint_end_offsets(folder / "checkpoint" / LOGS) or {}
        if all(int(done_to.get(str(p), 0)) >= e for p, e in end.items()):
            break
        if time.monotonic() > deadline or job.poll() is not None:
            raise RuntimeError(f"the job did not reach the end offsets {end} (at {done_to})")
        time.sleep(1.0)
    os.kill(job.pid, signal.SIGTERM)  # the driver's Python process: it stops the queries, then Spark
    code = job.wait(timeout=300)
    job_pid[0] = None
    usage.close(window)
    summary = job_summary(folder, code)
    calm, hit = batch_durations(metrics_rows(folder / "data"), LOGS, [x["batch"] for x in samples])
    for sample in samples:
        sample["batch_duration_s"] = hit.get(sample["batch"])
    ranges = {p: (start[p], end[p]) for p in end}
    checked = exactly_once(folder / "data", RECOVERY_TOPIC, ranges)
    whole = exactly_once(folder / "data", RECOVERY_TOPIC, {p: (0, e) for p, e in end.items()})
    say(f"worker kill: generator delivered {produced['delivered']:,} of {produced['events_sent']:,} "
        f"({produced['failed']} failed); the job wrote {summary['events_written']:,} events + "
        f"{summary['dead_letter_written']:,} dead letters over {summary['batches']} batches; {checked:,} records "
        f"produced during the kills and {whole:,} in the whole topic each in the tables exactly once; ingest "
        f"micro-batches without a kill took {median(calm) or 0:.1f} s (median of {len(calm)}), those hit "
        f"{', '.join(f'{v:.1f}' for v in hit.values())} s")
    for sample in samples:
        sample.update(records_checked=checked, records_whole_topic=whole, calm_batches_s=calm)
    return samples


def metrics_rows(data_dir: Path) -> list[tuple[str, int, int]]:
    """(query name, batch id, duration ms) of every row of the job's metrics table (its latest version)."""
    from incident_contracts.table_store import TableStore

    table = TableStore(str(data_dir)).read("metrics", ["query_name", "batch_id", "batch_duration_ms"]).to_pydict()
    return list(zip(table["query_name"], table["batch_id"], table["batch_duration_ms"], strict=True))


# --- main ---------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 events, one run each, one kill each")
    parser.add_argument("--json", default=None, help="write the results as JSON here")
    parser.add_argument("--events", type=int, default=None, help="backlog size (default 300,000; quick 100,000)")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each deployment (default 2; quick 1)")
    parser.add_argument("--recoveries", type=int, default=None, help="kills of each kind (default 3; quick 1)")
    parser.add_argument("--no-detection", action="store_true", help="run the job without detection")
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "broker", "worker"],
                        help="parts not to run")
    args = parser.parse_args()
    count = args.events or (100_000 if args.quick else 300_000)
    repeats = args.repeats or (1 if args.quick else 2)
    recoveries = args.recoveries or (1 if args.quick else 3)
    detection = not args.no_detection
    load_start = os.getloadavg()
    say(f"load average at start: {load_start[0]:.1f} {load_start[1]:.1f} {load_start[2]:.1f} "
        f"({os.cpu_count()} cores)")

    from incident_contracts.kafka import TopicSpec, end_offsets, ensure_topics, wait_for_broker
    from incident_contracts.settings import Settings
    from incident_stack.broker import free_port, start_broker

    work = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    work.chmod(0o711)
    env = tier_env(work / "tier", free_port)
    tier = load_tier(env)
    broker = None
    usage = None
    job_pid: list[int | None] = [None]
    try:
        # A: the embedded stack's one Kafka node and its topic (2 partitions).
        port = free_port()
        broker = start_broker(HOST, port, work / "embedded" / "broker.log")
        embedded = Settings(_env_file=None, kafka_bootstrap_servers=f"{HOST}:{port}",  # type: ignore[call-arg]
                            data_dir=work / "embedded" / "data", runtime_dir=work / "embedded" / "runtime",
                            spark_ui_port=free_port(), kafka_topic_logs=TOPIC).resolved()
        started = time.monotonic()
        tier.up(TIER)  # B: three Kafka nodes (and the topic), the Spark master and two workers
        up_s = time.monotonic() - started
        wait_for_broker(embedded.kafka_bootstrap_servers, timeout=60)
        ensure_topics(embedded.kafka_bootstrap_servers, [TopicSpec(TOPIC, embedded.kafka_topic_partitions)])
        say(f"tier up in {up_s:.0f} s: {tier.topic().describe()}")
        deployments = {
            "A": Deployment("A", "embedded: 1 Kafka node, local[2]", embedded, "local[2]", lambda: tree(broker.pid)),
            "B": Deployment("B", "cluster tier: 3 Kafka nodes, standalone master + 2 workers", tier.settings,
                            tier.settings.spark_master,
                            lambda: [p for n in TIER[:3] for p in tree(tier.pid(n))]),
        }
        usage = Usage({
            "spark driver": lambda: tree(job_pid[0]),
            "spark executors": lambda: [p for n in TIER[4:] for p in tree(tier.pid(n), include_root=False)],
            "spark daemons": lambda: [p for n in TIER[3:] if (p := tier.pid(n))],
            "kafka A": deployments["A"].kafka_pids,
            "kafka B": deployments["B"].kafka_pids,
        })
        usage.__enter__()

        metrics: list[Metric] = []
        context: dict[str, Any] = {"events": count, "repeats": repeats, "recoveries": recoveries,
                                   "detection": detection, "cores": os.cpu_count(), "tier_up_s": round(up_s, 1)}
        if "throughput" not in args.skip:
            start_iso = (datetime.now(UTC) - timedelta(seconds=count / BACKLOG_RATE)).strftime("%Y-%m-%dT%H:%M:%SZ")
            backlog_args = ["--scenario", "mixed", "--count", str(count), "--rate", str(BACKLOG_RATE), "--seed",
                            str(SEED), "--start", start_iso, "--speedup", "max"]
            for label, d in deployments.items():
                produced = generate(d.settings, TOPIC, work, *backlog_args, log_name=f"backlog-{label}")
                held = sum(end_offsets(d.settings.kafka_bootstrap_servers, TOPIC).values())
                say(f"backlog {label}: {produced['delivered']:,} of {count:,} events delivered in "
                    f"{produced['duration_s']:.1f} s, partitions {produced['partitions']}; the topic holds {held:,}")
                if produced["delivered"] != count or held != count:
                    raise RuntimeError(f"backlog {label}: delivered {produced['delivered']}, topic holds {held}")
            runs = throughput(deployments, work, usage, job_pid, count, repeats, detection)
            a, b = runs["A"], runs["B"]
            detect = "detection on" if detection else "detection off"
            ratio = paired_ratios([r["job_rate"] for r in b], [r["job_rate"] for r in a])
            wall_ratio = paired_ratios([r["wall_rate"] for r in b], [r["wall_rate"] for r in a])
            metrics += [
                median_metric("A embedded end to end (job time)", [r["job_rate"] for r in a], "events/s",
                              note=f"{count:,} events, 1 Kafka node (2 partitions), local[2], {detect}"),
                median_metric("B cluster tier end to end (job time)", [r["job_rate"] for r in b], "events/s",
                              note="same backlog, 3 brokers (6 partitions, RF 3), 2 workers x 1 core"),
                median_metric("B/A end to end (job time)", ratio, "x", note="per repeat, runs back to back"),
                median_metric("A with process start (wall)", [r["wall_rate"] for r in a], "events/s",
                              note="incident-stream process start to exit: JVM, session, executors"),
                median_metric("B with process start (wall)", [r["wall_rate"] for r in b], "events/s"),
                median_metric("B/A with process start (wall)", wall_ratio, "x"),
                median_metric("A start and stop outside the queries", [r["startup_s"] for r in a], "s"),
                median_metric("B start and stop outside the queries", [r["startup_s"] for r in b], "s",
                              note="includes the executors' launch on the workers"),
                median_metric("A in micro-batches", [r["busy_rate"] for r in a], "events/s"),
                median_metric("B in micro-batches", [r["busy_rate"] for r in b], "events/s"),
                median_metric("A Spark CPU per event", [r["spark_cpu_us"] for r in a], "us",
                              note="driver JVM + Python workers (local mode)"),
                median_metric("B Spark CPU per event", [r["spark_cpu_us"] for r in b], "us",
                              note="driver + executors + their Python workers + master/worker daemons"),
                median_metric("A Kafka CPU per event", [r["kafka_cpu_us"] for r in a], "us"),
                median_metric("B Kafka CPU per event", [r["kafka_cpu_us"] for r in b], "us",
                              note="3 brokers, replication factor 3"),
                Metric("records missing or twice (A and B, every run)", 0, "records",
                       note="events + dead_letter = backlog; each offset once (pipeline_checks)"),
            ]
            context["throughput_runs"] = runs
        if "broker" not in args.skip:
            failover = broker_failover(tier, recoveries)
            metrics += [
                median_metric("broker kill -> first record acked by the new leader",
                              [x["first_ack_s"] for x in failover], "s",
                              note=f"idempotent producer, acks=all, {FAILOVER_RATE} rec/s to the killed leader's "
                                   "partition; median"),
                median_metric("broker kill -> new leader in the metadata",
                              [x["leader_seen_s"] for x in failover if x["leader_seen_s"] is not None], "s"),
                median_metric("restarted broker back in sync", [x["back_in_sync_s"] for x in failover], "s",
                              note="restart to every in-sync replica set"),
            ]
            context["broker_kills"] = failover
        if "worker" not in args.skip:
            kills = worker_kill(tier, deployments["B"], work, usage, job_pid, recoveries, detection)
            metrics += [
                median_metric("worker kill -> micro-batch committed", [x["batch_done_s"] for x in kills], "s",
                              note=f"kill -9 of a worker with its executor mid-batch, {LIVE_RATE} ev/s live; median"),
                median_metric("micro-batch hit by the kill, its duration",
                              [x["batch_duration_s"] for x in kills if x.get("batch_duration_s") is not None], "s",
                              note="Spark's batch duration, from the job's metrics table"),
                median_metric("micro-batch without a kill, its duration", kills[-1]["calm_batches_s"] or [0.0], "s",
                              note="the other ingest batches of the same run (the first left out)"),
                median_metric("restarted worker -> new executor", [x["new_executor_s"] for x in kills], "s"),
                Metric("records lost or twice after the worker kills", 0, "records",
                       note=f"{kills[-1]['records_checked']:,} records produced during the kills, each once"),
            ]
            context["worker_kills"] = kills
        load_end = os.getloadavg()
        say(f"load average at the end: {load_end[0]:.1f} {load_end[1]:.1f} {load_end[2]:.1f}")
        emit("cluster", metrics, args.json, load_average_start=load_start, load_average_end=load_end, **context)
        return 0
    finally:
        if usage is not None:
            usage.__exit__()
        if job_pid[0] is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job_pid[0], signal.SIGKILL)
        with contextlib.suppress(Exception):
            tier.down()
        with contextlib.suppress(Exception):
            tier.end_leftovers()
        if broker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(broker.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                broker.wait(timeout=30)
        if os.environ.get("CLUSTER_BENCH_KEEP"):
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
