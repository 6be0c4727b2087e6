"""The streaming job: Kafka -> decode -> enrich -> events / dead_letter, and detection -> incident_updates.

One streaming query, ``logs`` (checkpoint ``<checkpoint>/logs``), reads each offset range once with the
job's source (logs_source.py): its tasks decode and enrich their range, write it as new Parquet files of
the events and dead_letter Delta tables, and hand partial buckets to the detector, one stateful operator
(detection/stream.py). The sink (BatchSink) then commits, under the micro-batch's id: the files the tasks
wrote (one Delta commit per table, TableStore.commit_files; it finds them in the tasks' manifests,
batch_staging.py), and the detector's incident updates and counters.

Each commit records the query's application id (its checkpoint's id) and the micro-batch id in the
table: Spark replays a batch whose end did not reach the checkpoint, and the table recognises a batch
it already holds, so every row is committed exactly once. The detector's state is Spark's, versioned
with the batch, so a replayed batch sees the state its first attempt saw. The job holds the checkpoint's
and the tables' writer locks (incident_contracts.writer_lock) from start to exit: a second job is refused.

Run modes: continuous (processing-time trigger), ``available_now`` (everything already in the topic,
then stop), or idle stop (stop once no record arrived for N seconds). SIGTERM/SIGINT stop gracefully:
the running micro-batch finishes, the query stops, the metrics are written, a summary is returned.
The job never compacts: merging small files, retention and vacuum are table maintenance's job
(incident_contracts.table_maintenance: the table_maintenance DAG, `make maintain`), which commits beside
a running job, so no micro-batch waits for it or fails with it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from incident_contracts.catalog import Catalog, default_catalog
from incident_contracts.settings import Settings
from incident_contracts.spark_start import TRANSIENT_START_ERRORS
from incident_contracts.stream_summary import SUMMARY_KIND
from incident_contracts.table_store import TableStore
from incident_contracts.tables import METRICS, TABLES
from incident_contracts.writer_lock import writer_lock
from incident_stream.batch_staging import BatchStaging, StagedBatch, StagingError
from incident_stream.detection.output import COUNTER_UPDATE, counter_metric_rows
from incident_stream.detection.partials import PartialsConfig
from incident_stream.detection.stream import detect_partials, params_from_settings, partials_config
from incident_stream.enrich_arrow import ServiceLookup
from incident_stream.ingest_files import DEAD_LETTER_TABLE, EVENTS_TABLE
from incident_stream.logs_source import (
    DETECTION_OPTION,
    LOGS_SOURCE_NAME,
    SERVICES_OPTION,
    STORAGE_OPTION,
    TABLES_OPTION,
)
from incident_stream.metrics import MetricsRecorder
from incident_stream.prometheus import JobMetrics

log = logging.getLogger("incident_stream")

LOGS = "logs"  # the query, and its checkpoint's sub-folder
UPDATES_TABLE = "incident_updates"
LEGACY_INGEST, LEGACY_DETECTION = "ingest", "detection"  # the earlier job's two queries
STOP_GRACE_SECONDS = 60.0
MAX_QUERY_RESTARTS = 3


@dataclass
class JobOptions:
    data_dir: Path | str  # the tables' root: a folder or s3://bucket/prefix
    checkpoint: Path
    once: bool = False
    idle_stop_seconds: float = 0.0
    trigger_seconds: float = 2.0
    starting_offsets: str = "earliest"
    max_records_per_trigger: int | None = None
    fail_on_data_loss: bool = True
    run_id: str | None = None
    detection: bool = True

    @property
    def mode(self) -> str:
        if self.once:
            return "available-now"
        return "idle-stop" if self.idle_stop_seconds > 0 else "continuous"


@dataclass
class Counters:
    """Rows written during this run (the sink updates them)."""

    events: int = 0
    dead_letter: int = 0
    incident_updates: int = 0
    batches: int = 0
    commit_seconds: list[float] = field(default_factory=list)  # per micro-batch: every table's commit
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **rows: int) -> None:
        with self.lock:
            self.batches += 1
            for name, count in rows.items():
                setattr(self, name, getattr(self, name) + count)


def source_options(settings: Settings, options: JobOptions) -> dict[str, str]:
    """The Kafka options (kafka_source.py) of the job's source."""
    values = {
        "kafka.bootstrap.servers": settings.kafka_bootstrap_servers,
        "subscribe": settings.kafka_topic_logs,
        "startingOffsets": options.starting_offsets,
        "failOnDataLoss": str(options.fail_on_data_loss).lower(),
        "schemaRegistryUrl": settings.schema_registry_url,
        "maxEventAgeSeconds": str(settings.stream_max_event_age_hours * 3600),
        "maxFutureSeconds": str(settings.stream_max_future_seconds),
    }
    if options.max_records_per_trigger:
        values["maxOffsetsPerTrigger"] = str(options.max_records_per_trigger)
    if settings.kafka_consumer_group:
        values["commitGroup"] = settings.kafka_consumer_group
    return values


