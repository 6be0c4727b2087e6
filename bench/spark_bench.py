"""Spark job throughput: a backlog of Avro log events in Kafka -> the tables and detection, one read per batch.

    .venv/bin/python bench/spark_bench.py [--quick] [--json OUT.json] [--events N] [--repeats N]

1. Starts an embedded broker of its own, creates a 2-partition topic and produces the backlog (default
   2,000,000 events; --quick 300,000) from a pool of pre-encoded messages shaped like the generator's
   (services from the catalog, levels, HTTP fields, messages with ids and numbers to mask).
2. Practical limit, measured on the same data in the same run: the raw consume + decode + Arrow rate, i.e.
   what the source's Spark tasks do first (``incident_stream.kafka_read.read_range``) without Spark, in
   two worker processes in parallel (one per partition, as Spark's two task slots). The processes are
   started once, before timing.
3. End to end: the job as deployed (``incident_stream.job``, its one query: decode, enrich, write the
   events and dead_letter files, partial buckets to the detector, commit; Trigger.AvailableNow,
   ``local[2]``, the default max records per trigger) from the backlog to the tables, each repeat with
   fresh checkpoint and data folders, after one untimed warm-up run with detection over 500,000 other
   events (quick: 100,000) (JVM class loading and JIT of both paths). Sustained rate = records / the time
   the micro-batches took (from the query's progress reports). The rate with query start-up and stop
   (wall) is printed beside it. Each repeat also runs the job without detection (``--no-detection``),
   for the cost of detection.
   Limit and job alternate, so the machine's noise hits both alike.
4. Driver memory: peak resident memory of the driver JVM plus the driver's Python process, sampled every
   0.2 s (local mode: the driver JVM also runs the executor). Spark's Python workers are reported apart.
5. CPU time per event of the job (driver JVM + Python workers) and of the limit, for information: less
   sensitive to other load on a shared machine than rates.

Exit status 0 when the measurements completed (missed targets show as FAIL in the table).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from measure import PeakMemory  # noqa: E402
from report import Metric, emit, median_metric  # noqa: E402

from incident_contracts.catalog import default_catalog  # noqa: E402
from incident_contracts.codec import Codec  # noqa: E402
from incident_contracts.kafka import TopicSpec, end_offsets, ensure_topics, wait_for_broker  # noqa: E402
from incident_stack.broker import free_port, start_broker  # noqa: E402

TOPIC = "bench.logs"
WARMUP_TOPIC = "bench.warmup"
TARGET = 150_000  # events/s end to end, with detection
DRIVER_MEMORY_TARGET_MB = 2048
# Event-time density of the backlog: it holds what services wrote at this rate (the top live rate), so
# detection's work per event-time bucket is that of a real catch-up, not of events scattered over hours.
EVENT_TIME_RATE = 20_000
WARMUP_EVENTS = 500_000  # one micro-batch of the default size: the JIT compiles the write path on it
QUICK_WARMUP_EVENTS = 100_000

MESSAGES = [
    ("INFO", "{method} {path} returned 200 in {ms}ms", None),
    ("INFO", "request completed user={user} items={n} total={money}", None),
    ("DEBUG", "cache hit key=session:{hex} ttl={n}s", None),
    ("WARN", "slow query on orders took {ms}ms rows={n}", None),
    ("WARN", "retrying call to {host}:{port} attempt {n}", None),
    ("ERROR", "Timeout after {ms}ms calling {host}:{port} (req-{hex})", "TimeoutError"),
    ("ERROR", "connection refused by 10.0.{n}.{n2}:5432 pool=db-pool-{n}", "ConnectionError"),
    ("ERROR", "payment {uuid} declined: insufficient funds", "PaymentDeclined"),
]


def event_pool(size: int, seed: int = 7) -> list[dict[str, Any]]:
    """LogEvents shaped like the generator's, from the service catalog (timestamps set when produced)."""
    rng = random.Random(seed)
    services = default_catalog().services
    pool = []
    for i in range(size):
        service = rng.choice(services)
        level, template, error_type = rng.choice(MESSAGES)
        method, _, path = rng.choice(service.endpoints).replace("{id}", str(rng.randint(1, 99999))).rpartition(" ")
        method = method or "GET"
        message = template.format(method=method, path=path, ms=rng.randint(1, 3000), user=f"u{rng.randint(1, 10**6)}",
                                  n=rng.randint(1, 500), n2=rng.randint(1, 254), money=f"{rng.random() * 500:.2f}",
                                  hex=f"{rng.getrandbits(32):08x}", host=rng.choice(services).name,
                                  port=rng.choice([443, 5432, 6379, 8080]), uuid=uuid.UUID(int=rng.getrandbits(128)))
        status = 503 if level == "ERROR" else 200
        pool.append({
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "timestamp": 0,
            "service": service.name, "environment": "prod", "host": rng.choice(service.hosts), "level": level,
            "logger": service.logger or f"{service.name}.http", "message": message,
            "trace_id": f"{rng.getrandbits(128):032x}", "span_id": f"{rng.getrandbits(64):016x}",
            "http_method": method if service.kind == "http" else None,
            "http_path": path if service.kind == "http" else None,
            "http_status": status if service.kind == "http" else None,
            "latency_ms": round(rng.lognormvariate(3, 0.8), 2), "error_type": error_type,
            "attributes": {"region": rng.choice(["eu-west-1", "us-east-1"]), "pod": f"{service.name}-{i % 7}"},
        })
    return pool


