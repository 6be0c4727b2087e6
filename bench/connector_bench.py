"""Kafka connectors compared: the job's Python data source against Spark's own Kafka connector + from_avro.

    .venv/bin/python bench/connector_bench.py [--quick] [--json OUT.json] [--events N] [--repeats N]

One run, one backlog, one machine:

1. Starts an embedded broker of its own, creates a 2-partition topic and produces the backlog once
   (default 2,000,000 events; --quick 150,000) from the same pool of pre-encoded messages as
   spark_bench.py (Avro single-object encoding), plus a warm-up topic (500,000; quick 50,000) and a
   small topic of bad records.
2. Two driver processes, each with its own Spark session (``local[2]``, driver memory 1g, the job's
   settings) and so its own JVM, which makes each one's driver memory its own:

   A. the product: the ``incident-stream`` job without detection (``incident_stream.job``, the Python data
      source ``kafka_logs``: decode, enrich and write the Delta tables' Parquet files in the source's tasks,
      committed once per micro-batch by the query's sink), exactly as spark_bench.py runs it;
   B. Spark's built-in connector: ``spark.readStream.format("kafka")`` with the jars of
      ``stack/jvm/spark-kafka`` (fetched from Maven Central when missing), the 10-byte single-object
      header stripped with ``substring`` and the body decoded by spark-avro's ``from_avro`` (older
      schema versions resolved to the newest by fingerprint), records that do not decode or fail the
      job's checks routed to the dead letters with the job's reasons, then the enrichment as Spark
      expressions (tests/spark/enrich_oracle.py, the reference the tests compare the job with), and the
      events table written by
      Spark's Parquet writer, partitioned by event_date/event_hour, into a folder of the Delta table and
      committed as the product commits (``TableStore.commit_files`` with the query's application id and
      batch id; the tuning the product had when Spark wrote it: no dictionary for per-event columns,
      concurrent writers instead of a sort); neither side compacts (table maintenance's job).

   Each process warms its JVM up on the warm-up topic first. Then the repeats alternate A and B (ABBA
   order: A, B, B, A, ...), each from a fresh checkpoint over the whole backlog (Trigger.AvailableNow,
   500,000 records per micro-batch), so the machine's noise hits both alike.
3. For each: events/s = events written / time in micro-batches (the query's progress, as spark_bench.py),
   the wall rate with query start and stop, CPU seconds per event of the driver JVM and of Spark's
   Python workers (the children of the JVM), and the driver's peak RSS (JVM + driver Python process,
   sampled every 0.2 s over the process's life).
4. Correctness, untimed: every backlog record is in B's events table, and every column but ingest_time
   equals A's for the same Kafka offset (DuckDB over both tables); the bad-record topic (empty, bad
   magic, truncated, unknown fingerprint, malformed body, trailing bytes, Confluent framing, out-of-range
   timestamps, blank fields, and events of the older schema version) goes through both, and where each
   record lands (events or dead_letter, and the reason) is compared.

What B does not do like A: a body with bytes after the record decodes (from_avro does not check the
end), where A rejects it as trailing_bytes; a body that ends early is malformed_body (A: truncated); no
Schema Registry lookup (Confluent-framed records go to the dead letters as unknown_schema_id, as A does
without a registry); the dead letters' detail is a short text. The table reports the mismatches it finds.

Exit status 0 when the measurements completed (missed targets show as FAIL in the table).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402
from report import Metric, emit, median_metric  # noqa: E402
from spark_bench import TOPIC as BACKLOG_TOPIC  # noqa: E402
from spark_bench import WARMUP_TOPIC, ProcessWatch, event_pool  # noqa: E402

from incident_contracts.kafka import TopicSpec, end_offsets, ensure_topics, wait_for_broker  # noqa: E402
from incident_stack.broker import free_port, start_broker  # noqa: E402

PRODUCT, BUILTIN = "A", "B"
NAMES = {PRODUCT: "Python source (product)", BUILTIN: "Spark Kafka connector + from_avro"}
BAD_TOPIC = "bench.bad"
JAR_SET = "spark-kafka"
WARMUP_EVENTS, QUICK_WARMUP_EVENTS = 500_000, 50_000
DRIVER_MEMORY_TARGET_MB = 2048
# Open Parquet files per write task when Spark writes a partitioned table (a micro-batch spans an hour or
# two); Spark uses these concurrent writers only when it does not plan a sort itself (plannedWrite off).
CONCURRENT_OUTPUT_FILES = 4
# Columns whose values are (nearly) unique per event: no Parquet dictionary (as the product's writer).
EVENTS_WRITE_OPTIONS = {f"parquet.enable.dictionary#{column}": "false"
                        for column in ("event_id", "trace_id", "span_id", "message", "http_path", "latency_ms",
                                       "event_time", "kafka_offset")}
# The Java consumer's fetch sizes set like the Python source's (incident_stream.kafka_read).
BUILTIN_QUERY = "builtin"  # B's query name and checkpoint folder
BUILTIN_FETCH = {"kafka.max.partition.fetch.bytes": str(16 << 20), "kafka.fetch.max.bytes": str(64 << 20)}
# When a row was read, per row as the Python source's read_time. A non-deterministic expression, so Spark
# neither folds it into a constant (current_timestamp() is one per micro-batch, written into the generated
# code, so each batch would compile new code) nor pushes the events filter below the projection that
# decodes: pushed down, the filter evaluated from_avro once more for every reject rule that reads the event.
READ_TIME = "timestamp_millis(cast(reflect('java.lang.System', 'currentTimeMillis') as bigint))"
# Kept beside the events columns for the dead letters (the source's events format keeps the same ones).
DEAD_LETTER_KEEP = ("kafka_timestamp", "key", "raw_value", "value_size", "reject_reason", "reject_detail")


# --- B: Spark's Kafka connector, from_avro, the enrichment's Spark definition --------------------

def builtin_decoded(raw: Any, settings: Any) -> Any:
    """A frame of Spark's Kafka source -> the columns of the Python source's ``logevent`` format (without
    the signature columns and read_time), with reject_reason/reject_detail set for records that are not
    events: the codec's header checks as SQL, the body decoded by from_avro (PERMISSIVE: a body that does
    not decode gives a row of nulls), the job's event-time bounds and required fields."""
    from pyspark.sql import functions as F
    from pyspark.sql.avro.functions import from_avro

    from incident_contracts import avro_schemas
    from incident_contracts.codec import CONFLUENT_HEADER, MAX_MESSAGE_BYTES, SINGLE_OBJECT_HEADER, SINGLE_OBJECT_MAGIC
    from incident_contracts.dead_letter import DeadLetterReason
    from incident_contracts.tables import DEAD_LETTER_MAX_RAW_BYTES

    value = F.col("value")
    size = F.length(value)
    fingerprint = F.substring(value, 3, SINGLE_OBJECT_HEADER - 2)
    body = F.expr(f"substring(value, {SINGLE_OBJECT_HEADER + 1})")
    newest = avro_schemas.latest()
    versions = avro_schemas.all_versions()
    decoded = None
    for version in versions:  # the writer schema by fingerprint, resolved to the newest (as the codec)
        options = {"mode": "PERMISSIVE"}
        if version.version != newest.version:
            options["avroSchema"] = newest.text
        branch = from_avro(body, version.text, options)
        known = fingerprint == F.lit(bytearray(version.fingerprint))
        decoded = F.when(known, branch) if decoded is None else decoded.when(known, branch)
    framed = raw.select(
        F.col("topic"), F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"), F.col("key"), value.alias("value"), size.alias("_size"),
        decoded.alias("_event"), F.expr(READ_TIME).alias("read_time"))
    event = F.col("_event")
    size = F.col("_size")
    kafka_ms = F.unix_millis(F.col("kafka_timestamp"))
    ahead = F.unix_millis(event["timestamp"]) - kafka_ms
    max_age_ms = int(settings.stream_max_event_age_hours * 3600 * 1000)
    max_future_ms = int(settings.stream_max_future_seconds * 1000)
    known_fingerprint = F.substring(F.col("value"), 3, SINGLE_OBJECT_HEADER - 2).isin(
        *[F.lit(bytearray(v.fingerprint)) for v in versions])
    magic = F.substring(F.col("value"), 1, 2)
    rules = [
        (F.col("value").isNull() | (size == 0), DeadLetterReason.EMPTY, "message has no bytes"),
        (size > MAX_MESSAGE_BYTES, DeadLetterReason.TOO_LARGE, f"exceeds the {MAX_MESSAGE_BYTES}-byte limit"),
        ((magic != F.lit(bytearray(SINGLE_OBJECT_MAGIC))) & (F.substring(F.col("value"), 1, 1) == F.lit(bytearray(1)))
         & (size < CONFLUENT_HEADER), DeadLetterReason.TRUNCATED, "Confluent header too short"),
        ((magic != F.lit(bytearray(SINGLE_OBJECT_MAGIC))) & (F.substring(F.col("value"), 1, 1) == F.lit(bytearray(1))),
         DeadLetterReason.UNKNOWN_SCHEMA_ID, "Confluent-framed message but no schema registry"),
        (magic != F.lit(bytearray(SINGLE_OBJECT_MAGIC)), DeadLetterReason.BAD_MAGIC, "not Avro single-object encoding"),
        (size < SINGLE_OBJECT_HEADER, DeadLetterReason.TRUNCATED, "single-object header too short"),
        (~known_fingerprint, DeadLetterReason.UNKNOWN_FINGERPRINT, "fingerprint matches no schema in schemas/avro"),
        (size == SINGLE_OBJECT_HEADER, DeadLetterReason.TRUNCATED, "header present but the Avro body is empty"),
        (event["event_id"].isNull(), DeadLetterReason.MALFORMED_BODY, "from_avro could not decode the body"),
    ]
    if max_age_ms > 0:
        rules.append((ahead < -max_age_ms, DeadLetterReason.TIMESTAMP_OUT_OF_RANGE,
                      "event time too old vs the Kafka timestamp"))
    if max_future_ms > 0:
        rules.append((ahead > max_future_ms, DeadLetterReason.TIMESTAMP_OUT_OF_RANGE, "event time too far ahead"))
    for name in ("event_id", "service"):
        rules.append((F.trim(event[name]) == "", DeadLetterReason.INVALID_FIELD, f"{name} is empty"))
    reason = detail = None
    for condition, why, text in rules:
        label = F.lit(why.value)
        reason = F.when(condition, label) if reason is None else reason.when(condition, label)
        detail = F.when(condition, F.lit(text)) if detail is None else detail.when(condition, F.lit(text))
    event_fields = [event[f.name].alias(f.name) for f in framed.schema["_event"].dataType.fields]
    return framed.select(
        "topic", "kafka_partition", "kafka_offset", "kafka_timestamp", *event_fields, "read_time",
        reason.alias("reject_reason"), detail.alias("reject_detail"), F.col("key"),
        F.substring(F.col("value"), 1, DEAD_LETTER_MAX_RAW_BYTES).alias("raw_value"),
        F.coalesce(F.col("_size"), F.lit(0)).cast("long").alias("value_size"))