def checkpoint_id(checkpoint: Path) -> str:
    """The id of a query's checkpoint (from Spark's metadata file): a fresh checkpoint gets a new one."""
    metadata = checkpoint / "metadata"
    for _ in range(50):
        if metadata.exists():
            try:
                return str(json.loads(metadata.read_text().splitlines()[0])["id"])
            except (ValueError, KeyError, IndexError):
                pass
        time.sleep(0.1)
    raise RuntimeError(f"the streaming checkpoint {checkpoint} has no readable metadata file")


def last_committed_batch(checkpoint: Path) -> int | None:
    commits = checkpoint / "commits"
    if not commits.is_dir():
        return None
    ids = [int(p.name) for p in commits.iterdir() if p.name.isdigit()]
    return max(ids) if ids else None


def batch_end_offsets(checkpoint: Path, batch_id: int, raw: bool = False) -> dict | None:
    """{partition: offset} a batch reads up to, from the query's offset log (written before the batch runs);
    with `raw`, the source's whole end offset as logged."""
    path = checkpoint / "offsets" / str(batch_id)
    try:
        last = path.read_text(encoding="utf-8").strip().splitlines()[-1]
        offset = json.loads(last)
        return offset if raw else {str(p): int(o) for p, o in offset["offsets"].items()}
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def checkpoint_end_offsets(checkpoint: Path) -> dict[str, int] | None:
    """{partition: offset} the query's last committed batch reads up to (from its offset log)."""
    batch = last_committed_batch(checkpoint)
    return None if batch is None else batch_end_offsets(checkpoint, batch)


def logs_options(catalog: Catalog, store: TableStore, detection: PartialsConfig | None) -> dict[str, str]:
    """Options of the job's source beside the Kafka ones (logs_source.py): its tasks enrich the events with
    the service catalog, write them and the dead letters into the tables, and aggregate partial buckets for
    detection. Object-store credentials are not among them: executors read them from their environment
    (AWS_*)."""
    public = {k: v for k, v in store.storage_options.items() if k not in SECRET_OPTIONS}
    options = {TABLES_OPTION: store.root, STORAGE_OPTION: json.dumps(public),
               SERVICES_OPTION: json.dumps(ServiceLookup.of(catalog).to_dict())}
    if detection is not None:
        options[DETECTION_OPTION] = detection.to_json()
    return options


def legacy_start(checkpoint: Path, topic: str, store: TableStore | None = None) -> dict[str, str]:
    """Where a new query starts when the checkpoint folder holds the earlier job's two queries (ingest and
    detection) but not yet this one: after the last batch of the ingest query in the events table (its
    checkpoint's last commit, or the batch after it when the job died between the table's commit and
    Spark's), so no event is written twice. Detection starts without history (its state was the detection
    query's)."""
    if last_committed_batch(checkpoint / LOGS) is not None:
        return {}
    ingest = checkpoint / LEGACY_INGEST
    done = last_committed_batch(ingest)
    if done is None:
        return {}
    if store is not None and (ingest / "metadata").exists():
        in_table = store.committed_version(EVENTS_TABLE, f"incident-stream-{LEGACY_INGEST}-{checkpoint_id(ingest)}")
        if in_table is not None and in_table > done and batch_end_offsets(ingest, in_table) is not None:
            done = in_table
    legacy = batch_end_offsets(ingest, done)
    if not legacy:
        return {}
    log.warning("%s holds the checkpoint of the earlier two-query job: the %r query starts after its last "
                "committed batch (%s); detection learns its baselines anew. Once this run has committed a "
                "batch, the folders %s/ and %s/ are no longer used and can be deleted.", checkpoint, LOGS,
                json.dumps(legacy), LEGACY_INGEST, LEGACY_DETECTION)
    return {"startingOffsets": json.dumps({topic: legacy})}


