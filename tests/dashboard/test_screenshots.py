"""A real `streamlit run` server and a real headless Chromium: every page renders, and text from logs and
model answers is shown as text.

Screenshots are kept under artifacts/screenshots/ (a build artifact, not committed).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from browser import Browser, chromium_path
from PIL import Image, ImageStat

from incident_contracts import tables as contract
from incident_contracts.settings import load_settings
from incident_contracts.table_store import TableStore
from incident_dashboard.demo import DemoSummary
from incident_rca.models import (
    ActionStep,
    Analysis,
    Category,
    EvidenceItem,
    Priority,
    RootCause,
    RootCauseAnalysis,
    SentRequest,
    TimelineEntry,
)
from incident_rca.service import analyze, store_for
from incident_stack.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "screenshots"
CHARTS = '[data-testid="stVegaLiteChart"]'
# Charts whose Vega view really drew its marks (a chart whose data did not arrive stays an empty box).
DRAWN = (f"[...document.querySelectorAll('{CHARTS}')]"
         ".filter(e => e.querySelector('svg.marks, canvas.marks')).length")


@pytest.fixture
def server(demo_env: DemoSummary, tmp_path: Path) -> Iterator[tuple[str, DemoSummary]]:
    chromium_path()  # fail now, with the install hint, rather than after starting the server
    analyze(demo_env.incident_for("db_pool_exhaustion").incident_id, settings=load_settings())  # offline answer
    port = free_port()
    env = {**os.environ, "DATA_DIR": str(demo_env.data_dir), "ENV_FILE": str(tmp_path / "no.env"),
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "GEMINI_API_KEY": "", "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "streamlit.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.port", str(port),
         "--server.headless", "true", "--server.address", "127.0.0.1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("streamlit did not become healthy:\n" + (tmp_path / "streamlit.log").read_text())
            time.sleep(0.5)
        yield url, demo_env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        log.close()


def _not_blank(path: Path) -> None:
    image = Image.open(path).convert("RGB")
    assert image.width == 1440 and image.height >= 900
    stat = ImageStat.Stat(image)
    assert max(stat.stddev) > 20  # charts and text, not an empty page
    assert len(image.getcolors(maxcolors=1 << 20) or []) > 200


@pytest.mark.integration
@pytest.mark.beside
def test_every_page_in_a_real_browser(server: tuple[str, DemoSummary]) -> None:
    url, demo = server
    incident_id = demo.incident_for("db_pool_exhaustion").incident_id
    with Browser(width=1440, height=1000) as browser:
        browser.open(f"{url}/")
        browser.wait_for(f"{DRAWN} >= 5 && document.body.innerText.includes('Pipeline freshness')", timeout=120)
        text = browser.text()
        for expected in ("Overview", "Open P1", "Open P2", "Incidents opened", "Open incidents by severity",
                         "Error rate by service", "Heat map: error rate per service", "Noisiest services",
                         "Top error signatures", "Pipeline freshness", "Auto-refresh"):
            assert expected in text, expected
        assert browser.count(CHARTS) == browser.evaluate(DRAWN) >= 5  # every chart drew its marks
        assert "Traceback" not in text and "Error" not in text.split("Error rate")[0]
        overview = browser.screenshot(ARTIFACTS / "overview.png")

        browser.open(f"{url}/incident?id={incident_id}")
        browser.wait_for(f"{DRAWN} >= 2 && document.body.innerText.includes('Most likely root cause')",
                         timeout=120)
        text = browser.text()
        for expected in (incident_id, "Around the incident", "Why this severity", "Affected services and hosts",
                         "Top signatures", "Lifecycle", "Sample log lines", "Linked incidents in dependent services",
                         "Root-cause analysis", "Offline analysis", "Most likely root cause", "Action plan",
                         "Export as Markdown", "Was this analysis useful?"):
            assert expected in text, expected
        assert "HikariPool" in text
        assert "Traceback" not in text
        incident = browser.screenshot(ARTIFACTS / "incident.png")

        browser.open(f"{url}/incidents")
        browser.wait_for(f"{DRAWN} >= 1 && document.body.innerText.includes('Click a row to open the incident')",
                         timeout=120)
        text = browser.text()
        for expected in ("Incidents", "Timeline", "Click a row to open the incident"):
            assert expected in text, expected
        assert "Traceback" not in text
        incidents = browser.screenshot(ARTIFACTS / "incidents.png")

        browser.open(f"{url}/pipeline")  # the broker is unreachable here: the page must say so, not fail
        browser.wait_for("document.body.innerText.includes('Dead letters')", timeout=120)
        text = browser.text()
        for expected in ("Pipeline", "Spark streaming job", "Dead letters", "Delta Lake tables"):
            assert expected in text, expected
        assert "Traceback" not in text
        pipeline = browser.screenshot(ARTIFACTS / "pipeline.png")

    for shot in (overview, incident, incidents, pipeline):
        _not_blank(shot)


# --- untrusted text -------------------------------------------------------------------------------

class _Receiver:
    """A local HTTP server that records every request: a page that fetches a planted URL shows up here."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _payload(url: str, field: str) -> str:
    """Markdown and HTML that would fetch or link ``url`` if the page rendered it instead of showing it."""
    return (f"{field} ![{field}-md-img]({url}/{field}/md-img.png) [{field}-md-link]({url}/{field}/md-link) "
            f"<img src=\"{url}/{field}/html-img.png\"> <script>fetch('{url}/{field}/script')</script> "
            f"<{url}/{field}/autolink>")


