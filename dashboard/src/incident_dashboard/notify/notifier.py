"""The notifier: reads new ``incident_updates`` rows (and ``incident_actions`` for acknowledgement
timeouts), and sends each transition to the routes that match it, once.

Rules (docs/operations.md):

* **Once per (incident, transition, route).** Every delivery is recorded in the Delta table
  ``notifications``; on start the notifier reads it back, so a restart or a retry sends nothing twice.
  A crash between a receiver's answer and the record can repeat that one message (at-least-once).
* **Retries.** A receiver that does not answer, or answers 5xx or 429, is tried ``NOTIFY_ATTEMPTS`` times
  with exponential backoff; other 4xx answers are not retried. A delivery that still fails is recorded as
  ``failed`` and tried again on later cycles, at most ``MAX_FAILED_ROUNDS`` rounds in all.
* **Rate limit.** At most ``rate_limit_per_minute`` messages per route in any 60 s; the rest wait.
* **Coalescing.** After a quiet spell the first transition of a service is sent at once, alone; further
  ones of that service on the same route wait until ``NOTIFY_COALESCE_SECONDS`` after that message and go
  out as one summary (then the window starts again). 0 sends every transition on its own.
* **History.** Transitions older than ``NOTIFY_LOOKBACK_MINUTES`` when first seen are not sent.
* **Metrics.** Every outcome also updates the notifier's Prometheus metrics (notify/metrics.py).

It runs as its own process (``python -m incident_dashboard.notify``), never inside the Spark job, so a slow
receiver cannot slow detection.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from incident_contracts.settings import Settings
from incident_contracts.table_store import TableStore
from incident_contracts.tables import TABLES
from incident_dashboard.actions.log import ActionLog
from incident_dashboard.notify import payloads
from incident_dashboard.notify.metrics import COALESCING, RATE_LIMIT, NotifierMetrics, failure_reason
from incident_dashboard.notify.rules import Route, load_routes
from incident_dashboard.notify.transitions import Transition, ack_timeouts, lifecycle_transitions

log = logging.getLogger(__name__)

TABLE = "notifications"
MAX_FAILED_ROUNDS = 3
DONE = ("sent", "coalesced")
RATE_WINDOW = timedelta(seconds=60)


@dataclass
class Delivery:
    ok: bool
    attempts: int
    http_status: int | None = None
    error: str | None = None


@dataclass
class CycleReport:
    sent: int = 0  # messages delivered
    coalesced: int = 0  # transitions delivered inside a summary
    failed: int = 0  # messages that failed every attempt
    held: int = 0  # transitions waiting (coalescing window or rate limit)
    errors: list[str] = field(default_factory=list)


def post_json(url: str, body: dict[str, Any], timeout: float) -> int:
    """POST the body as JSON; the HTTP status (raises for no answer)."""
    request = urllib.request.Request(url, data=json.dumps(body, default=str).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "incident-notifier/1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


UPDATE_COLUMNS = ["incident_id", "update_seq", "update_time", "status", "severity", "service", "environment",
                  "owner", "tier", "title", "trigger", "opened_at", "resolved_at"]


@dataclass(frozen=True)
class UpdatesSnapshot:
    """The incident_updates rows read at one table version, and the data files they came from."""

    version: int
    paths: frozenset[str]
    frame: pd.DataFrame


class Notifier:
    def __init__(self, settings: Settings, store: TableStore | None = None, routes: Sequence[Route] | None = None,
                 *, sleep: Callable[[float], None] = time.sleep,
                 rca: Callable[[list[str]], dict[str, str]] | None = None,
                 metrics: NotifierMetrics | None = None) -> None:
        self.settings = settings
        self.store = store or TableStore.from_settings(settings)
        self.routes = list(load_routes(settings) if routes is None else routes)
        self.sleep = sleep
        self.rca_source = rca or self._stored_rca
        self.actions = ActionLog(self.store)
        self._updates: UpdatesSnapshot | None = None
        self.last_cycle_at: datetime | None = None
        self.last_error: str | None = None
        self.done: set[tuple[str, str, str]] = set()
        self.failures: dict[tuple[str, str, str], int] = defaultdict(int)
        self.last_sent: dict[tuple[str, str], datetime] = {}
        self.sent_times: dict[str, deque[datetime]] = defaultdict(deque)
        self.metrics = metrics or NotifierMetrics()
        self._rate_limited: set[tuple[str, str, str]] = set()  # transitions the rate limit held (counted once)
        self._load_log()

    # --- the delivery log -------------------------------------------------------------------
    def _load_log(self) -> None:
        if self.store.open(TABLE) is None:
            return
        frame = self.store.read(TABLE).to_pandas()
        for row in frame.itertuples():
            key = (row.incident_id, row.transition, row.route)
            recorded = pd.Timestamp(row.recorded_at).to_pydatetime()
            if row.outcome in DONE:
                self.done.add(key)
                group = (row.route, row.service or "")
                self.last_sent[group] = max(self.last_sent.get(group, recorded), recorded)
            elif row.outcome == "failed":
                self.failures[key] += 1
        cutoff = datetime.now(UTC) - RATE_WINDOW
        for row in frame[frame["outcome"].isin(DONE)].drop_duplicates(["route", "recorded_at"]).itertuples():
            recorded = pd.Timestamp(row.recorded_at).to_pydatetime()
            if recorded >= cutoff:
                self.sent_times[row.route].append(recorded)

    def _record(self, route: Route, transitions: Sequence[Transition], outcome: str, delivery: Delivery,
                now: datetime) -> None:
        rows = [{"incident_id": t.incident_id, "transition": t.key, "route": route.name, "outcome": outcome,
                 "service": t.service, "severity": t.severity, "attempts": delivery.attempts,
                 "http_status": delivery.http_status, "error": delivery.error, "transition_time": t.time,
                 "recorded_at": now} for t in transitions]
        self.store.append(TABLE, pa.Table.from_pylist(rows, schema=TABLES[TABLE].schema))

    # --- one cycle --------------------------------------------------------------------------
    def updates(self) -> pd.DataFrame:
        """The incident_updates rows of the table's latest version. A new version that only added files
        (the job's commits) costs a read of those files; one that removed files (compaction) a full read."""
        dt = self.store.open("incident_updates")
        if dt is None:
            return TABLES["incident_updates"].schema.empty_table().to_pandas()
        version = dt.version()
        if self._updates is not None and self._updates.version == version:
            return self._updates.frame
        dataset = self.store.dataset("incident_updates", dt)
        fragments = {fragment.path: fragment for fragment in dataset.get_fragments()}
        known = self._updates
        if known is not None and known.paths <= fragments.keys():
            fresh = [fragment for path, fragment in fragments.items() if path not in known.paths]
            added = ds.FileSystemDataset(fresh, dataset.schema, dataset.format, dataset.filesystem)
            frame = pd.concat([known.frame, added.to_table(UPDATE_COLUMNS).to_pandas()], ignore_index=True) \
                if fresh else known.frame
        else:
            frame = dataset.to_table(UPDATE_COLUMNS).to_pandas()
        self._updates = UpdatesSnapshot(version, frozenset(fragments), frame)
        return frame

    def transitions(self, now: datetime) -> list[Transition]:
        updates = self.updates()
        found = lifecycle_transitions(updates)
        timeout = timedelta(minutes=self.settings.notify_ack_timeout_minutes)
        if timeout > timedelta(0) and not updates.empty:
            found += ack_timeouts(updates, self.actions.states(), now, timeout)
        return found

    def run_once(self, now: datetime | None = None) -> CycleReport:
        now = now or datetime.now(UTC)
        report = CycleReport()
        if not self.routes:
            return report
        oldest = now - timedelta(minutes=self.settings.notify_lookback_minutes)
        window = timedelta(seconds=self.settings.notify_coalesce_seconds)
        pending: dict[tuple[str, str], list[Transition]] = defaultdict(list)
        waiting: dict[tuple[str, str], int] = defaultdict(int)  # (route, reason) -> transitions held this cycle
        routes = {r.name: r for r in self.routes}
        for t in self.transitions(now):
            if t.time < oldest:
                continue
            inc = t.incident
            for route in self.routes:
                key = (t.incident_id, t.key, route.name)
                if key in self.done or self.failures[key] >= MAX_FAILED_ROUNDS:
                    continue
                if route.matches(t.event, t.severity, t.service, inc.get("owner"), inc.get("tier")):
                    pending[(route.name, t.service)].append(t)
        for (route_name, service), items in pending.items():
            route = routes[route_name]
            last = self.last_sent.get((route_name, service))
            if last is not None and now < last + window:
                report.held += len(items)
                waiting[(route_name, COALESCING)] += len(items)
                continue
            times = self.sent_times[route_name]
            while times and times[0] <= now - RATE_WINDOW:
                times.popleft()
            limit = route.rate_limit_per_minute or self.settings.notify_rate_limit_per_minute
            if len(times) >= limit:
                report.held += len(items)
                waiting[(route_name, RATE_LIMIT)] += len(items)
                self._count_rate_limited(route_name, items)
                continue
            if not window:
                for item in items:  # coalescing off: one message each
                    self._send(route, service, [item], now, report)
            elif last is not None and items[0].time < last + window:
                self._send(route, service, items, now, report)  # what waited during the window: one summary
            else:
                self._send(route, service, items[:1], now, report)  # after a quiet spell: at once, alone
                report.held += len(items) - 1
                waiting[(route_name, COALESCING)] += len(items) - 1
        for route in self.routes:
            for reason in (COALESCING, RATE_LIMIT):
                self.metrics.pending.labels(route.name, reason).set(waiting[(route.name, reason)])
        return report

    def _count_rate_limited(self, route_name: str, items: list[Transition]) -> None:
        new = {(t.incident_id, t.key, route_name) for t in items} - self._rate_limited
        if new:
            self._rate_limited |= new
            self.metrics.rate_limited.labels(route_name).inc(len(new))

    def _send(self, route: Route, service: str, items: list[Transition], now: datetime, report: CycleReport) -> None:
        summary = len(items) > 1
        try:
            rca = self.rca_source([t.incident_id for t in items])
        except Exception as exc:  # an unreadable analysis must not stop a notification
            log.info("no root-cause summary for %s: %s", service, exc)
            rca = {}
        body = payloads.build(route, items, self.settings.notify_dashboard_url, rca, summary=summary)
        delivery = self.deliver(route, body)
        self.sent_times[route.name].append(now)
        if delivery.attempts > 1:
            self.metrics.retries.labels(route.name, route.kind.value).inc(delivery.attempts - 1)
        if delivery.ok:
            self.metrics.sent.labels(route.name, route.kind.value).inc()
            self.metrics.last_success.labels(route.name).set(datetime.now(UTC).timestamp())
            if summary:
                self.metrics.coalesced.labels(route.name).inc(len(items))
            self._rate_limited -= {(t.incident_id, t.key, route.name) for t in items}
            self._record(route, items, "coalesced" if summary else "sent", delivery, now)
            self.done.update((t.incident_id, t.key, route.name) for t in items)
            self.last_sent[(route.name, service)] = now
            report.sent += 1
            report.coalesced += len(items) if summary else 0
            return
        self.metrics.failed.labels(route.name, route.kind.value, failure_reason(delivery.http_status)).inc()
        self._record(route, items, "failed", delivery, now)
        for t in items:
            self.failures[(t.incident_id, t.key, route.name)] += 1
        report.failed += 1
        report.errors.append(f"{route.name}: {delivery.error}")
        log.warning("notification to route %s failed after %d attempt(s): %s", route.name, delivery.attempts,
                    delivery.error)

    def deliver(self, route: Route, body: dict[str, Any]) -> Delivery:
        """POST with retries: no answer, 5xx and 429 are retried with exponential backoff.

        The error names the route and the URL's scheme and host only: the URL itself is often a credential
        (a Slack webhook), and the error reaches the log, /healthz, the notifications table and the dashboard."""
        attempts = self.settings.notify_attempts
        error, status = "", None
        for attempt in range(1, attempts + 1):
            try:
                status = post_json(route.url, body, self.settings.notify_timeout_seconds)
            except (OSError, ValueError) as exc:
                status, error = None, f"no answer from {route.target} (route {route.name}): {route.scrub(str(exc))}"
            else:
                if 200 <= status < 300:
                    return Delivery(True, attempt, status)
                error = f"{route.target} (route {route.name}) answered HTTP {status}"
                if 400 <= status < 500 and status != 429:
                    return Delivery(False, attempt, status, error + " (not retried: fix the route)")
            if attempt < attempts:
                self.sleep(self.settings.notify_retry_backoff_seconds * 2 ** (attempt - 1))
        return Delivery(False, attempts, status, error)

    def _stored_rca(self, incident_ids: list[str]) -> dict[str, str]:
        """The latest stored root-cause conclusion of each incident (analyses under DATA_DIR/analyses)."""
        from incident_rca.service import store_for

        return store_for(self.settings).root_causes(incident_ids)

    def run_forever(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        log.info("notifier: %d route(s): %s", len(self.routes), ", ".join(r.name for r in self.routes) or "none")
        while not stop.is_set():
            try:
                report = self.run_once()
                self.last_cycle_at = datetime.now(UTC)
                self.metrics.last_cycle.set(self.last_cycle_at.timestamp())
                if report.errors:
                    self.last_error = report.errors[-1]
                if report.sent or report.failed:
                    log.info("notifier: %d sent, %d coalesced, %d failed, %d held", report.sent, report.coalesced,
                             report.failed, report.held)
            except Exception as exc:
                self.metrics.cycle_failures.inc()
                self.last_error = f"cycle failed: {type(exc).__name__}: {exc}"
                log.exception("notifier cycle failed; trying again in %.0f s", self.settings.notify_interval_seconds)
            stop.wait(self.settings.notify_interval_seconds)


def health(notifier: Notifier) -> dict[str, Any]:
    """What /healthz answers: the routes, when the last cycle ended and the last error."""
    return {"routes": [r.name for r in notifier.routes],
            "last_cycle_at": notifier.last_cycle_at.isoformat() if notifier.last_cycle_at else None,
            "last_error": notifier.last_error, "delivered": len(notifier.done)}


def delivery_status(store: TableStore) -> dict[str, Any]:
    """For the Pipeline page: messages sent, deliveries failed, the last error and when."""
    if store.open(TABLE) is None:
        return {"exists": False, "sent": 0, "failed": 0, "last_error": None, "last_error_at": None}
    frame = store.read(TABLE, ["route", "outcome", "error", "recorded_at"]).to_pandas()
    messages = frame.drop_duplicates(["route", "recorded_at", "outcome"])
    failed = messages[messages["outcome"] == "failed"].sort_values("recorded_at")
    return {"exists": True, "sent": int((messages["outcome"] != "failed").sum()), "failed": len(failed),
            "last_error": None if failed.empty else failed["error"].iloc[-1],
            "last_error_at": None if failed.empty else failed["recorded_at"].iloc[-1]}