def builtin_events(raw: Any, settings: Any, catalog: Any) -> Any:
    """B's ingest frame: the enriched events columns (tests/spark/enrich_oracle.py) + DEAD_LETTER_KEEP."""
    sys.path.insert(0, str(ROOT / "tests" / "spark"))  # the enrichment in Spark SQL lives with the tests
    from enrich_oracle import enrich

    return enrich(builtin_decoded(raw, settings), catalog, keep=DEAD_LETTER_KEEP)


def kafka_offsets(checkpoint: Path, batch_id: int) -> dict[str, int] | None:
    """{partition: offset} where a batch of Spark's Kafka source ends (offsets/<id>), or, for batch -1, where
    the query started (sources/0/0); None when the checkpoint does not tell."""
    path = checkpoint / "sources" / "0" / "0" if batch_id < 0 else checkpoint / "offsets" / str(batch_id)
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        offsets = json.loads(lines[-1].lstrip("\x00"))
        (partitions,) = offsets.values()  # one topic
        return {str(p): int(o) for p, o in partitions.items()}
    except (OSError, ValueError, IndexError, AttributeError, TypeError):
        return None


def offsets_in_batch(checkpoint: Path, batch_id: int) -> int | None:
    """How many offsets a batch spans (from the checkpoint), or None."""
    end, start = kafka_offsets(checkpoint, batch_id), kafka_offsets(checkpoint, batch_id - 1)
    if end is None or start is None:
        return None
    spans = [offset - start.get(partition, 0) for partition, offset in end.items()]
    return sum(spans) if all(span >= 0 for span in spans) else None


