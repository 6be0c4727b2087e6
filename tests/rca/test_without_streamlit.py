"""The triage's analysis runs where neither Streamlit nor the dashboard package can be imported, as in the
Airflow image (a fresh interpreter, about 5 s)."""

from __future__ import annotations

import json
import subprocess
import sys

from incident_dashboard.demo import DemoSummary

# Importing a module whose sys.modules entry is None raises ImportError: the packages are "not installed".
PROBE = """
import json, sys
sys.modules["streamlit"] = None
sys.modules["incident_dashboard"] = None
from incident_airflow.triage import triage
from incident_contracts.settings import get_settings
settings = get_settings()
result = triage([sys.argv[1]], settings)
from incident_rca.service import cached_analysis
stored = cached_analysis(sys.argv[1], settings=settings)
print(json.dumps({"result": result.to_dict(), "engine": stored.engine if stored else None,
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("streamlit", "incident_dashboard")
                                   and sys.modules[m] is not None)}))
"""


def test_triage_analyses_and_stores_without_streamlit_or_the_dashboard(demo_env: DemoSummary) -> None:
    incident_id = demo_env.incident_for("cache_stampede").incident_id
    done = subprocess.run([sys.executable, "-c", PROBE, incident_id], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["result"] == {"analysed": [incident_id], "failed": {}}
    assert report["engine"] == "offline"  # no GEMINI_API_KEY in the test environment
    assert report["loaded"] == []
