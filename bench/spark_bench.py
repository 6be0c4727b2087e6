"""Spark job throughput: a backlog of Avro log events in Kafka -> enriched events as Parquet.

    .venv/bin/python bench/spark_bench.py [--quick] [--json OUT.json] [--events N] [--repeats N]

1. Starts the embedded broker, creates a 2-partition topic and produces the backlog (default 2,000,000
   events; --quick 300,000) from a pool of pre-encoded messages (realistic services, levels, HTTP fields
   and messages; event ids repeat across the pool's cycles, which nothing here depends on).
2. Practical limit, measured in the same run on the same data: the raw consume + decode + Arrow rate,
   i.e. what the source's Spark tasks do without Spark: one process per partition, in parallel.
3. End to end: the job's ingest query (`incident_stream.job`, Trigger.AvailableNow, local[2], default
   max records per trigger) from the backlog to the events table, repeated with fresh checkpoint and
   data folders. Sustained rate = records / time the micro-batches took (the first micro-batch's
   warm-up included; JVM start and query planning excluded; wall time is printed beside it).
4. Peak resident memory of the driver JVM (local mode: driver and executor) and of the Python workers.
The full run also reports, for information, the job with the detection query running beside ingest.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from report import Metric, emit, median_metric  # noqa: E402

from incident_contracts.catalog import default_catalog  # noqa: E402
from incident_contracts.codec import Codec  # noqa: E402
from incident_contracts.kafka import TopicSpec, end_offsets, ensure_topics, wait_for_broker  # noqa: E402
from incident_stack.broker import free_port, start_broker  # noqa: E402

TOPIC = "bench.logs"
TARGET = 100_000

MESSAGES = [
    ("INFO", "GET {path} returned 200 in {ms}ms", None),
    ("INFO", "request completed user={user} items={n} total={money}", None),
    ("DEBUG", "cache hit key=session:{hex} ttl={n}s", None),
    ("WARN", "slow query on orders took {ms}ms rows={n}", None),
    ("WARN", "retrying call to {host}:{port} attempt {n}", None),
    ("ERROR", "Timeout after {ms}ms calling {host}:{port} (req-{hex})", "TimeoutError"),
    ("ERROR", "connection refused by 10.0.{n}.{n2}:5432 pool=db-pool-{n}", "ConnectionError"),
    ("ERROR", "payment {uuid} declined: insufficient funds", "PaymentDeclined"),
]


def event_pool(size: int, seed: int = 7) -> list[bytes]:
    """Encoded LogEvents shaped like the generator's, from the service catalog."""
    rng = random.Random(seed)
    codec = Codec()
    services = default_catalog().services
    now = int(time.time() * 1000)
    pool = []
    for i in range(size):
        service = rng.choice(services)
        level, template, error_type = rng.choice(MESSAGES)
        path = rng.choice(service.endpoints).replace("{id}", str(rng.randint(1, 99999)))
        message = template.format(path=path, ms=rng.randint(1, 3000), user=f"u{rng.randint(1, 10**6)}",
                                  n=rng.randint(1, 500), n2=rng.randint(1, 254), money=f"{rng.random() * 500:.2f}",
                                  hex=f"{rng.getrandbits(32):08x}", host=rng.choice(services).name,
                                  port=rng.choice([443, 5432, 6379, 8080]), uuid=uuid.UUID(int=rng.getrandbits(128)))
        status = 503 if level == "ERROR" else 200
        pool.append(codec.encode({
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "timestamp": now - rng.randint(0, 600_000),
            "service": service.name, "environment": "prod", "host": rng.choice(service.hosts), "level": level,
            "logger": service.logger or f"{service.name}.http", "message": message,
            "trace_id": f"{rng.getrandbits(128):032x}", "span_id": f"{rng.getrandbits(64):016x}",
            "http_method": "GET" if service.kind == "http" else None,
            "http_path": path if service.kind == "http" else None,
            "http_status": status if service.kind == "http" else None,
            "latency_ms": round(rng.lognormvariate(3, 0.8), 2), "error_type": error_type,
            "attributes": {"region": rng.choice(["eu-west-1", "us-east-1"]), "pod": f"{service.name}-{i % 7}"},
        }))
    return pool


def produce_backlog(bootstrap: str, count: int, pool: list[bytes]) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "lz4",
                         "batch.num.messages": 10_000, "queue.buffering.max.messages": 1_000_000,
                         "enable.idempotence": True})
    started = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(TOPIC, pool[i % len(pool)], partition=i % 2)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 20_000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0, "the broker did not take the whole backlog"
    return time.perf_counter() - started


def _raw_worker(bootstrap: str, partition: int, end: int, out: multiprocessing.Queue) -> None:
    from incident_stream.kafka_read import Range, ReadConfig, read_range
    from incident_stream.kafka_source import logevent_schema
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = to_arrow_schema(logevent_schema(), timezone="UTC")
    config = ReadConfig(bootstrap=bootstrap, topic=TOPIC)
    started = time.perf_counter()
    rows = sum(batch.num_rows for batch in read_range(config, Range(partition, 0, end), schema))
    out.put((partition, rows, time.perf_counter() - started))


