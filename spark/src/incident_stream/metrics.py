"""Streaming progress of every query, written as rows of the ``metrics`` table the dashboard reads.

A StreamingQueryListener turns each progress report into one METRICS row (input and processed rows/s,
batch duration, offsets, lag, state size). Rows are buffered and appended every ``flush_seconds`` in one
commit of the Delta table (TableStore.append); table maintenance merges the small files.
The listener also keeps the latest progress per query for the job's stop rules and summary, and hands
each new report to the job's Prometheus metrics when it has them (prometheus.JobMetrics).

Spark hands progress reports to listeners asynchronously, on its listener bus: on a busy machine the
reports of the last batches arrive after the queries ended, or never once the listener is removed.
:meth:`MetricsRecorder.catch_up` therefore records, when the job stops, whatever the queries' own
progress history (``StreamingQuery.recentProgress``) holds that the listener has not delivered yet;
a report is recorded once whichever path brings it first.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
from pyspark.sql.streaming import StreamingQueryListener

from incident_contracts.table_store import TableStore
from incident_contracts.tables import METRICS

log = logging.getLogger(__name__)

SEEN_LIMIT = 10_000  # progress reports remembered for de-duplication (Spark keeps the last 100 per query)
RECORDS_LIMIT = 1_000  # batches whose record counts are remembered until their progress report arrives


def _order(progress: dict[str, Any]) -> tuple[str, int]:
    return str(progress.get("timestamp") or ""), int(progress.get("batchId", -1))


def _partition_offsets(offset: Any) -> dict[str, int] | None:
    """{partition: offset} from a source offset as the progress reports it (dict or JSON text)."""
    if offset is None:
        return None
    if isinstance(offset, str):
        try:
            offset = json.loads(offset)
        except ValueError:
            return None
    if isinstance(offset, dict) and isinstance(offset.get("offsets"), dict):
        return {str(p): int(o) for p, o in offset["offsets"].items()}
    return None


def progress_row(progress: dict[str, Any], run_id: str | None, records: int | None = None) -> dict[str, Any]:
    """One METRICS row from a StreamingQueryProgress (as parsed JSON).

    `records`: the Kafka records the batch processed, for a query whose source rows are not records (the
    job's source hands Spark partial buckets, logs_source.py): the row counts and both rates then report
    records. Spark computes each rate from its row count, so they scale alike; a batch of records but no
    rows (dead letters only, or no detection) has no Spark rate to scale: both are records / its duration."""
    spark_rows = int(progress.get("numInputRows") or 0)
    duration_ms = int(progress.get("batchDuration") or progress.get("durationMs", {}).get("triggerExecution", 0))
    input_rate = float(progress.get("inputRowsPerSecond") or 0.0)
    processed_rate = float(progress.get("processedRowsPerSecond") or 0.0)
    if records is not None and spark_rows:
        input_rate, processed_rate = input_rate * records / spark_rows, processed_rate * records / spark_rows
    elif records is not None:
        input_rate = processed_rate = records / (duration_ms / 1000) if duration_ms else 0.0
    sources = progress.get("sources") or [{}]
    source = sources[0]
    start, end, latest = (_partition_offsets(source.get(k)) for k in ("startOffset", "endOffset", "latestOffset"))
    lag = None
    if end is not None and latest is not None:
        lag = sum(max(0, high - end.get(p, 0)) for p, high in latest.items())
    states = progress.get("stateOperators") or []
    stamp = dt.datetime.fromisoformat(progress["timestamp"].replace("Z", "+00:00"))
    return {
        "query_name": progress.get("name") or "unnamed",
        "query_id": progress.get("id"),
        "run_id": run_id or progress.get("runId"),
        "batch_id": int(progress.get("batchId", -1)),
        "timestamp": stamp,
        "num_input_rows": spark_rows if records is None else records,
        "input_rows_per_second": input_rate,
        "processed_rows_per_second": processed_rate,
        "batch_duration_ms": duration_ms,
        "state_rows": sum(int(s.get("numRowsTotal") or 0) for s in states) if states else None,
        "state_memory_bytes": sum(int(s.get("memoryUsedBytes") or 0) for s in states) if states else None,
        "start_offsets": json.dumps(start) if start is not None else None,
        "end_offsets": json.dumps(end) if end is not None else None,
        "latest_offsets": json.dumps(latest) if latest is not None else None,
        "lag": lag,
    }


class ProgressObserver(Protocol):
    def observe(self, progress: dict[str, Any], records: int | None = None, *, newest: bool = True) -> None: ...


@dataclass
class QueryActivity:
    last_progress: dict[str, Any] | None = None
    last_input_time: float = field(default_factory=time.monotonic)
    batches: int = 0
    input_rows: int = 0
    busy_ms: int = 0


class MetricsRecorder(StreamingQueryListener):
    def __init__(self, store: TableStore, run_id: str | None = None, flush_seconds: float = 10.0,
                 observer: ProgressObserver | None = None):
        self.store = store
        self.observer = observer
        self.run_id = run_id
        self.flush_seconds = flush_seconds
        self.activity: dict[str, QueryActivity] = {}
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._seen: set[tuple[Any, ...]] = set()
        self._seen_order: deque[tuple[Any, ...]] = deque()
        self._records: dict[tuple[str, int], int] = {}

    # --- listener callbacks (Spark's listener thread) -----------------------------------------
    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        try:
            progress = json.loads(event.progress.json)
        except (ValueError, TypeError) as exc:
            log.warning("ignoring a progress report that could not be read: %s", exc)
            return
        if self.record(progress):
            self._flush_if_due()

    def count_records(self, query_name: str, batch_id: int, records: int) -> None:
        """The records a batch of `query_name` processed, when its source rows are not records (called
        by the query's sink, before Spark reports the batch's progress)."""
        with self._lock:
            self._records[(query_name, batch_id)] = records
            while len(self._records) > RECORDS_LIMIT:
                del self._records[next(iter(self._records))]

    def record(self, progress: dict[str, Any]) -> bool:
        """Record one progress report (parsed JSON) unless it was recorded already; True if it was new."""
        try:
            with self._lock:
                records = self._records.get((progress.get("name") or "unnamed", int(progress.get("batchId", -1))))
            row = progress_row(progress, self.run_id, records)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a progress report that could not be read: %s", exc)
            return False
        key = (progress.get("runId"), row["batch_id"], progress.get("timestamp"))
        with self._lock:
            if key in self._seen:
                return False
            self._remember(key)
            activity = self.activity.setdefault(row["query_name"], QueryActivity())
            newest = activity.last_progress is None or _order(progress) >= _order(activity.last_progress)
            if newest:
                activity.last_progress = progress
            activity.batches += 1
            activity.input_rows += row["num_input_rows"]
            activity.busy_ms += row["batch_duration_ms"] or 0
            if row["num_input_rows"] > 0:
                activity.last_input_time = time.monotonic()
            self._rows.append(row)
            if self.observer is not None:
                try:
                    self.observer.observe(progress, records, newest=newest)
                except Exception as exc:  # metrics must never fail the job
                    log.warning("could not update the Prometheus metrics from a progress report: %s", exc)
        return True

    def catch_up(self, queries: Iterable[Any]) -> int:
        """Record the progress reports the queries hold that the listener has not delivered; returns how many.

        Call it once the queries stopped (their history is complete then), before the last flush.
        """
        added = 0
        for query in queries:
            try:
                history = [json.loads(p.json) for p in query.recentProgress]
            except Exception as exc:  # a query whose session is gone: nothing to add
                log.warning("could not read the progress history of query %s: %s", getattr(query, "name", "?"),
                            exc)
                continue
            added += sum(self.record(progress) for progress in history)
        return added

    def _remember(self, key: tuple[Any, ...]) -> None:
        self._seen.add(key)
        self._seen_order.append(key)
        while len(self._seen_order) > SEEN_LIMIT:
            self._seen.discard(self._seen_order.popleft())

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def onQueryIdle(self, event: Any) -> None:
        self._flush_if_due()

    def onQueryTerminated(self, event: Any) -> None:
        self.flush()

    # --- writing ----------------------------------------------------------------------------
    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
            self._last_flush = time.monotonic()
        if not rows:
            return
        try:
            self.store.append("metrics", pa.Table.from_pylist(rows, schema=METRICS))
        except Exception as exc:  # metrics must never fail the job
            log.warning("could not write %d metrics rows to %s: %s", len(rows), self.store.uri("metrics"), exc)