def spark_files(store: Any, table: str, folder: str) -> list[Any]:
    """The Parquet files Spark's writer left in `folder` of the table (hidden ``.crc``/``_SUCCESS`` aside), as
    files to commit, with their partition values (from the path) and statistics (from their footers)."""
    import pyarrow.parquet as pq

    from incident_contracts.table_store import data_file

    root = store.local_path(table)
    return [data_file(str(path.relative_to(root)), path.stat().st_size, pq.read_metadata(path))
            for path in sorted((root / folder).rglob("*.parquet"))
            if not any(part.startswith((".", "_")) for part in path.relative_to(root / folder).parts)]


class BuiltinSink:
    """foreachBatch of B: Spark's Parquet writer writes the batch's events into a folder of the events table,
    then those files are committed with (application id, batch id), so a replayed batch is committed once; the
    dead letters only when the batch wrote fewer events than it spans offsets (then the batch is read a second
    time, as the product did before its source wrote the files)."""

    def __init__(self, store: Any, checkpoint: Path):
        self.store = store
        self.checkpoint = checkpoint
        self.rows = {"events": 0, "dead_letter": 0}
        self.second_reads = 0  # batches read again for their dead letters
        self.app_id: str | None = None

    def _write(self, frame: Any, table: str, partitions: tuple[str, ...], batch_id: int,
               options: dict[str, str] | None = None) -> int:
        """Rows of `frame` committed to `table` by this batch (0 when the table already holds the batch)."""
        done = self.store.create(table).transaction_version(self.app_id)  # created before any file is in it
        if done is not None and done >= batch_id:
            return 0
        folder = f"spark-{self.app_id}-b{batch_id:06d}"  # a replay's files replace the attempt's, uncommitted
        (frame.write.mode("overwrite").partitionBy(*partitions).options(**(options or {}))
         .parquet(str(self.store.local_path(table) / folder)))
        files = spark_files(self.store, table, folder)
        self.store.commit_files(table, files, self.app_id, batch_id)
        return sum(f.rows for f in files)

    def __call__(self, batch: Any, batch_id: int) -> None:
        from pyspark.sql import functions as F

        from incident_contracts.tables import DEAD_LETTER_PARTITIONS, EVENTS, EVENTS_PARTITIONS
        from incident_stream.dead_letter import dead_letters
        from incident_stream.job import checkpoint_id

        if self.app_id is None:
            self.app_id = f"connector-bench-{checkpoint_id(self.checkpoint)}"
        events = self._write(batch.where(F.col("reject_reason").isNull()).select(*EVENTS.names), "events",
                             EVENTS_PARTITIONS, batch_id, EVENTS_WRITE_OPTIONS)
        self.rows["events"] += events
        if events != offsets_in_batch(self.checkpoint, batch_id):
            self.second_reads += 1
            self.rows["dead_letter"] += self._write(dead_letters(batch), "dead_letter", DEAD_LETTER_PARTITIONS,
                                                    batch_id)


