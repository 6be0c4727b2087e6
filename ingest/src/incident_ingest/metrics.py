"""Prometheus metrics of the ingest service (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
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
        self.in_flight = Gauge("ingest_requests_in_flight", "Requests being handled", registry=self.registry)
        self.queued = Gauge("ingest_kafka_queued_records", "Records waiting for Kafka's acknowledgement",
                            registry=self.registry)
