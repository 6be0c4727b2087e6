"""The notifier's Prometheus endpoint over real HTTP, against a real local receiver: what /metrics says was
sent, failed, retried, coalesced, rate limited and pending is what the receivers saw."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import test_notify
from prometheus_client.parser import text_string_to_metric_families
from test_notify import Receiver, _row, _settings, _write

from incident_dashboard.notify.metrics import NotifierMetrics, failure_reason
from incident_dashboard.notify.notifier import Notifier
from incident_dashboard.notify.rules import Route

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(autouse=True)
def fresh_rows() -> None:
    test_notify.NOW = datetime.now(UTC).replace(microsecond=0)  # rows dated from this test's start


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def served() -> Iterator[tuple[NotifierMetrics, int]]:
    metrics = NotifierMetrics()
    port = _free_port()
    assert metrics.serve("127.0.0.1", port)
    yield metrics, port
    metrics.close()


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_sent_equals_what_the_receiver_got_and_a_failing_receiver_raises_failed(
        tmp_path: Path, receiver: Receiver, served: tuple[NotifierMetrics, int]) -> None:
    metrics, port = served
    settings = _settings(tmp_path, notify_coalesce_seconds=0, notify_ack_timeout_minutes=0, notify_attempts=2)
    _write(settings, [_row("INC-1", 1, "P1"), _row("INC-1", 2, "P1", "resolved", minutes=1),
                      _row("INC-2", 1, "P2", service="search")])
    receiver.statuses["/broken"] = [500]
    routes = [Route(name="hook", url=f"{receiver.url}/hook"),
              Route(name="am", kind="alertmanager", url=f"{receiver.url}/broken")]
    before = time.time()
    Notifier(settings, routes=routes, rca=lambda ids: {}, metrics=metrics).run_once()

    samples = scrape(port)
    delivered = len(receiver.got("/hook"))
    assert delivered == 3
    assert value(samples, "incident_notifier_notifications_sent_total", route="hook", kind="webhook") == delivered
    assert value(samples, "incident_notifier_notifications_sent_total", route="am", kind="alertmanager") == 0
    # Three messages to the broken receiver, each failing both attempts (one retry each).
    assert value(samples, "incident_notifier_notifications_failed_total", route="am", kind="alertmanager",
                 reason="server_error") == 3
    assert value(samples, "incident_notifier_delivery_retries_total", route="am", kind="alertmanager") == 3
    assert value(samples, "incident_notifier_delivery_retries_total", route="hook", kind="webhook") == 0
    assert before <= value(samples, "incident_notifier_last_success_timestamp_seconds", route="hook") <= time.time()
    assert ("incident_notifier_last_success_timestamp_seconds", frozenset({("route", "am")})) not in samples


def test_a_receiver_that_does_not_answer_is_counted_as_no_answer(
        tmp_path: Path, served: tuple[NotifierMetrics, int]) -> None:
    metrics, port = served
    settings = _settings(tmp_path, notify_coalesce_seconds=0, notify_ack_timeout_minutes=0, notify_attempts=1)
    _write(settings, [_row("INC-1", 1, "P1")])
    closed = f"http://127.0.0.1:{_free_port()}/hook"  # nothing listens there
    Notifier(settings, routes=[Route(name="gone", url=closed)], rca=lambda ids: {}, metrics=metrics).run_once()
    assert value(scrape(port), "incident_notifier_notifications_failed_total", route="gone", kind="webhook",
                 reason="no_answer") == 1


def test_rate_limited_transitions_are_counted_once_and_pending_until_sent(
        tmp_path: Path, receiver: Receiver, served: tuple[NotifierMetrics, int]) -> None:
    metrics, port = served
    settings = _settings(tmp_path, notify_coalesce_seconds=0, notify_ack_timeout_minutes=0)
    _write(settings, [_row(f"INC-{i}", 1, "P1", service=f"svc-{i}") for i in range(3)])
    notifier = Notifier(settings, routes=[Route(name="hook", url=f"{receiver.url}/hook", rate_limit_per_minute=1)],
                        rca=lambda ids: {}, metrics=metrics)
    now = test_notify.NOW
    notifier.run_once(now)
    notifier.run_once(now + timedelta(seconds=10))  # still limited: the same two are not counted again
    samples = scrape(port)
    assert value(samples, "incident_notifier_transitions_rate_limited_total", route="hook") == 2
    assert value(samples, "incident_notifier_transitions_pending", route="hook", reason="rate_limit") == 2
    notifier.run_once(now + timedelta(seconds=61))
    samples = scrape(port)
    assert value(samples, "incident_notifier_transitions_pending", route="hook", reason="rate_limit") == 1
    assert value(samples, "incident_notifier_notifications_sent_total", route="hook", kind="webhook") == 2
    assert len(receiver.got("/hook")) == 2


def test_coalesced_transitions_are_pending_then_counted_in_the_summary(
        tmp_path: Path, receiver: Receiver, served: tuple[NotifierMetrics, int]) -> None:
    metrics, port = served
    settings = _settings(tmp_path, notify_coalesce_seconds=300, notify_ack_timeout_minutes=0)
    _write(settings, [_row(f"INC-F{i}", 1, "P2", minutes=i) for i in range(4)])  # one flapping service
    notifier = Notifier(settings, routes=[Route(name="hook", url=f"{receiver.url}/hook")], rca=lambda ids: {},
                        metrics=metrics)
    now = test_notify.NOW
    notifier.run_once(now)
    assert value(scrape(port), "incident_notifier_transitions_pending", route="hook", reason="coalescing") == 3
    notifier.run_once(now + timedelta(seconds=301))
    samples = scrape(port)
    assert [b["event"] for b in receiver.got("/hook")] == ["opened", "summary"]
    assert value(samples, "incident_notifier_transitions_coalesced_total", route="hook") == 3
    assert value(samples, "incident_notifier_notifications_sent_total", route="hook", kind="webhook") == 2
    assert value(samples, "incident_notifier_transitions_pending", route="hook", reason="coalescing") == 0


def test_failure_reasons_are_a_bounded_set() -> None:
    assert [failure_reason(s) for s in (None, 429, 500, 503, 400, 404)] == [
        "no_answer", "throttled", "server_error", "server_error", "rejected", "rejected"]


def test_a_taken_port_only_warns_and_zero_turns_the_endpoint_off(
        served: tuple[NotifierMetrics, int], caplog: pytest.LogCaptureFixture) -> None:
    _metrics, port = served
    assert not NotifierMetrics().serve("127.0.0.1", port)
    assert "NOTIFY_METRICS_PORT" in caplog.text
    assert not NotifierMetrics().serve("127.0.0.1", 0)