def encoded_backlog(count: int, pool: list[dict[str, Any]]) -> Iterator[list[bytes]]:
    """The backlog in chunks of encoded events, in event-time order: `count` events of the pool's shapes
    over count / EVENT_TIME_RATE seconds ending now, as services write them (each partition in time order)."""
    codec = Codec()
    step_us = 1_000_000 / EVENT_TIME_RATE
    start_ms = int(time.time() * 1000) - int(count * step_us / 1000)
    for first in range(0, count, 50_000):
        records = [dict(pool[i % len(pool)], timestamp=start_ms + int(i * step_us) // 1000)
                   for i in range(first, min(count, first + 50_000))]
        yield codec.encode_many(records)


def produce_backlog(bootstrap: str, count: int, pool: list[dict[str, Any]], topic: str = TOPIC) -> tuple[float, float]:
    """Produce the backlog; (mean event size in bytes, seconds spent producing)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "lz4",
                         "batch.num.messages": 10_000, "queue.buffering.max.messages": 1_000_000,
                         "enable.idempotence": True})
    started = time.perf_counter()
    size = i = 0
    for chunk in encoded_backlog(count, pool):
        for message in chunk:
            while True:
                try:
                    producer.produce(topic, message, partition=i % 2)
                    break
                except BufferError:
                    producer.poll(0.05)
            size += len(message)
            i += 1
        producer.poll(0)
    assert producer.flush(120) == 0, "the broker did not take the whole backlog"
    return size / count, time.perf_counter() - started


def _produce_worker(bootstrap: str, count: int, warmup_events: int, pool_size: int) -> tuple[float, float]:
    """Produce the backlog and the warm-up topic: (mean event size in bytes, backlog production seconds)."""
    pool = event_pool(pool_size)
    size, produce_s = produce_backlog(bootstrap, count, pool)
    produce_backlog(bootstrap, warmup_events, pool, WARMUP_TOPIC)
    return size, produce_s


# --- the practical limit: the source's work without Spark ------------------------------------------

def _warm_worker() -> int:
    """Import everything a raw read needs (outside the timed part)."""
    import incident_stream.kafka_read
    import incident_stream.kafka_source  # noqa: F401

    return os.getpid()


def _raw_worker(bootstrap: str, partition: int, end: int, barrier_at: float) -> tuple[int, float, float]:
    """Read one partition [0, end) like a Spark task does: (rows, seconds, CPU seconds)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    from incident_stream.kafka_read import Range, ReadConfig, read_range
    from incident_stream.kafka_source import logevent_schema

    schema = to_arrow_schema(logevent_schema(), timezone="UTC")
    config = ReadConfig(bootstrap=bootstrap, topic=TOPIC)
    time.sleep(max(0.0, barrier_at - time.time()))  # both partitions start together
    cpu, started = time.process_time(), time.perf_counter()
    rows = sum(batch.num_rows for batch in read_range(config, Range(partition, 0, end), schema))
    return rows, time.perf_counter() - started, time.process_time() - cpu


def raw_rate(pool: ProcessPoolExecutor, bootstrap: str, ends: dict[int, int]) -> dict[str, float]:
    """Records/s of consume + decode + Arrow over all partitions in parallel (as Spark's tasks)."""
    start_at = time.time() + 0.5
    futures = [pool.submit(_raw_worker, bootstrap, p, e, start_at) for p, e in ends.items()]
    results = [f.result(timeout=900) for f in futures]
    rows = sum(r[0] for r in results)
    slowest = max(r[1] for r in results)
    return {"rows": rows, "seconds": slowest, "rate": rows / slowest, "cpu_s": sum(r[2] for r in results)}


# --- memory and CPU of the job ------------------------------------------------------------------

class ProcessWatch:
    """Peak RSS (MB, measure.PeakMemory) of the driver (JVM + this Python process) and of Spark's Python
    workers, every 0.2 s while the driver JVM runs, and the CPU time of Spark's processes."""

    def __init__(self, exclude: set[int]) -> None:
        self.me = psutil.Process()
        self.exclude = exclude  # the limit's worker processes
        self.memory = PeakMemory(self._groups, interval=0.2)

    def jvm(self) -> psutil.Process | None:
        """Spark's driver JVM (SparkSubmit, started by PySpark), not the broker's JVM, also a child of this process."""
        for child in self.me.children(recursive=True):
            try:
                if child.name() == "java" and "org.apache.spark.deploy.SparkSubmit" in child.cmdline():
                    return child
            except psutil.Error:
                continue
        return None

    def spark_processes(self) -> list[psutil.Process]:
        """The driver JVM and every process below it (the Python daemon and workers)."""
        jvm = self.jvm()
        if jvm is None:
            return []
        try:
            return [jvm, *jvm.children(recursive=True)]
        except psutil.Error:
            return [jvm]

    def cpu_seconds(self) -> float:
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """CPU seconds so far of the driver JVM and of Spark's Python workers."""
        split = [0.0, 0.0]
        for index, process in enumerate(self.spark_processes()):
            try:
                times = process.cpu_times()
                split[min(index, 1)] += times.user + times.system
            except psutil.Error:
                continue
        return split[0], split[1]

    def _groups(self) -> dict[str, list[int]]:
        """The process ids of each measured group, from one walk of the tree (nothing before the JVM starts)."""
        processes = self.spark_processes()
        if not processes:
            return {}
        jvm, me = processes[0].pid, self.me.pid
        return {"jvm": [jvm], "python": [me], "driver": [jvm, me],
                "workers": [p.pid for p in processes[1:] if p.pid not in self.exclude]}

    def peak_mb(self, group: str) -> float:
        """Peak of "driver" (JVM + driver Python), "jvm", "python" or "workers" so far."""
        return self.memory.peak_mb.get(group, 0.0)

    def __enter__(self) -> ProcessWatch:
        self.memory.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.memory.__exit__(*exc)


# --- the job end to end ------------------------------------------------------------------------

def run_job_once(spark: Any, settings: Any, work: Path, detection: bool, watch: ProcessWatch) -> dict[str, float]:
    from incident_stream.job import LOGS, JobOptions, StreamJob

    shutil.rmtree(work, ignore_errors=True)
    options = JobOptions(data_dir=work / "data", checkpoint=work / "checkpoint", once=True, detection=detection,
                         max_records_per_trigger=settings.stream_max_records_per_trigger)
    job = StreamJob(spark, settings, options)
    jvm_cpu, workers_cpu = watch.cpu_split()
    started = time.perf_counter()
    try:
        job.start()
        job.wait()
    finally:
        job.stop()  # also records progress reports the listener had not delivered yet
    wall = time.perf_counter() - started
    jvm_after, workers_after = watch.cpu_split()
    jvm_cpu, workers_cpu = jvm_after - jvm_cpu, workers_after - workers_cpu
    if job.error:
        raise RuntimeError(job.error)
    activity = job.metrics.activity.get(LOGS)
    if activity is None or not activity.batches:
        raise RuntimeError("the job's query reported no progress")
    busy = activity.busy_ms / 1000
    events = job.counters.events
    return {"events": events, "busy_s": busy, "wall_s": wall, "rate": events / busy if busy else 0.0,
            "wall_rate": events / wall, "batches": activity.batches, "cpu_s": jvm_cpu + workers_cpu,
            "jvm_cpu_s": jvm_cpu, "workers_cpu_s": workers_cpu, "commit_ms_p95": job.summary(wall)["commit_ms_p95"],
            "files": len(job.store.open("events").file_uris()), "incident_updates": job.counters.incident_updates}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300k events, 2 repetitions (about a minute)")
    parser.add_argument("--json", default=None, help="write the results as JSON here")
    parser.add_argument("--events", type=int, default=None, help="backlog size (default 2,000,000; quick 300,000)")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions (default 3; quick 2)")
    args = parser.parse_args()
    count = args.events or (300_000 if args.quick else 2_000_000)
    repeats = args.repeats or (2 if args.quick else 3)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    work = Path(tempfile.mkdtemp(prefix="spark-bench-"))
    port = free_port()
    broker = start_broker("127.0.0.1", port, work / "broker.log")
    bootstrap = f"127.0.0.1:{port}"
    pool = ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn"))
    try:
        warming = [pool.submit(_warm_worker) for _ in range(2)]
        wait_for_broker(bootstrap, timeout=30)
        ensure_topics(bootstrap, [TopicSpec(TOPIC, partitions=2), TopicSpec(WARMUP_TOPIC, partitions=2)])
        # Produced by a worker process, so the driver's measured memory is the job's, not the backlog's.
        warmup_events = QUICK_WARMUP_EVENTS if args.quick else WARMUP_EVENTS
        size, produce_s = pool.submit(_produce_worker, bootstrap, count, warmup_events,
                                      20_000 if args.quick else 50_000).result(timeout=900)
        ends = end_offsets(bootstrap, TOPIC)
        assert sum(ends.values()) == count, f"backlog has {sum(ends.values())} records, expected {count}"
        print(f"backlog: {count:,} events ({size:.0f} B each) produced in {produce_s:.1f}s; end offsets {ends}",
              flush=True)
        limit_pids = {f.result(timeout=120) for f in warming}

        from incident_contracts.settings import Settings
        from incident_stream.session import build_session

        settings = Settings(_env_file=None, kafka_bootstrap_servers=bootstrap, kafka_topic_logs=TOPIC,  # type: ignore[call-arg]
                            kafka_consumer_group="", data_dir=work / "data")
        raw: list[dict[str, float]] = []
        runs: list[dict[str, float]] = []  # with detection
        plain: list[dict[str, float]] = []  # without
        with ProcessWatch(exclude=limit_pids) as watch:
            spark = build_session(settings, master="local[2]", ui=False)
            spark.sparkContext.setLogLevel("ERROR")
            # JVM warm-up (class loading, JIT) on a topic of its own, so the repeats measure the sustained
            # rate rather than the first query of a fresh JVM: the first 500,000 events through the write
            # path run about 30 % slower than the next ones, until its code is compiled.
            warm = run_job_once(spark, settings.model_copy(update={"kafka_topic_logs": WARMUP_TOPIC}),
                                work / "warmup", True, watch)
            print(f"warm-up: {warm['events']:,} events in {warm['wall_s']:.1f}s", flush=True)
            for i in range(repeats):
                raw.append(raw_rate(pool, bootstrap, ends))
                assert raw[-1]["rows"] == count, raw[-1]
                print(f"limit  {i + 1}/{repeats}: {raw[-1]['rate']:>10,.0f} events/s "
                      f"({raw[-1]['cpu_s'] / count * 1e6:.1f} CPU us/event)", flush=True)
                for detection, into in ((True, runs), (False, plain)):
                    result = run_job_once(spark, settings, work / f"run{i}-{detection}", detection, watch)
                    assert result["events"] == count, result
                    into.append(result)
                    print(f"job {'with' if detection else 'without'} detection {i + 1}/{repeats}: "
                          f"{result['rate']:>10,.0f} events/s ({result['cpu_s'] / count * 1e6:.1f} CPU us/event) "
                          f"{json.dumps({k: round(v, 2) for k, v in result.items()})}", flush=True)
            spark.stop()
        limit = statistics.median(r["rate"] for r in raw)
        metrics = [
            median_metric("end-to-end Kafka -> tables + detection", [r["rate"] for r in runs], "events/s",
                          target=TARGET, limit=limit,
                          note=f"{count:,} events, local[2], 2 partitions, one read per batch; ratio to the raw "
                               "rate below"),
            median_metric("raw consume + decode + Arrow (practical limit)", [r["rate"] for r in raw], "events/s",
                          note="the source's task work without Spark, 2 processes, same data, same run"),
            median_metric("end-to-end without detection (--no-detection)", [r["rate"] for r in plain], "events/s",
                          limit=limit, note="the same job writing the tables only"),
            median_metric("end-to-end with detection incl. query start/stop (wall)",
                          [r["wall_rate"] for r in runs], "events/s", note="including query start and stop"),
            median_metric("commit time per micro-batch, p95", [r["commit_ms_p95"] for r in runs], "ms",
                          note="events, dead_letter and incident_updates commits of one batch, as the sink times "
                               "them"),
            Metric("driver peak RSS (JVM + Python)", watch.peak_mb("driver"), "MB",
                   target=DRIVER_MEMORY_TARGET_MB, op="<=",
                   note=f"JVM {watch.peak_mb('jvm'):,.0f} MB + driver Python {watch.peak_mb('python'):,.0f} MB"),
            Metric("Spark Python workers peak RSS", watch.peak_mb("workers"), "MB"),
            median_metric("job CPU per event (JVM + workers)", [r["cpu_s"] / count * 1e6 for r in runs], "us",
                          note="with detection; 2 cores give 13.3 us per event at the target rate"),
            median_metric("  of which the JVM", [r["jvm_cpu_s"] / count * 1e6 for r in runs], "us",
                          note="scheduling, shuffle of partial buckets, state store, commit"),
            median_metric("  of which Spark's Python workers", [r["workers_cpu_s"] / count * 1e6 for r in runs],
                          "us", note="consume, decode, enrich, write Parquet, partial buckets, detector"),
            median_metric("job CPU per event without detection", [r["cpu_s"] / count * 1e6 for r in plain], "us"),
            median_metric("limit CPU per event", [r["cpu_s"] / count * 1e6 for r in raw], "us"),
        ]
        emit("spark", metrics, args.json, events=count, repeats=repeats, cores=os.cpu_count(),
             load_average=os.getloadavg(), batches_per_run=[r["batches"] for r in runs],
             files_per_run=[r["files"] for r in runs], event_bytes=round(size))
        return 0
    finally:
        pool.shutdown(cancel_futures=True)
        os.killpg(broker.pid, signal.SIGTERM)
        broker.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
