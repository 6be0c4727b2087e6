"""Prometheus metrics of the notifier, served on METRICS_HOST:NOTIFY_METRICS_PORT (/metrics).

Messages sent and failed (by route, kind and reason), retries, transitions coalesced into summaries or
held back by a route's rate limit, what waits after each cycle, the last successful delivery per route,
and the notifier's own cycles (docs/operations.md "Metrics").
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge

from incident_contracts.metrics_endpoint import MetricsEndpoint

log = logging.getLogger(__name__)

# Why a message failed every attempt (the `reason` label): a bounded set, whatever the receiver answers.
NO_ANSWER, THROTTLED, SERVER_ERROR, REJECTED = "no_answer", "throttled", "server_error", "rejected"
# Why transitions wait (the `reason` label of the pending gauge).
COALESCING, RATE_LIMIT = "coalescing", "rate_limit"


def failure_reason(http_status: int | None) -> str:
    """The `reason` of a failed delivery from the last HTTP status (None: no answer at all)."""
    if http_status is None:
        return NO_ANSWER
    if http_status == 429:
        return THROTTLED
    return SERVER_ERROR if http_status >= 500 else REJECTED


class NotifierMetrics:
    """The notifier's metric objects, in their own registry (``registry``); :meth:`serve` exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sent = Counter("incident_notifier_notifications_sent",
                            "Messages a receiver accepted (a summary counts once)", ["route", "kind"], registry=r)
        self.failed = Counter("incident_notifier_notifications_failed",
                              "Messages that failed every attempt, by reason (no_answer, throttled, server_error, "
                              "rejected)", ["route", "kind", "reason"], registry=r)
        self.retries = Counter("incident_notifier_delivery_retries",
                               "Delivery attempts after the first (receiver did not answer, 5xx or 429)",
                               ["route", "kind"], registry=r)
        self.coalesced = Counter("incident_notifier_transitions_coalesced",
                                 "Transitions delivered inside a summary message", ["route"], registry=r)
        self.rate_limited = Counter("incident_notifier_transitions_rate_limited",
                                    "Transitions held back by the route's rate limit (each counted once)",
                                    ["route"], registry=r)
        self.pending = Gauge("incident_notifier_transitions_pending",
                             "Transitions waiting after the last cycle, by reason (coalescing, rate_limit)",
                             ["route", "reason"], registry=r)
        self.last_success = Gauge("incident_notifier_last_success_timestamp_seconds",
                                  "Unix time of the route's last accepted message", ["route"], registry=r)
        self.last_cycle = Gauge("incident_notifier_last_cycle_timestamp_seconds",
                                "Unix time the notifier last finished a cycle", registry=r)
        self.cycle_failures = Counter("incident_notifier_cycle_failures",
                                      "Cycles that failed before sending (e.g. the tables could not be read)",
                                      registry=r)
        self._endpoint = MetricsEndpoint(r, "the notifier", "NOTIFY_METRICS_PORT", "notifying without it", log)

    def serve(self, host: str, port: int) -> bool:
        """Serve /metrics on host:port (0: not at all); False, with a warning, when the port cannot be had:
        notifications go on without the endpoint."""
        return self._endpoint.serve(host, port)

    def close(self) -> None:
        self._endpoint.close()