def _plant_untrusted_incident(data_dir: Path, base_id: str, url: str) -> str:
    """A copy of a demo incident whose log-derived fields, sample events and stored analysis carry payloads."""
    store = TableStore(str(Path(data_dir)))
    p = functools.partial(_payload, url)
    service, host = p("service"), p("host")
    rows = store.read("incident_updates").filter(pc.field("incident_id") == base_id).to_pylist()
    incident_id = "INC-UNTRUSTED-TEXT"
    for row in rows:
        row.update(incident_id=incident_id, service=service, environment=p("environment"), title=p("title"),
                   owner=p("owner"), trigger=p("trigger"), severity_reasons=[p("reason")],
                   affected_hosts=[host], sample_messages=[p("sample")], origin_service=p("origin"),
                   top_signatures=[dict(s, signature=p("signature"), sample=p("sample"))
                                   for s in row["top_signatures"]])
    store.append("incident_updates", pa.Table.from_pylist(rows, schema=contract.INCIDENT_UPDATES))
    first = rows[0]
    events = store.read("events", filter=(pc.field("event_time") >= first["first_seen"])
                        & (pc.field("event_time") <= first["last_seen"])).slice(0, 40).to_pylist()
    signature_ids = [s["signature_id"] for s in first["top_signatures"]]
    for i, event in enumerate(events):
        event.update(service=service, host=host, message=p("message"), is_error=True, level="ERROR",
                     signature_id=signature_ids[i % len(signature_ids)], event_id=f"untrusted-{i}")
    store.append("events", pa.Table.from_pylist(events, schema=contract.EVENTS))

    cited = [p("citation")]
    result = RootCauseAnalysis(
        summary=p("summary"),
        root_cause=RootCause(statement=p("statement"), category=Category.DATABASE, confidence=0.5,
                             confidence_rationale=p("rationale")),
        evidence=[EvidenceItem(finding=p("finding"), citations=cited)],
        timeline=[TimelineEntry(time=p("time"), event=p("timeline"), citations=cited)],
        action_plan=[ActionStep(order=1, action=p("action"), priority=Priority.NOW, owner=p("action-owner"),
                                rationale=p("action-rationale"))],
        verification=[p("verification")], prevention=[p("prevention")], insufficient_evidence=True,
        missing_information=[p("missing")])
    store_for(load_settings()).save(Analysis(
        analysis_id="untrusted-analysis", incident_id=incident_id, engine="gemini", model="gemini-test",
        prompt_version="rca-test", result=result, warnings=[p("warning")],
        sent=SentRequest(system_instruction="rules", prompt=p("prompt"))))
    return incident_id


INJECTED = ("[...document.querySelectorAll('img, a, script, iframe, link, source, object, embed')]"
            ".filter(e => [e.getAttribute('src'), e.getAttribute('href'), e.getAttribute('data'), e.textContent]"
            ".some(v => v && v.includes({marker})))"
            ".map(e => e.outerHTML.slice(0, 200))")


@pytest.mark.integration
@pytest.mark.beside
def test_untrusted_text_is_shown_as_text_in_a_real_browser(server: tuple[str, DemoSummary]) -> None:
    """Payloads in service names, titles, hosts, log lines, reasons, the analysis and the ?id= link render as
    text on the incident, Incidents, Overview and Pipeline pages: the browser fetches nothing from them and
    the DOM holds no element they would create (about 30 s)."""
    url, demo = server
    receiver = _Receiver()
    try:
        incident_id = _plant_untrusted_incident(demo.data_dir, demo.incident_for("db_pool_exhaustion").incident_id,
                                                receiver.url)
        marker = json.dumps(receiver.url)
        with Browser(width=1440, height=1000) as browser:
            browser.open(f"{url}/incident?id={incident_id}")
            browser.wait_for("document.body.innerText.includes('Was this analysis useful?') "
                             "&& document.body.innerText.includes('Sample log lines')", timeout=120)
            text = browser.text()
            for field in ("title", "service", "reason", "host", "summary", "statement", "finding", "timeline",
                          "action", "verification", "prevention", "missing", "warning", "citation"):
                assert f"![{field}-md-img](" in text, field  # shown, as the text it is
            assert "<script>fetch(" in text
            assert browser.evaluate(INJECTED.format(marker=marker)) == []

            deep_link = _payload(receiver.url, "query")
            browser.open(f"{url}/incident?id={quote(deep_link)}")
            browser.wait_for("document.body.innerText.includes('No incident with ID')", timeout=120)
            assert "![query-md-img](" in browser.text()
            assert browser.evaluate(INJECTED.format(marker=marker)) == []

            browser.open(f"{url}/incidents")
            browser.wait_for("document.body.innerText.includes('Click a row to open the incident')", timeout=120)
            assert browser.evaluate(INJECTED.format(marker=marker)) == []

            # The planted events' service and host reach the Overview's charts and tables, and the Pipeline
            # page's list of services missing from the catalog (running text).
            browser.open(f"{url}/")
            browser.wait_for("document.body.innerText.includes('Pipeline freshness')", timeout=120)
            assert browser.evaluate(INJECTED.format(marker=marker)) == []
            browser.open(f"{url}/pipeline")
            browser.wait_for("document.body.innerText.includes('Discovered services')", timeout=120)
            assert "![service-md-img](" in browser.text()
            assert browser.evaluate(INJECTED.format(marker=marker)) == []
            time.sleep(0.5)  # each page was stable for 1.5 s: anything it asked for has arrived by now
        assert receiver.paths == []
    finally:
        receiver.close()