SECRET_OPTIONS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class BatchSink:
    """foreachBatch of the query: runs the batch (its tasks write the table files, the detector its
    updates), then commits the files, the detector's counters and its incident updates, each table once
    per micro-batch id."""

    def __init__(self, store: TableStore, checkpoint: Path, counters: Counters, metrics: MetricsRecorder,
                 prometheus: JobMetrics | None = None, run_id: str | None = None):
        self.store = store
        self.checkpoint = checkpoint
        self.counters = counters
        self.metrics = metrics
        self.prometheus = prometheus
        self.run_id = run_id
        self.staging = BatchStaging.of(store)
        self._app_id: str | None = None

    @property
    def app_id(self) -> str:
        """The application id commits carry: one per checkpoint (a fresh checkpoint starts over)."""
        if self._app_id is None:
            self._app_id = f"incident-stream-{LOGS}-{checkpoint_id(self.checkpoint)}"
        return self._app_id

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        updates = batch.toArrow()  # runs the batch: the source's tasks write their files, the detector runs
        end = batch_end_offsets(self.checkpoint, batch_id, raw=True)
        if end is None:
            raise StagingError(f"micro-batch {batch_id} has no entry in {self.checkpoint / 'offsets'}")
        ran = time.perf_counter()
        rows = self.commit(batch_id, self.staging.batch(end), updates)
        if any(rows.values()):  # an idle stream's empty batches say nothing
            log.info("batch %d: %s events, %s dead letters, %s incident updates committed in %.1f s "
                     "(tasks and detector %.1f s, commit %.2f s)", batch_id, f"{rows[EVENTS_TABLE]:,}",
                     f"{rows[DEAD_LETTER_TABLE]:,}", f"{rows[UPDATES_TABLE]:,}", time.perf_counter() - started,
                     ran - started, time.perf_counter() - ran)

    def commit(self, batch_id: int, staged: StagedBatch, updates: pa.Table) -> dict[str, int]:
        """Commit the batch's staged files and the detector's rows; the rows each table gained (0 for a
        table that already held the batch)."""
        started = time.perf_counter()
        rows = {}
        for table in (EVENTS_TABLE, DEAD_LETTER_TABLE):
            written, discarded = staged.files.get(table, []), staged.discarded.get(table, [])
            rows[table] = sum(f.rows for f in written)
            if written and not self.store.commit_files(table, written, self.app_id, batch_id):
                log.info("batch %d is already in %s (a replay): its new files are dropped", batch_id, table)
                # the staged files are normally all new, but a manifest of the committed attempt may have
                # outlived a failed clear(): delete only what the table does not name
                live = self.store.committed_paths(table)
                self.store.delete_files(table, [f for f in [*written, *discarded] if f.path not in live])
                rows[table] = 0
            else:
                self.store.delete_files(table, discarded)
        added = self._commit_updates(batch_id, updates)
        self.staging.clear()
        with self.counters.lock:
            self.counters.commit_seconds.append(time.perf_counter() - started)
        self.counters.add(events=rows[EVENTS_TABLE], dead_letter=rows[DEAD_LETTER_TABLE], incident_updates=added)
        self.metrics.count_records(LOGS, batch_id, rows[EVENTS_TABLE] + rows[DEAD_LETTER_TABLE])
        if self.prometheus is not None and rows[DEAD_LETTER_TABLE]:
            self.prometheus.dead_letters.inc(rows[DEAD_LETTER_TABLE])
        return {**rows, UPDATES_TABLE: added}

    def _commit_updates(self, batch_id: int, rows: pa.Table) -> int:
        """The detector's rows: counters (late events per service, environment-wide silences) to metrics,
        incident lifecycle rows to incident_updates; the number of the latter committed."""
        if "update_type" not in rows.column_names:  # the job runs without detection
            return 0
        counter = pc.equal(rows.column("update_type"), COUNTER_UPDATE)
        if rows.num_rows and pc.any(counter).as_py():
            metric_rows = counter_metric_rows(rows.filter(counter).to_pylist(), batch_id, self.run_id)
            self.store.append("metrics", pa.Table.from_pylist(metric_rows, schema=METRICS),
                              f"{self.app_id}-counters", batch_id)
            rows = rows.filter(pc.invert(counter))
        # An empty batch (every trigger of an idle stream) commits nothing: replaying it writes nothing either.
        if rows.num_rows and self.store.append(UPDATES_TABLE, rows, self.app_id, batch_id):
            return rows.num_rows
        return 0



