"""Prometheus metrics of the streaming job, served by the job itself on METRICS_HOST:STREAM_METRICS_PORT.

The values come from the progress report Spark gives for each micro-batch (the same reports the
``metrics`` table is written from, metrics.py) and from the job's sink (the records and dead letters it
committed).
:func:`progress_values` maps one report to the gauges' values without touching any registry, so the
mapping is testable on plain dicts; :class:`JobMetrics` holds the metric objects and their registry.

Spark's own metrics (executors, JVM, streaming rates) are served under the driver UI by its
PrometheusServlet (session.py): ``/metrics/prometheus`` and ``/metrics/executors/prometheus``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from incident_contracts.metrics_endpoint import MetricsEndpoint
from incident_stream.metrics import _partition_offsets, progress_row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressValues:
    """What one progress report sets: the values of the job's gauges for its query."""

    query: str
    lag: dict[str, int]  # partition -> records in the topic beyond the batch's end offset
    batch_seconds: float
    input_rows_per_second: float
    processed_rows_per_second: float
    state_rows: int | None  # None: the query keeps no state
    committed_at: float  # unix seconds: the batch's trigger time plus its duration


def partition_lag(progress: dict[str, Any]) -> dict[str, int]:
    """{partition: records not yet read} from the first source of a progress report ({} when unknown)."""
    sources = progress.get("sources") or [{}]
    end = _partition_offsets(sources[0].get("endOffset"))
    latest = _partition_offsets(sources[0].get("latestOffset"))
    if end is None or latest is None:
        return {}
    return {p: max(0, high - end.get(p, 0)) for p, high in latest.items()}


def progress_values(progress: dict[str, Any], records: int | None = None) -> ProgressValues:
    """The gauges' values from one StreamingQueryProgress (as parsed JSON); `records` as in
    metrics.progress_row (the records a batch processed: Spark's rows are the source's partial buckets)."""
    row = progress_row(progress, None, records)
    stamp: dt.datetime = row["timestamp"]
    seconds = (row["batch_duration_ms"] or 0) / 1000
    return ProgressValues(query=row["query_name"], lag=partition_lag(progress), batch_seconds=seconds,
                          input_rows_per_second=row["input_rows_per_second"],
                          processed_rows_per_second=row["processed_rows_per_second"],
                          state_rows=row["state_rows"], committed_at=stamp.timestamp() + seconds)


class JobMetrics:
    """The job's metric objects, in their own registry (``registry``); :meth:`serve` exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.lag = Gauge("incident_stream_consumer_lag_records",
                         "Records in the topic beyond the last batch's end offset, per query and partition",
                         ["query", "partition"], registry=r)
        self.batch_seconds = Gauge("incident_stream_last_batch_duration_seconds",
                                   "Duration of the query's last micro-batch", ["query"], registry=r)
        self.input_rate = Gauge("incident_stream_input_rows_per_second",
                                "Rows (ingest: Kafka records) per second arriving in the last batch",
                                ["query"], registry=r)
        self.processed_rate = Gauge("incident_stream_processed_rows_per_second",
                                    "Rows (ingest: Kafka records) per second the last batch processed",
                                    ["query"], registry=r)
        self.state_rows = Gauge("incident_stream_state_rows",
                                "Rows in the query's state store after its last batch (detection)",
                                ["query"], registry=r)
        self.last_commit = Gauge("incident_stream_last_commit_timestamp_seconds",
                                 "Unix time the query's last micro-batch was committed", ["query"], registry=r)
        self.batches = Counter("incident_stream_batches", "Micro-batches completed", ["query"], registry=r)
        self.dead_letters = Counter("incident_stream_dead_letters",
                                    "Records written to the dead_letter table", registry=r)
        self._endpoint = MetricsEndpoint(r, "the job", "STREAM_METRICS_PORT", "running without it", log)

    def observe(self, progress: dict[str, Any], records: int | None = None, *, newest: bool = True) -> None:
        """Count a completed batch; set the gauges when it is the query's newest report (a late,
        older one only counts)."""
        values = progress_values(progress, records)
        self.batches.labels(values.query).inc()
        if not newest:
            return
        for partition, lag in values.lag.items():
            self.lag.labels(values.query, partition).set(lag)
        self.batch_seconds.labels(values.query).set(values.batch_seconds)
        self.input_rate.labels(values.query).set(values.input_rows_per_second)
        self.processed_rate.labels(values.query).set(values.processed_rows_per_second)
        if values.state_rows is not None:
            self.state_rows.labels(values.query).set(values.state_rows)
        self.last_commit.labels(values.query).set(values.committed_at)

    def serve(self, host: str, port: int) -> bool:
        """Serve /metrics on host:port (0: not at all); False, with a warning, when the port cannot be
        had: the job runs on without its endpoint."""
        return self._endpoint.serve(host, port)

    def close(self) -> None:
        self._endpoint.close()