def run_builtin_once(spark: Any, settings: Any, work: Path, watch: ProcessWatch) -> dict[str, float]:
    """B over the whole topic (Trigger.AvailableNow), from a fresh checkpoint into work/data."""
    from incident_contracts.catalog import default_catalog
    from incident_contracts.table_store import TableStore
    from incident_stream.metrics import MetricsRecorder

    shutil.rmtree(work, ignore_errors=True)
    store = TableStore(str(work / "data"))
    checkpoint = work / "checkpoint" / BUILTIN_QUERY
    metrics = MetricsRecorder(store)
    sink = BuiltinSink(store, checkpoint)
    reader = (spark.readStream.format("kafka").option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
              .option("subscribe", settings.kafka_topic_logs).option("startingOffsets", "earliest")
              .option("failOnDataLoss", "true")
              .option("maxOffsetsPerTrigger", str(settings.stream_max_records_per_trigger)))
    for key, value in BUILTIN_FETCH.items():
        reader = reader.option(key, value)
    frame = builtin_events(reader.load(), settings, default_catalog())
    jvm_cpu, workers_cpu = watch.cpu_split()
    started = time.perf_counter()
    spark.streams.addListener(metrics)
    query = None
    try:
        query = (frame.writeStream.queryName(BUILTIN_QUERY).foreachBatch(sink)
                 .option("checkpointLocation", str(checkpoint)).trigger(availableNow=True).start())
        query.awaitTermination()
        if query.exception() is not None:
            raise RuntimeError(str(query.exception()))
    finally:
        if query is not None and query.isActive:
            query.stop()
        spark.streams.removeListener(metrics)
    metrics.catch_up([query])
    metrics.flush()
    wall = time.perf_counter() - started
    jvm_after, workers_after = watch.cpu_split()
    activity = metrics.activity.get(BUILTIN_QUERY)
    if activity is None or not activity.batches:
        raise RuntimeError("the built-in connector's query reported no progress")
    busy = activity.busy_ms / 1000
    events = sink.rows["events"]
    jvm_cpu, workers_cpu = jvm_after - jvm_cpu, workers_after - workers_cpu
    return {"events": events, "dead_letter": sink.rows["dead_letter"], "busy_s": busy, "wall_s": wall,
            "rate": events / busy if busy else 0.0, "wall_rate": events / wall, "batches": activity.batches,
            "cpu_s": jvm_cpu + workers_cpu, "jvm_cpu_s": jvm_cpu, "workers_cpu_s": workers_cpu,
            "files": len(store.open("events").file_uris()), "second_reads": sink.second_reads}


# --- the driver processes ------------------------------------------------------------------------

class JvmWatch(ProcessWatch):
    """spark_bench's watch, on the one JVM this session runs (the broker is a JVM too), counting the CPU time
    of Python processes that ended as well: their parent (the JVM, or the worker daemon) has reaped them, so
    their time is in the parent's children times."""

    def __init__(self, jvm_pid: int) -> None:
        super().__init__(exclude=set())
        self._jvm = psutil.Process(jvm_pid)

    def jvm(self) -> psutil.Process | None:
        return self._jvm if self._jvm.is_running() else None

    def cpu_split(self) -> tuple[float, float]:
        """CPU seconds so far of the driver JVM's own threads and of the Python processes below it."""
        jvm, live, ended = self.cpu_times()
        return jvm, live + ended

    def cpu_times(self) -> tuple[float, float, float]:
        """CPU seconds so far of the driver JVM's threads, of the Python processes below it that run, and of
        those that ended (in their parents' children times)."""
        jvm = live = ended = 0.0
        for index, process in enumerate(self.spark_processes()):
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            ended += times.children_user + times.children_system
            if index == 0:
                jvm += times.user + times.system
            else:
                live += times.user + times.system
        return jvm, live, ended


