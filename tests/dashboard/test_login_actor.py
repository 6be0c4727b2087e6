"""The login path: behind the login proxy, an action is recorded under the name the user signed in with.

The compose stack's `dashboard-proxy` (compose/dashboard-proxy/Caddyfile) asks for a login and passes the
user on in the X-Forwarded-User header; Streamlit hands the dashboard the headers of the browser's
connection. This test plays the proxy's part with a real headless Chromium that sends that header on every
request (DevTools' extra HTTP headers: the page, its scripts and the app's WebSocket) to a real
`streamlit run` server, and records an action from the incident page. Integration, about 15 s.
"""

from __future__ import annotations

import json
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

from incident_contracts.table_store import TableStore
from incident_dashboard.actions.log import ActionLog
from incident_dashboard.demo import DemoSummary
from incident_stack.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
LOGIN = "dana-oncall"  # not typed anywhere: the page can only learn it from the header


@pytest.fixture
def dashboard(demo_env: DemoSummary, tmp_path: Path) -> Iterator[str]:
    chromium_path()  # fail now, with the install hint, rather than after starting the server
    port = free_port()
    env = {**os.environ, "DATA_DIR": str(demo_env.data_dir), "ENV_FILE": str(tmp_path / "no.env"),
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "GEMINI_API_KEY": "", "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "streamlit.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.port", str(port),
             "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("streamlit did not become healthy:\n" + log_path.read_text())
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_an_action_behind_the_login_proxy_is_recorded_under_the_login_name(demo_env: DemoSummary,
                                                                         dashboard: str) -> None:
    incident_id = demo_env.incident_for("disk_full").incident_id
    log = ActionLog(TableStore(str(demo_env.data_dir)))
    assert log.for_incident(incident_id).empty
    with Browser(width=1280, height=900) as browser:
        browser.call("Network.enable")
        browser.call("Network.setExtraHTTPHeaders", headers={"X-Forwarded-User": LOGIN})
        browser.open(f"{dashboard}/incident?id={incident_id}")
        browser.wait_for(f"document.body.innerText.includes({json.dumps(f'Acting as {LOGIN} (signed in)')})",
                         timeout=60, settle=0.5)
        assert "Your name" not in browser.text()  # nobody is asked to type a name behind the login
        clicked = browser.evaluate(
            "(() => { const b = [...document.querySelectorAll('button')]"
            ".find(e => e.innerText.trim().endsWith('Record'));"  # after the button's icon name
            " if (b) { b.click(); } return Boolean(b); })()")
        assert clicked, "no Record button on the incident page"
        browser.wait_for(f"document.body.innerText.includes({json.dumps(f'Recorded: acknowledge by {LOGIN}')})",
                         timeout=30, settle=0.2)
    stored = log.for_incident(incident_id)
    assert stored["action"].tolist() == ["acknowledge"]
    assert stored["actor"].tolist() == [LOGIN]
    assert stored["actor_source"].tolist() == ["login"]
    assert log.state(incident_id).acknowledged_by == LOGIN
