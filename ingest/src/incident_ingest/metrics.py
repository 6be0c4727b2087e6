"""Prometheus metrics of the ingest service (served at /metrics).

With several worker processes (INGEST_WORKERS > 1) the command sets PROMETHEUS_MULTIPROC_DIR for them
before they start: prometheus_client then keeps every process's values in files there, and /metrics,
whichever process answers it, adds up all of them (the gauges: over the live processes).
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable, set by incident_ingest.cli


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_DIR))
        self.registry = CollectorRegistry()
        self.accepted = Counter("ingest_records_accepted", "Records written to Kafka and acknowledged",
                                ["endpoint"], registry=self.registry)
        self.rejected = Counter("ingest_records_rejected", "Records refused, by reason (not written)",
                                ["endpoint", "reason"], registry=self.registry)
        self.requests = Counter("ingest_requests", "Requests answered, by HTTP status",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("ingest_request_duration_seconds", "Time from request to answer",
                                 ["endpoint"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.delivery_failures = Counter("ingest_kafka_delivery_failures",
                                         "Records Kafka did not acknowledge, by error", ["error"],
                                         registry=self.registry)
        self.in_flight = Gauge("ingest_requests_in_flight", "Requests being handled", registry=self.registry,
                               multiprocess_mode="livesum")
        self.queued = Gauge("ingest_kafka_queued_records", "Records waiting for Kafka's acknowledgement",
                            registry=self.registry, multiprocess_mode="livesum")

    def exposition(self) -> bytes:
        """The text format of every metric: this process's, or with several workers all of theirs."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)


def forget_ended_workers(directory: str) -> None:
    """Drop the live gauges of worker processes that no longer run (a worker that was restarted)."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            multiprocess.mark_process_dead(int(pid), directory)
        except PermissionError:  # it exists (another user's): keep it
            pass