_STATE: dict[str, Any] = {}


def _driver_start(variant: str, bootstrap: str, jars: str) -> dict[str, Any]:
    """Runs in a driver process of its own: the Spark session of one variant and its watch."""
    from incident_contracts.settings import Settings
    from incident_stream.session import build_session

    settings = Settings(_env_file=None, kafka_bootstrap_servers=bootstrap, kafka_topic_logs=BACKLOG_TOPIC,  # type: ignore[call-arg]
                        kafka_consumer_group="")
    extra = {}
    if variant == BUILTIN:
        extra = {"spark.jars": jars, "spark.sql.maxConcurrentOutputFileWriters": str(CONCURRENT_OUTPUT_FILES),
                 "spark.sql.optimizer.plannedWrite.enabled": "false"}
    spark = build_session(settings, master="local[2]", ui=False, extra=extra)
    spark.sparkContext.setLogLevel("ERROR")
    jvm_pid = int(spark._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    watch = JvmWatch(jvm_pid).__enter__()
    _STATE.update(variant=variant, spark=spark, settings=settings, watch=watch)
    return {"pid": os.getpid(), "jvm_pid": jvm_pid}


def _driver_run(topic: str, work: str) -> dict[str, float]:
    """One ingest run of this process's variant over `topic` into `work` (fresh checkpoint and tables)."""
    from spark_bench import run_job_once

    spark, watch = _STATE["spark"], _STATE["watch"]
    settings = _STATE["settings"].model_copy(update={"kafka_topic_logs": topic, "data_dir": Path(work) / "data"})
    before = watch.cpu_times()
    if _STATE["variant"] == BUILTIN:
        result = run_builtin_once(spark, settings, Path(work), watch)
    else:
        result = run_job_once(spark, settings, Path(work), False, watch)
        result["dead_letter"] = _rows(Path(work) / "data", "dead_letter")
    after = watch.cpu_times()
    # Python processes that ended during the run (a query's source planner ends with the query): their
    # CPU time is in workers_cpu_s; this says how much of it.
    result["ended_cpu_s"] = after[2] - before[2]
    result["python_processes"] = len(watch.spark_processes()) - 1
    return result


def _driver_memory() -> dict[str, float]:
    watch = _STATE["watch"]
    return {f"{group}_mb": watch.peak_mb(group) for group in ("driver", "jvm", "python", "workers")}


def _driver_stop() -> None:
    _STATE["watch"].__exit__(None, None, None)
    _STATE["spark"].stop()


def _rows(data: Path, table: str) -> int:
    """Rows of the table's latest version."""
    from incident_contracts.table_store import TableStore

    return TableStore(str(data)).dataset(table).count_rows()


# --- the backlog and the bad records -------------------------------------------------------------

def _produce(bootstrap: str, count: int, warmup: int, pool_size: int) -> tuple[float, float]:
    from spark_bench import _produce_worker

    return _produce_worker(bootstrap, count, warmup, pool_size)


def bad_records(now_ms: int) -> list[tuple[str, bytes | None]]:
    """(what it is, Kafka value) of records each source must route like the codec: good events of both
    schema versions among every kind of bad record the job knows (a value over 1 MB cannot be produced)."""
    from incident_contracts import avro_schemas
    from incident_contracts.codec import Codec

    codec = Codec()
    good = codec.encode_many([dict(e, timestamp=now_ms) for e in event_pool(40, seed=11)])
    v1 = Codec(writer=avro_schemas.all_versions()[0])
    newest = avro_schemas.latest()
    base = codec.decode(good[0])

    def event(**changes: Any) -> bytes:
        return codec.encode({**base, **changes})

    old = {k: v for k, v in base.items() if k != "span_id"}
    kinds: list[tuple[str, bytes | None]] = [
        ("tombstone", None),
        ("empty", b""),
        ("bad magic", b"hello, not avro"),
        ("one byte", b"\xc3"),
        ("short header", b"\xc3\x01\x00\x01\x02"),
        ("unknown fingerprint", b"\xc3\x01" + bytes(8) + good[1][10:]),
        ("header only", good[1][:10]),
        ("body cut short", good[2][: len(good[2]) // 2]),
        ("garbage body", newest.fingerprint.join([b"\xc3\x01", b"\xff" * 24])),
        ("trailing bytes", good[3] + b"\x00\x00"),
        ("confluent framing", b"\x00\x00\x00\x00\x07" + good[4][10:]),
        ("confluent short", b"\x00\x00\x01"),
        ("30 days old", event(timestamp=now_ms - 30 * 86_400_000)),
        ("a day ahead", event(timestamp=now_ms + 86_400_000)),
        ("blank service", event(service="  ")),
        ("blank event id", event(event_id="")),
        ("schema v1 event", v1.encode({**old, "timestamp": now_ms})),
    ]
    return [(f"good {i}", v) for i, v in enumerate(good[5:25])] + kinds + [
        (f"good {i}", v) for i, v in enumerate(good[25:], start=20)]


def produce_bad(bootstrap: str) -> list[str]:
    """The bad-record topic (one partition, in this order); the kind of the record at each offset."""
    from confluent_kafka import Producer

    records = bad_records(int(time.time() * 1000))
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for _kind, value in records:
        producer.produce(BAD_TOPIC, value, partition=0)
    assert producer.flush(60) == 0
    return [kind for kind, _ in records]


# --- correctness ---------------------------------------------------------------------------------

def compare_events(a: Path, b: Path) -> dict[str, Any]:
    """Row counts of both events tables (`a`, `b`: data folders) and, per column (ingest_time aside), rows where
    B differs from A for the same Kafka record; rows present on one side only count as differing."""
    import duckdb

    from incident_contracts.table_store import TableStore
    from incident_contracts.tables import EVENTS

    columns = [name for name in EVENTS.names if name not in ("ingest_time", "kafka_partition", "kafka_offset")]
    con = duckdb.connect()
    for name, path in (("a", a), ("b", b)):
        con.register(name, TableStore(str(path)).dataset("events"))
    counts = {name: con.execute(f"select count(*), count(distinct (kafka_partition, kafka_offset)) from {name}")
              .fetchone() for name in ("a", "b")}
    def distinct(c: str) -> str:  # a map's entries in key order: from_avro builds maps in hash order
        if c == "attributes":
            return f"list_sort(map_entries(a.{c})) is distinct from list_sort(map_entries(b.{c}))"
        return f"a.{c} is distinct from b.{c}"

    differing = ", ".join(f"count(*) filter (where {distinct(c)})" for c in columns)
    row = con.execute(f"select count(*) filter (where a.kafka_offset is null or b.kafka_offset is null), {differing} "
                      "from a full outer join b using (kafka_partition, kafka_offset)").fetchone()
    per_column = {c: int(n) for c, n in zip(columns, row[1:], strict=True) if n}
    examples = {c: [str(v) for v in con.execute(
        f"select a.{c}, b.{c} from a join b using (kafka_partition, kafka_offset) where {distinct(c)} "
        "limit 1").fetchone() or ()] for c in per_column}
    any_difference = con.execute(
        "select count(*) from a full outer join b using (kafka_partition, kafka_offset) where "
        + " or ".join(["a.kafka_offset is null", "b.kafka_offset is null",
                       *[distinct(c) for c in columns]])).fetchone()[0]
    return {"a_rows": counts["a"][0], "a_distinct": counts["a"][1], "b_rows": counts["b"][0],
            "b_distinct": counts["b"][1], "one_side_only": int(row[0]), "rows_differing": int(any_difference),
            "columns_differing": per_column, "examples": examples}


def file_schemas(a: Path, b: Path) -> list[str]:
    """Columns whose Parquet type differs between a committed file of A's events table and one of B's (`a`,
    `b`: data folders)."""
    import pyarrow.parquet as pq

    from incident_contracts.table_store import TableStore

    fa, fb = (TableStore(str(data)).open("events").file_uris()[0] for data in (a, b))
    sa, sb = pq.read_schema(fa), pq.read_schema(fb)
    names = sorted(set(sa.names) | set(sb.names))
    return [f"{n}: {sa.field(n).type if n in sa.names else '-'} / {sb.field(n).type if n in sb.names else '-'}"
            for n in names if n not in sa.names or n not in sb.names or not sa.field(n).type.equals(sb.field(n).type)]


def routing(data: Path) -> dict[int, str]:
    """{offset: "events" or the dead-letter reason} of the bad-record topic's run."""
    from incident_contracts.table_store import TableStore

    store = TableStore(str(data))
    placed: dict[int, str] = {}
    for offset in store.read("events", ["kafka_offset"]).column("kafka_offset").to_pylist():
        placed[int(offset)] = "events" if int(offset) not in placed else "duplicate"
    dead = store.read("dead_letter", ["kafka_offset", "reason"]).to_pydict()
    for offset, reason in zip(dead["kafka_offset"], dead["reason"], strict=True):
        placed[int(offset)] = reason if int(offset) not in placed else "duplicate"
    return placed


def compare_routing(kinds: list[str], a: dict[int, str], b: dict[int, str]) -> dict[str, Any]:
    """Records B puts elsewhere than A (events vs dead letters), and those both reject for other reasons."""
    placed_elsewhere, other_reason = [], []
    for offset, kind in enumerate(kinds):
        where_a, where_b = a.get(offset, "missing"), b.get(offset, "missing")
        if (where_a == "events") != (where_b == "events") or "missing" in (where_a, where_b):
            placed_elsewhere.append(f"{kind}: A {where_a}, B {where_b}")
        elif where_a != where_b:
            other_reason.append(f"{kind}: A {where_a}, B {where_b}")
    return {"records": len(kinds), "a_events": sum(v == "events" for v in a.values()),
            "b_events": sum(v == "events" for v in b.values()), "placed_elsewhere": placed_elsewhere,
            "other_reason": other_reason}


# --- the run -------------------------------------------------------------------------------------

def ratio_samples(a: list[float], b: list[float]) -> list[float]:
    """A/B of each repeat's pair (the two runs of one repeat ran back to back)."""
    return [x / y for x, y in zip(a, b, strict=True) if y]


def abba(repeats: int) -> list[tuple[int, str]]:
    """(repeat, variant) in the order they run: A B, B A, A B, ..."""
    order = []
    for i in range(repeats):
        pair = (PRODUCT, BUILTIN) if i % 2 == 0 else (BUILTIN, PRODUCT)
        order += [(i, v) for v in pair]
    return order


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="150k events, 2 repetitions (about 3 minutes)")
    parser.add_argument("--json", default=None, help="write the results as JSON here")
    parser.add_argument("--events", type=int, default=None, help="backlog size (default 2,000,000; quick 150,000)")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions of each (default 3; quick 2)")
    args = parser.parse_args()
    count = args.events or (150_000 if args.quick else 2_000_000)
    repeats = args.repeats or (2 if args.quick else 3)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    from incident_stack.jars import classpath, fetch

    fetch(JAR_SET)  # from Maven Central when not in .jars yet; verified against the pinned digests
    jars = classpath(JAR_SET).replace(os.pathsep, ",")

    work = Path(tempfile.mkdtemp(prefix="connector-bench-"))
    port = free_port()
    broker = start_broker("127.0.0.1", port, work / "broker.log")
    bootstrap = f"127.0.0.1:{port}"
    spawn = get_context("spawn")
    producer = ProcessPoolExecutor(max_workers=1, mp_context=spawn)
    drivers = {v: ProcessPoolExecutor(max_workers=1, mp_context=spawn) for v in (PRODUCT, BUILTIN)}
    try:
        wait_for_broker(bootstrap, timeout=60)
        ensure_topics(bootstrap, [TopicSpec(BACKLOG_TOPIC, partitions=2), TopicSpec(WARMUP_TOPIC, partitions=2),
                                  TopicSpec(BAD_TOPIC, partitions=1)])
        warmup = QUICK_WARMUP_EVENTS if args.quick else WARMUP_EVENTS
        size, produce_s = producer.submit(_produce, bootstrap, count, warmup,
                                          20_000 if args.quick else 50_000).result(timeout=1200)
        producer.shutdown()
        kinds = produce_bad(bootstrap)
        ends = end_offsets(bootstrap, BACKLOG_TOPIC)
        assert sum(ends.values()) == count, f"backlog has {sum(ends.values())} records, expected {count}"
        print(f"backlog: {count:,} events ({size:.0f} B each) produced in {produce_s:.1f}s; end offsets {ends}; "
              f"{len(kinds)} records on {BAD_TOPIC}", flush=True)

        started = {v: pool.submit(_driver_start, v, bootstrap, jars) for v, pool in drivers.items()}
        pids = {v: f.result(timeout=300) for v, f in started.items()}
        for variant in (PRODUCT, BUILTIN):  # one at a time: each warms its JVM up alone
            warm = drivers[variant].submit(_driver_run, WARMUP_TOPIC, str(work / f"warm-{variant}")).result(3600)
            print(f"warm-up {variant} ({NAMES[variant]}, JVM pid {pids[variant]['jvm_pid']}): "
                  f"{warm['events']:,} events in {warm['wall_s']:.1f}s", flush=True)
            shutil.rmtree(work / f"warm-{variant}", ignore_errors=True)

        runs: dict[str, list[dict[str, float]]] = {PRODUCT: [], BUILTIN: []}
        load: list[float] = []
        for i, variant in abba(repeats):
            out = work / f"run-{variant}{i}"
            result = drivers[variant].submit(_driver_run, BACKLOG_TOPIC, str(out)).result(timeout=3600)
            assert result["events"] == count, f"{variant} wrote {result['events']} events of {count}: {result}"
            runs[variant].append(result)
            load.append(os.getloadavg()[0])
            reads = f", read twice: {result['second_reads']}" if "second_reads" in result else ""
            print(f"{variant} {i + 1}/{repeats}: {result['rate']:>10,.0f} events/s, "
                  f"{result['cpu_s'] / count * 1e6:.1f} CPU us/event (JVM {result['jvm_cpu_s'] / count * 1e6:.1f} "
                  f"+ Python {result['workers_cpu_s'] / count * 1e6:.1f}, of which ended processes "
                  f"{result['ended_cpu_s'] / count * 1e6:.1f}), wall {result['wall_rate']:,.0f} events/s, "
                  f"{result['batches']} batches{reads}, "
                  f"load {load[-1]:.1f}", flush=True)
            if i > 0:
                shutil.rmtree(out, ignore_errors=True)

        events = compare_events(work / "run-A0" / "data", work / "run-B0" / "data")
        schema_differences = file_schemas(work / "run-A0" / "data", work / "run-B0" / "data")
        print(f"correctness: {json.dumps(events)}; Parquet types differing: {schema_differences or 'none'}",
              flush=True)
        for variant in (PRODUCT, BUILTIN):
            shutil.rmtree(work / f"run-{variant}0", ignore_errors=True)
            drivers[variant].submit(_driver_run, BAD_TOPIC, str(work / f"bad-{variant}")).result(timeout=600)
        bad = compare_routing(kinds, routing(work / "bad-A" / "data"), routing(work / "bad-B" / "data"))
        print(f"bad records: {json.dumps(bad)}", flush=True)
        memory = {v: pool.submit(_driver_memory).result(timeout=60) for v, pool in drivers.items()}
        for pool in drivers.values():
            pool.submit(_driver_stop).result(timeout=120)

        a, b = runs[PRODUCT], runs[BUILTIN]

        def per_event(rows: list[dict[str, float]], key: str) -> list[float]:
            return [r[key] / count * 1e6 for r in rows]

        rate_ratio = ratio_samples([r["rate"] for r in a], [r["rate"] for r in b])
        cpu_ratio = ratio_samples(per_event(b, "cpu_s"), per_event(a, "cpu_s"))
        metrics = [
            median_metric("A Python source (product) -> events Parquet", [r["rate"] for r in a], "events/s",
                          note=f"{count:,} events, local[2], 2 partitions; the job without detection"),
            median_metric("B Spark Kafka connector + from_avro -> events Parquet", [r["rate"] for r in b],
                          "events/s",
                          note="spark-sql-kafka-0-10 + spark-avro, Spark SQL enrichment, Spark's Parquet writer"),
            median_metric("rate A / B (same repeat)", rate_ratio, "x", target=1.0,
                          note="the product keeps the faster source: >= 1 means the Python source is faster"),
            median_metric("A wall rate (query start and stop)", [r["wall_rate"] for r in a], "events/s"),
            median_metric("B wall rate (query start and stop)", [r["wall_rate"] for r in b], "events/s"),
            median_metric("A CPU per event (JVM + Python workers)", per_event(a, "cpu_s"), "us",
                          note="JVM {:.1f} + workers {:.1f}".format(statistics.median(per_event(a, "jvm_cpu_s")),
                                                                    statistics.median(per_event(a, "workers_cpu_s")))),
            median_metric("B CPU per event (JVM + Python workers)", per_event(b, "cpu_s"), "us",
                          note="JVM {:.1f} + workers {:.1f}".format(statistics.median(per_event(b, "jvm_cpu_s")),
                                                                    statistics.median(per_event(b, "workers_cpu_s")))),
            median_metric("CPU per event B / A (same repeat)", cpu_ratio, "x"),
            Metric("A driver peak RSS (JVM + Python)", memory[PRODUCT]["driver_mb"], "MB",
                   target=DRIVER_MEMORY_TARGET_MB, op="<=",
                   note=f"JVM {memory[PRODUCT]['jvm_mb']:,.0f} MB; "
                        f"Python workers {memory[PRODUCT]['workers_mb']:,.0f} MB"),
            Metric("B driver peak RSS (JVM + Python)", memory[BUILTIN]["driver_mb"], "MB",
                   target=DRIVER_MEMORY_TARGET_MB, op="<=",
                   note=f"JVM {memory[BUILTIN]['jvm_mb']:,.0f} MB; "
                        f"Python workers {memory[BUILTIN]['workers_mb']:,.0f} MB"),
            Metric("B events rows differing from A (all columns but ingest_time)", events["rows_differing"], "rows",
                   target=0, op="<=", note=f"A {events['a_rows']:,} rows, B {events['b_rows']:,}"),
            Metric("bad records B places elsewhere than A", len(bad["placed_elsewhere"]), "records",
                   note="; ".join(bad["placed_elsewhere"]) or f"all {bad['records']} as A"),
        ]
        emit("connector", metrics, args.json, events=count, repeats=repeats, order=abba(repeats),
             cores=os.cpu_count(), load_average=os.getloadavg(), load_per_run=load, event_bytes=round(size),
             runs={NAMES[v]: rows for v, rows in runs.items()}, memory={NAMES[v]: m for v, m in memory.items()},
             events_check=events, parquet_type_differences=schema_differences, bad_records=bad,
             connector_jars=sorted(Path(p).name for p in jars.split(",")))
        return 0
    finally:
        for pool in drivers.values():
            pool.shutdown(wait=False, cancel_futures=True)
        producer.shutdown(wait=False, cancel_futures=True)
        os.killpg(broker.pid, signal.SIGTERM)
        broker.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