class StreamJob:
    def __init__(self, spark: SparkSession, settings: Settings, options: JobOptions,
                 catalog: Catalog | None = None, prometheus: JobMetrics | None = None):
        self.spark = spark
        self.settings = settings
        self.options = options
        self.catalog = catalog or default_catalog()
        self.counters = Counters()
        self.query: StreamingQuery | None = None  # the `logs` query (its latest start)
        self.store = TableStore.at(options.data_dir, settings)
        self.prometheus = prometheus
        self.metrics = MetricsRecorder(self.store, run_id=options.run_id, observer=prometheus)
        self.stop_reason: str | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._build: Callable[[], StreamingQuery] | None = None
        self._started_queries: list[StreamingQuery] = []  # restarted starts included
        self._restarts = 0

    # --- building the queries ---------------------------------------------------------------------
    def _source(self, extra: dict[str, str]) -> DataFrame:
        reader = self.spark.readStream.format(LOGS_SOURCE_NAME)
        for key, value in {**source_options(self.settings, self.options), **extra}.items():
            reader = reader.option(key, value)
        return reader.load()

    def _trigger(self) -> dict[str, Any]:
        if self.options.once:
            return {"availableNow": True}
        return {"processingTime": f"{self.options.trigger_seconds:g} seconds"}

    def start(self) -> None:
        for table in TABLES:  # created before any task writes a file into a table's folder
            self.store.create(table)
        self.spark.streams.addListener(self.metrics)
        checkpoint = self.options.checkpoint / LOGS
        sink = BatchSink(self.store, checkpoint, self.counters, self.metrics, self.prometheus, self.options.run_id)
        params = params_from_settings(self.settings)
        detection = partials_config(params) if self.options.detection else None
        extra = {**logs_options(self.catalog, self.store, detection),
                 **legacy_start(self.options.checkpoint, self.settings.kafka_topic_logs, self.store)}

        def query() -> StreamingQuery:
            sink.staging.clear()  # what a batch left before a crash or a restart is in no commit
            stream = self._source(extra)
            if detection is not None:
                stream = detect_partials(stream, self.catalog, params, counters=True)
            return (stream.writeStream.queryName(LOGS)
                    .foreachBatch(sink)
                    .option("checkpointLocation", str(checkpoint))
                    .trigger(**self._trigger()).start())

        self._build = query
        self._launch()

    def _launch(self) -> None:
        assert self._build is not None
        self.query = self._build()
        self._started_queries.append(self.query)

    def _restart_if_transient(self, query: StreamingQuery) -> bool:
        """Restart the query when it failed to start its Python source process (a busy machine); True if so."""
        message = str(query.exception())
        if not any(text in message for text in TRANSIENT_START_ERRORS) or self._restarts >= MAX_QUERY_RESTARTS:
            return False
        self._restarts += 1
        log.warning("query %s could not start its Python source process (%s); restarting it (%d/%d)", query.name,
                    message.splitlines()[0], self._restarts, MAX_QUERY_RESTARTS)
        self._launch()
        return True

    # --- running ----------------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    def _idle_for(self) -> float:
        activity = self.metrics.activity.get(LOGS)
        since = activity.last_input_time if activity else self._started
        return time.monotonic() - since

    def _poll_progress(self) -> None:
        """Record the query's newest progress report now, whatever the listener's delay."""
        with contextlib.suppress(Exception):  # a query being torn down
            progress = self.query.lastProgress if self.query is not None else None
            if progress is not None:
                self.metrics.record(json.loads(progress.json))

    def wait(self) -> None:
        """Block until the run ends: the query finished (available-now), idle, failed or asked to stop."""
        self._started = time.monotonic()
        while not self._stop.is_set():
            self._poll_progress()
            query = self.query
            assert query is not None, "wait() before start()"
            if query.exception() is not None:
                if not self._restart_if_transient(query):
                    self.error = str(query.exception())
                    self.request_stop(f"query {query.name} failed")
                    break
                self._stop.wait(0.5)
                continue  # the restarted query is looked at on the next turn
            if not query.isActive:
                self.request_stop("all data processed" if self.options.once else "query ended")
                break
            idle = self.options.idle_stop_seconds
            if idle > 0 and not self.options.once and self._idle_for() >= idle and not self._busy():
                self.request_stop(f"topic idle for {idle:g}s")
                break
            self._stop.wait(0.5)

    def _busy(self) -> bool:
        return self.query is not None and self.query.isActive and bool(self.query.status.get("isTriggerActive"))

    def stop(self) -> None:
        """Stop the query once its running batch is done, then record the metrics.

        Progress reports reach the listener asynchronously: once the query stopped, the listener is removed
        and the reports it has not delivered yet are taken from the query's own history (of each start), so
        the metrics table and the summary cover every batch.
        """
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        query = self.query
        if query is not None:
            while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
                time.sleep(0.2)
            if query.isActive:
                query.stop()
        with contextlib.suppress(Exception):  # the session may already be gone
            self.spark.streams.removeListener(self.metrics)
        self.metrics.catch_up(self._started_queries)
        self.metrics.flush()

    # --- reporting --------------------------------------------------------------------------------
    def summary(self, elapsed: float) -> dict[str, Any]:
        activity = self.metrics.activity.get(LOGS)
        busy_s = (activity.busy_ms / 1000) if activity else 0.0
        end_offsets = checkpoint_end_offsets(self.options.checkpoint / LOGS)
        return {
            "summary": SUMMARY_KIND,
            "run_id": self.options.run_id,
            "mode": self.options.mode,
            "status": "failed" if self.error else "finished",
            "stopped_by": self.stop_reason,
            "error": self.error,
            "topic": self.settings.kafka_topic_logs,
            "events_written": self.counters.events,
            "dead_letter_written": self.counters.dead_letter,
            "incident_updates_written": self.counters.incident_updates,
            "batches": self.counters.batches,
            "input_rows": activity.input_rows if activity else 0,
            "end_offsets": end_offsets,
            "detection": self.options.detection,
            "elapsed_s": round(elapsed, 2),
            "commit_ms_p95": _p95_ms(self.counters.commit_seconds),
            "rows_per_second": round(activity.input_rows / busy_s, 1) if activity and busy_s else 0.0,
        }


