"""A real `streamlit run` server and a real headless Chromium: every page renders.

Screenshots are kept under artifacts/screenshots/ (a build artifact, not committed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import Browser, chromium_path
from PIL import Image, ImageStat

from incident_contracts.settings import load_settings
from incident_dashboard.analysis.service import analyze
from incident_dashboard.demo import DemoSummary
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
