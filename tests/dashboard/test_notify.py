"""Notifications against a real local HTTP receiver: payload shapes (generic JSON, Slack, Alertmanager),
routing, dedupe across a restart, retries after 500s, the per-route rate limit and coalescing of a
flapping service."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

from incident_contracts.settings import Settings, load_settings
from incident_contracts.table_store import TableStore
from incident_contracts.tables import TABLES
from incident_dashboard.actions.log import ActionLog, Record
from incident_dashboard.notify.notifier import Notifier, delivery_status, health
from incident_dashboard.notify.rules import Route, RulesError, load_routes

NOW = datetime.now(UTC).replace(microsecond=0)  # reset before each test (fresh_now)


@pytest.fixture(autouse=True)
def fresh_now() -> None:
    """Rows are dated relative to NOW: taken at each test's start, so that a test running long after the
    module was imported does not find its incidents past the acknowledgement timeout."""
    global NOW
    NOW = datetime.now(UTC).replace(microsecond=0)


class Receiver:
    """An HTTP server in a thread that records every JSON body by path and answers queued statuses."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict[str, Any]]] = {}
        self.statuses: dict[str, list[int]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                queued = receiver.statuses.get(self.path) or [200]
                status = queued.pop(0) if len(queued) > 1 else queued[0]
                if status == 200:
                    receiver.bodies.setdefault(self.path, []).append(body)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def got(self, path: str) -> list[dict[str, Any]]:
        return self.bodies.get(path, [])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    values = {"data_dir": tmp_path / "data", "runtime_dir": tmp_path / "runtime",
              "notify_dashboard_url": "http://dash.example:8501", "notify_retry_backoff_seconds": 0,
              "notify_coalesce_seconds": 300, **overrides}
    return load_settings(**values)


def _row(incident_id: str, seq: int, severity: str, status: str = "open", minutes: float = 0,
         service: str = "order-service", **extra: Any) -> dict[str, Any]:
    at = NOW - timedelta(minutes=10) + timedelta(minutes=minutes)
    return {"incident_id": incident_id, "update_seq": seq, "update_type": "opened" if seq == 1 else (
        "resolved" if status == "resolved" else "updated"), "status": status, "update_time": at,
        "service": service, "environment": "prod", "tier": "1", "owner": "team-commerce", "severity": severity,
        "title": f"{service} <errors> & *more*", "trigger": "error_rate", "opened_at": at - timedelta(minutes=seq),
        "first_seen": at, "last_seen": at, "resolved_at": at if status == "resolved" else None, **extra}


def _write(settings: Settings, rows: list[dict[str, Any]]) -> None:
    TableStore.from_settings(settings).append(
        "incident_updates", pa.Table.from_pylist(rows, schema=TABLES["incident_updates"].schema))


def _routes(receiver: Receiver, **extra: Any) -> list[Route]:
    return [Route(name="hook", kind="webhook", url=f"{receiver.url}/hook", **extra),
            Route(name="slack", kind="slack", url=f"{receiver.url}/slack", **extra),
            Route(name="am", kind="alertmanager", url=f"{receiver.url}/am", **extra)]


def test_payload_shapes_for_opened_raised_and_resolved(tmp_path: Path, receiver: Receiver) -> None:
    settings = _settings(tmp_path, notify_coalesce_seconds=0)
    _write(settings, [_row("INC-1", 1, "P2"), _row("INC-1", 2, "P1", minutes=1),
                      _row("INC-1", 3, "P1", "resolved", minutes=2),
                      _row("INC-2", 1, "P3", service="search")])  # P3: no route takes it
    notifier = Notifier(settings, routes=_routes(receiver, rate_limit_per_minute=100),
                        rca=lambda ids: {"INC-1": "pool too small"})
    notifier.run_once()
    hooks = receiver.got("/hook")
    assert [h["event"] for h in hooks] == ["opened", "severity_raised", "resolved"]
    first = hooks[0]
    assert first["incident"]["url"] == "http://dash.example:8501/incident?id=INC-1"
    assert first["incident"]["severity"] == "P2" and first["rca_summary"] == "pool too small"
    assert first["transition"] == "opened" and first["route"] == "hook"

    slack = receiver.got("/slack")
    assert len(slack) == 3
    assert "<http://dash.example:8501/incident?id=INC-1|INC-1>" in slack[0]["text"]
    assert "&lt;errors&gt; &amp; *more*" in slack[0]["text"] and "RCA: pool too small" in slack[0]["text"]
    assert slack[0]["blocks"][0]["text"]["type"] == "mrkdwn"

    am = receiver.got("/am")
    assert [a["status"] for a in am] == ["firing", "firing", "resolved"]
    for body in am:
        assert body["version"] == "4" and body["groupKey"] and body["receiver"] == "am"
        alert = body["alerts"][0]
        assert set(alert) >= {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL"}
        assert alert["labels"]["incident_id"] == "INC-1" and alert["labels"]["alertname"] == "Incident"
    assert am[0]["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert am[1]["alerts"][0]["labels"]["severity"] == "P1"
    assert am[2]["alerts"][0]["endsAt"].endswith("Z") and not am[2]["alerts"][0]["endsAt"].startswith("0001")
    assert am[0]["alerts"][0]["annotations"]["description"] == "pool too small"


def test_routing_by_service_owner_and_tier(tmp_path: Path, receiver: Receiver) -> None:
    settings = _settings(tmp_path, notify_coalesce_seconds=0)
    _write(settings, [_row("INC-A", 1, "P1", service="payments"), _row("INC-B", 1, "P1", service="search"),
                      _row("INC-C", 1, "P4", service="payments")])
    routes = [Route(name="pay", url=f"{receiver.url}/pay", services=["payments"], owners=["team-commerce"],
                    tiers=[1], severities=["P1", "P4"]),
              Route(name="other-team", url=f"{receiver.url}/other", owners=["team-search"])]
    Notifier(settings, routes=routes, rca=lambda ids: {}).run_once()
    assert sorted(b["incident"]["id"] for b in receiver.got("/pay")) == ["INC-A", "INC-C"]
    assert receiver.got("/other") == []


def test_dedupe_across_a_restart_and_retry_after_500s(tmp_path: Path, receiver: Receiver) -> None:
    settings = _settings(tmp_path, notify_attempts=3)
    _write(settings, [_row("INC-1", 1, "P1")])
    receiver.statuses["/hook"] = [500, 503, 200]
    routes = [Route(name="hook", url=f"{receiver.url}/hook")]
    report = Notifier(settings, routes=routes, rca=lambda ids: {}).run_once()
    assert report.sent == 1 and len(receiver.got("/hook")) == 1  # two 5xx answers, then delivered
    stored = TableStore.from_settings(settings).read("notifications").to_pylist()
    assert [(r["outcome"], r["attempts"]) for r in stored] == [("sent", 3)]

    restarted = Notifier(settings, routes=routes, rca=lambda ids: {})
    restarted.run_once()
    restarted.run_once()
    assert len(receiver.got("/hook")) == 1  # nothing sent twice after a restart


def test_a_receiver_that_keeps_failing_is_visible_and_given_up(tmp_path: Path, receiver: Receiver) -> None:
    settings = _settings(tmp_path, notify_attempts=2)
    _write(settings, [_row("INC-1", 1, "P1")])
    receiver.statuses["/hook"] = [500]
    notifier = Notifier(settings, routes=[Route(name="hook", url=f"{receiver.url}/hook")], rca=lambda ids: {})
    for _ in range(5):
        notifier.run_once()
    status = delivery_status(TableStore.from_settings(settings))
    assert status["failed"] == 3 and status["sent"] == 0  # three rounds of two attempts, then given up
    assert "answered HTTP 500" in status["last_error"]


def test_rate_limit_per_route(tmp_path: Path, receiver: Receiver) -> None:
    settings = _settings(tmp_path, notify_coalesce_seconds=0)
    _write(settings, [_row(f"INC-{i}", 1, "P1", service=f"svc-{i}") for i in range(5)])
    notifier = Notifier(settings, routes=[Route(name="hook", url=f"{receiver.url}/hook", rate_limit_per_minute=2)],
                        rca=lambda ids: {})
    report = notifier.run_once(NOW)
    assert report.sent == 2 and report.held == 3 and len(receiver.got("/hook")) == 2
    assert notifier.run_once(NOW + timedelta(seconds=30)).sent == 0
    assert notifier.run_once(NOW + timedelta(seconds=61)).sent == 2
    assert len({b["incident"]["id"] for b in receiver.got("/hook")}) == 4


def test_a_flapping_service_sends_one_message_then_one_summary(tmp_path: Path, receiver: Receiver) -> None:
    settings = _settings(tmp_path, notify_coalesce_seconds=300)
    rows = []
    for i in range(6):  # six incidents opened and resolved within ten minutes
        rows += [_row(f"INC-F{i}", 1, "P2", minutes=i), _row(f"INC-F{i}", 2, "P2", "resolved", minutes=i + 0.5)]
    _write(settings, rows)
    notifier = Notifier(settings, routes=[Route(name="hook", url=f"{receiver.url}/hook")], rca=lambda ids: {})
    for second in range(0, 300, 30):
        notifier.run_once(NOW + timedelta(seconds=second))
    assert len(receiver.got("/hook")) == 1  # the first transition; the rest wait for the window
    notifier.run_once(NOW + timedelta(seconds=301))
    bodies = receiver.got("/hook")
    assert len(bodies) == 2 and bodies[1]["event"] == "summary" and bodies[1]["count"] == 11
    notifier.run_once(NOW + timedelta(seconds=700))
    assert len(receiver.got("/hook")) == 2


def test_acknowledgement_timeout(tmp_path: Path, receiver: Receiver) -> None:
    settings = _settings(tmp_path, notify_ack_timeout_minutes=5, notify_coalesce_seconds=0)
    _write(settings, [_row("INC-1", 1, "P1"), _row("INC-2", 1, "P1", service="search")])
    ActionLog(TableStore.from_settings(settings)).record(Record("INC-2", "acknowledge", "ana"))
    routes = [Route(name="hook", url=f"{receiver.url}/hook", events=["ack_timeout"])]
    Notifier(settings, routes=routes, rca=lambda ids: {}).run_once()
    assert [(b["event"], b["incident"]["id"]) for b in receiver.got("/hook")] == [("ack_timeout", "INC-1")]


def test_routes_from_a_rules_file_and_clear_errors(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("routes:\n  - name: oncall\n    kind: slack\n    url: https://hooks.example/x\n"
                     "    tiers: [1]\n    owners: team-a\n")
    routes = load_routes(_settings(tmp_path, notify_rules_file=rules, notify_webhook_url="http://hook.example/"))
    assert [(r.name, r.kind.value, r.tiers, r.owners) for r in routes] == [
        ("oncall", "slack", ("1",), ("team-a",)), ("webhook", "webhook", (), ())]
    rules.write_text("routes:\n  - name: bad\n    kind: pager\n    url: ftp://x\n")
    with pytest.raises(RulesError, match=r"rules.yaml: routes.0.kind: .*routes.0.url"):
        load_routes(_settings(tmp_path, notify_rules_file=rules))


def test_a_failed_delivery_never_shows_the_webhook_url(tmp_path: Path, receiver: Receiver,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """NOTIFY_WEBHOOK_URL is a credential (a Slack webhook's path is its key): deliveries that fail, on a 500
    answer and then on no answer at all, leave that path in no log record, /metrics text, /healthz answer,
    cycle error or row of the notifications table; they name the route and the URL's scheme and host."""
    from prometheus_client import generate_latest

    key = "/services/T0001/B0002/" + "k" * 24
    receiver.statuses[key] = [500]
    closed = f"http://127.0.0.1:{_free_port()}"  # nothing listens there: no answer
    texts: list[str] = []
    for base, incident, expected in ((receiver.url, "INC-1", "answered HTTP 500"), (closed, "INC-2", "no answer")):
        settings = _settings(tmp_path / incident, notify_attempts=2, notify_coalesce_seconds=0,
                             notify_webhook_url=f"{base}{key}")
        _write(settings, [_row(incident, 1, "P1")])
        notifier = Notifier(settings, rca=lambda ids: {})  # the route NOTIFY_WEBHOOK_URL gives
        assert [r.name for r in notifier.routes] == ["webhook"]
        with caplog.at_level(logging.DEBUG):
            report = notifier.run_once()
        assert report.failed == 1
        notifier.last_error = report.errors[-1]  # what /healthz shows after such a cycle
        rows = TableStore.from_settings(settings).read("notifications").to_pylist()
        status = delivery_status(TableStore.from_settings(settings))
        assert expected in status["last_error"] and f"{base} (route webhook)" in status["last_error"]
        texts += [*report.errors, json.dumps(health(notifier)), json.dumps(rows, default=str),
                  generate_latest(notifier.metrics.registry).decode(), repr(notifier.routes[0])]
    logged = [r.getMessage() for r in caplog.records]
    assert any("route webhook failed" in line for line in logged)
    for text in [*texts, *logged, caplog.text]:
        assert key not in text and "k" * 24 not in text, text
    # A NOTIFY_WEBHOOK_URL that is not http(s) stops the notifier without echoing the value.
    with pytest.raises(RulesError, match="NOTIFY_WEBHOOK_URL") as refused:
        load_routes(_settings(tmp_path, notify_webhook_url=f"hooks.example{key}"))
    assert "k" * 24 not in str(refused.value)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthz(port: int, after: str | None = None, timeout: float = 30) -> dict[str, Any]:
    """/healthz once the notifier has finished a cycle (one later than ``after``)."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                body = json.loads(response.read())
                if body["last_cycle_at"] and body["last_cycle_at"] != after:
                    return body
        except OSError:
            pass
        assert time.monotonic() < deadline, "the notifier did not answer /healthz"
        time.sleep(0.1)


@pytest.mark.integration
def test_notifier_process_delivers_once_across_a_restart(isolated_env: Path, receiver: Receiver,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The process `make up` starts, started twice (about 13 s on two cores); its /metrics counts what it sent."""
    import subprocess
    import sys
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from incident_stack.services import SERVICES

    port, metrics_port = _free_port(), _free_port()
    for key, value in {"NOTIFY_WEBHOOK_URL": f"{receiver.url}/hook", "NOTIFY_PORT": str(port),
                       "NOTIFY_METRICS_PORT": str(metrics_port), "METRICS_HOST": "127.0.0.1",
                       "NOTIFY_INTERVAL_SECONDS": "0.2", "NOTIFY_COALESCE_SECONDS": "0"}.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    _write(settings, [_row("INC-1", 1, "P1"), _row("INC-1", 2, "P1", "resolved", minutes=1)])
    # Started as `make up` starts it: NOTIFY_WEBHOOK_URL, a secret, reaches it through its "notify" grant.
    env = SERVICES["notifier"].environment(settings)
    assert env["NOTIFY_WEBHOOK_URL"] == f"{receiver.url}/hook"
    for expected_sent in (2, 0):  # the restarted process sends nothing again
        process = subprocess.Popen([sys.executable, "-m", "incident_dashboard.notify"], env=env)
        try:
            first = _healthz(port)
            assert first["routes"] == ["webhook"] and first["last_error"] is None
            _healthz(port, after=first["last_cycle_at"])  # at least one more cycle after the first
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
                sent = [s.value for f in text_string_to_metric_families(response.read().decode())
                        for s in f.samples if s.name == "incident_notifier_notifications_sent_total"]
            assert sum(sent) == expected_sent
        finally:
            process.terminate()
            assert process.wait(timeout=20) == 0
        assert [b["event"] for b in receiver.got("/hook")] == ["opened", "resolved"]


def test_pipeline_page_shows_failed_deliveries_and_the_last_error(demo_env: Any, receiver: Receiver) -> None:
    from streamlit.testing.v1 import AppTest

    from incident_contracts.settings import get_settings

    settings = get_settings()
    receiver.statuses["/hook"] = [500]
    incident = demo_env.incidents[0].incident_id
    updates = TableStore.from_settings(settings).read("incident_updates").to_pylist()
    now = datetime.now(UTC)
    rows = [dict(r, update_time=now, opened_at=now) for r in updates if r["incident_id"] == incident][:1]
    _write(settings, [dict(rows[0], incident_id="INC-NEW", severity="P1")])
    # The demo's own incidents are older than the lookback: only the new one is notified.
    notifier = Notifier(load_settings(notify_attempts=1, notify_coalesce_seconds=0, notify_lookback_minutes=0.5),
                        routes=[Route(name="hook", url=f"{receiver.url}/hook")], rca=lambda ids: {})
    assert notifier.run_once().failed == 1

    app = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py"), default_timeout=60)
    app.run()
    app.switch_page("views/pipeline.py").run()
    assert not app.exception, [e.value for e in app.exception]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Failed deliveries"] == "1" and metrics["Messages sent"] == "0"
    warning = next(w.value for w in app.warning if "Last failure" in w.value)
    assert "answered HTTP 500" in re.sub(r"\\(.)", r"\1", warning)


def test_new_table_versions_are_read_by_their_new_files_and_compaction_by_a_full_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deltalake import DeltaTable

    from incident_dashboard.notify import notifier as module

    settings = _settings(tmp_path)
    store = TableStore.from_settings(settings)
    read_files: list[int] = []  # files read by each incremental read
    real = module.ds.FileSystemDataset

    def counting(fragments, *args, **kwargs):
        read_files.append(len(fragments))
        return real(fragments, *args, **kwargs)

    monkeypatch.setattr(module, "ds", SimpleNamespace(FileSystemDataset=counting))  # the notifier's use only

    def everything() -> list[tuple]:
        return sorted(store.read("incident_updates", columns=["incident_id", "update_seq"]).to_pandas()
                      .itertuples(index=False, name=None))

    def seen(notifier: Notifier) -> list[tuple]:
        return sorted(notifier.updates()[["incident_id", "update_seq"]].itertuples(index=False, name=None))

    _write(settings, [_row("INC-1", 1, "P2"), _row("INC-2", 1, "P3")])
    notifier = Notifier(settings, routes=[])
    assert seen(notifier) == everything() and read_files == []
    _write(settings, [_row("INC-1", 2, "P1", minutes=1)])
    _write(settings, [_row("INC-3", 1, "P2", minutes=2)])
    assert seen(notifier) == everything() == [("INC-1", 1), ("INC-1", 2), ("INC-2", 1), ("INC-3", 1)]
    assert read_files == [2]  # the two files of the two new commits, not the first one again
    assert seen(notifier) == everything() and read_files == [2]  # same version: nothing read

    DeltaTable(str(settings.data_dir / "incident_updates")).optimize.compact()  # files replaced: a full read
    _write(settings, [_row("INC-1", 3, "P1", "resolved", minutes=3)])
    assert seen(notifier) == everything() and len(everything()) == 5 and read_files == [2]