def raw_rate(bootstrap: str, ends: dict[int, int]) -> tuple[float, int]:
    """Records/s of consume + decode + Arrow, one process per partition in parallel (as Spark's tasks)."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    started = time.perf_counter()
    workers = [context.Process(target=_raw_worker, args=(bootstrap, p, e, out)) for p, e in ends.items()]
    for w in workers:
        w.start()
    results = [out.get(timeout=600) for _ in workers]
    for w in workers:
        w.join()
    wall = time.perf_counter() - started
    rows = sum(r[1] for r in results)
    slowest = max(r[2] for r in results)  # excludes interpreter start-up, like the job's warm tasks
    return rows / slowest, rows if wall else rows


class MemoryWatch:
    """Peak RSS of the driver JVM and of the Python workers it spawned, sampled every 0.2 s."""

    def __init__(self) -> None:
        self.jvm_peak = 0
        self.workers_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            try:
                children = me.children(recursive=True)
            except psutil.Error:
                continue
            jvm = workers = 0
            for child in children:
                try:
                    rss = child.memory_info().rss
                    name = child.name()
                except psutil.Error:
                    continue
                if name == "java":
                    jvm += rss
                elif "python" in name:
                    workers += rss
            self.jvm_peak = max(self.jvm_peak, jvm)
            self.workers_peak = max(self.workers_peak, workers)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_job_once(spark, settings, work: Path, detection: bool) -> dict:  # noqa: ANN001
    from incident_stream.job import INGEST, JobOptions, StreamJob

    shutil.rmtree(work, ignore_errors=True)
    options = JobOptions(data_dir=work / "data", checkpoint=work / "checkpoint", once=True, detection=detection,
                         max_records_per_trigger=settings.stream_max_records_per_trigger)
    job = StreamJob(spark, settings, options)
    started = time.perf_counter()
    job.start()
    job.wait()
    job.stop()
    wall = time.perf_counter() - started
    spark.streams.removeListener(job.metrics)
    if job.error:
        raise RuntimeError(job.error)
    activity = job.metrics.activity[INGEST]
    busy = activity.busy_ms / 1000
    events = job.counters.events
    return {"events": events, "busy_s": busy, "wall_s": wall, "rate": events / busy if busy else 0.0,
            "batches": activity.batches, "files": len(list((work / "data" / "events").rglob("*.parquet")))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300k events, 2 repetitions")
    parser.add_argument("--json", default=None, help="write the results as JSON here")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    count = args.events or (300_000 if args.quick else 2_000_000)
    repeats = args.repeats or (2 if args.quick else 3)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    work = Path(tempfile.mkdtemp(prefix="spark-bench-"))
    port = free_port()
    broker = start_broker("127.0.0.1", port, work / "broker.log")
    bootstrap = f"127.0.0.1:{port}"
    try:
        wait_for_broker(bootstrap, timeout=30)
        ensure_topics(bootstrap, [TopicSpec(TOPIC, partitions=2)])
        pool = event_pool(50_000 if not args.quick else 20_000)
        produce_s = produce_backlog(bootstrap, count, pool)
        ends = end_offsets(bootstrap, TOPIC)
        assert sum(ends.values()) == count, f"backlog has {sum(ends.values())} records, expected {count}"
        print(f"backlog: {count:,} events ({sum(map(len, pool)) / len(pool):.0f} B each) produced in "
              f"{produce_s:.1f}s; end offsets {ends}", flush=True)

        raw = [raw_rate(bootstrap, ends)[0] for _ in range(repeats)]
        print(f"raw consume+decode+Arrow: {[f'{r:,.0f}' for r in raw]} events/s", flush=True)

        from incident_contracts.settings import Settings
        from incident_stream.session import build_session

        settings = Settings(_env_file=None, kafka_bootstrap_servers=bootstrap, kafka_topic_logs=TOPIC,  # type: ignore[call-arg]
                            kafka_consumer_group="", spark_shuffle_partitions=2, data_dir=work / "data")
        with MemoryWatch() as memory:
            spark = build_session(settings, master="local[2]", ui=False)
            spark.sparkContext.setLogLevel("ERROR")
            runs = []
            for i in range(repeats):
                result = run_job_once(spark, settings, work / f"run{i}", detection=False)
                assert result["events"] == count, result
                runs.append(result)
                print(f"end-to-end run {i + 1}: {json.dumps({k: round(v, 2) for k, v in result.items()})}",
                      flush=True)
            with_detection = None
            if not args.quick:
                with_detection = run_job_once(spark, settings, work / "detect", detection=True)
                print(f"with detection: {json.dumps({k: round(v, 2) for k, v in with_detection.items()})}",
                      flush=True)
            spark.stop()
        limit = sorted(raw)[len(raw) // 2]
        metrics = [
            median_metric("spark_e2e_events_per_s", [r["rate"] for r in runs], "events/s", target=TARGET,
                          limit=limit, note=f"{count:,} events, local[2], 2 partitions, Kafka -> events Parquet"),
            median_metric("raw_consume_decode_arrow_events_per_s", raw, "events/s",
                          note="practical limit: the source's work without Spark, 2 processes"),
            median_metric("spark_e2e_wall_events_per_s", [r["events"] / r["wall_s"] for r in runs], "events/s",
                          note="including query start and the last compaction"),
            Metric("driver_jvm_peak_rss_mb", memory.jvm_peak / 2**20, "MB", target=2048, op="<=",
                   note="local mode: driver and executor in one JVM"),
            Metric("python_workers_peak_rss_mb", memory.workers_peak / 2**20, "MB"),
        ]
        if with_detection:
            metrics.append(Metric("spark_e2e_with_detection_events_per_s", with_detection["rate"], "events/s",
                                  note="ingest rate while the detection query runs beside it"))
        emit("spark", metrics, args.json, events=count, repeats=repeats, cores=os.cpu_count(),
             load_average=os.getloadavg(), files_per_run=[r["files"] for r in runs])
    finally:
        os.killpg(broker.pid, signal.SIGTERM)
        broker.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