def _p95_ms(seconds: list[float]) -> float | None:
    """The 95th percentile (nearest rank) of the batches' commit durations, in milliseconds."""
    if not seconds:
        return None
    ordered = sorted(seconds)
    return round(ordered[max(0, -(-95 * len(ordered) // 100) - 1)] * 1000, 1)


def install_signal_handlers(job: StreamJob) -> None:
    def handle(signum: int, _frame: Any) -> None:
        log.warning("received %s: stopping after the running micro-batch", signal.Signals(signum).name)
        job.request_stop(signal.Signals(signum).name)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)


def run_job(spark: SparkSession, settings: Settings, options: JobOptions, catalog: Catalog | None = None,
            *, handle_signals: bool = True, hold_lock: bool = True,
            prometheus: JobMetrics | None = None) -> dict[str, Any]:
    """Run the job until its mode says stop; returns the summary (also for a failed run). It holds the
    writer locks throughout (raising WriterBusy when another job has them) unless the caller already does.
    `prometheus`: the metric objects the run updates (served by the caller, incident_stream.cli)."""
    started = time.monotonic()
    job = StreamJob(spark, settings, options, catalog, prometheus)
    if handle_signals:
        install_signal_handlers(job)
    lock = writer_lock(options.checkpoint, job.store, options.run_id or "manual") if hold_lock \
        else contextlib.nullcontext()
    with lock:
        try:
            job.start()
            job.wait()
        except Exception as exc:  # a query that could not start: report it like a failed run
            job.error = f"{type(exc).__name__}: {exc}"
            job.request_stop("error")
        finally:
            job.stop()
    return job.summary(time.monotonic() - started)
