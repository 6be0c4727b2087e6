"""The Markdown export of a stored analysis (the incident page's download)."""

from __future__ import annotations

from incident_dashboard.analysis.export import to_markdown
from incident_dashboard.demo import DemoSummary
from incident_rca.service import analyze


def test_an_offline_analysis_exports_every_section(demo_env: DemoSummary) -> None:
    analysis = analyze(demo_env.incident_for("cache_stampede").incident_id)
    markdown = to_markdown(analysis)
    for section in ("# Root-cause analysis of", "## Summary", "## Most likely root cause", "## Evidence",
                    "## Timeline", "## Action plan", "## How to confirm", "## Prevention", "## Runbook candidates"):
        assert section in markdown
    assert "Offline analysis" in markdown and "nothing was executed" in markdown
    assert "| 1 |" in markdown  # the ordered action plan
