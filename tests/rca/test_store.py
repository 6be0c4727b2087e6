"""Stored analyses and ratings."""

from __future__ import annotations

import threading
from pathlib import Path

from incident_contracts.settings import get_settings
from incident_dashboard.demo import DemoSummary
from incident_rca.models import Analysis, Feedback
from incident_rca.service import analyze, store_for
from incident_rca.store import AnalysisStore


def test_offline_analysis_is_stored_and_reused(demo_env: DemoSummary) -> None:
    plan = demo_env.incident_for("cache_stampede")
    first = analyze(plan.incident_id)
    assert first.engine == "offline" and first.model == "runbook-bm25"
    assert first.prompt_version.startswith("offline-v1+kb.")
    assert first.runbooks[0].runbook_id == "cache_stampede"
    assert "nothing was sent" in first.sent.system_instruction
    assert analyze(plan.incident_id).analysis_id == first.analysis_id
    path = store_for(get_settings()).path_for(plan.incident_id, "offline", first.model, first.prompt_version)
    assert Analysis.model_validate_json(path.read_text()).analysis_id == first.analysis_id
    assert not list(path.parent.glob(".tmp-*"))  # atomic write left no scratch file


def test_feedback_is_appended_and_summarised(tmp_path: Path) -> None:
    store = AnalysisStore(tmp_path / "analyses")
    assert store.quality().empty

    def rate(i: int) -> None:
        store.add_feedback(Feedback(analysis_id=f"a{i % 3}", incident_id="INC-1", engine="gemini",
                                    model="gemini-2.5-flash", prompt_version="rca-v1", useful=i % 4 != 0,
                                    comment=f"comment {i}"))

    threads = [threading.Thread(target=rate, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (store.feedback_file).open("a").write('{"analysis_id": "torn')  # a writer died mid-line
    assert len(store.feedback()) == 40
    quality = store.quality().iloc[0]
    assert quality["ratings"] == 40 and quality["useful"] == 30 and quality["useful_share"] == 0.75
    assert len(store.feedback_for("a0")) == 14


def test_unreadable_stored_file_is_ignored(tmp_path: Path) -> None:
    store = AnalysisStore(tmp_path)
    folder = tmp_path / "INC-1"
    folder.mkdir()
    (folder / "gemini--m--v.json").write_text("{not json")
    assert store.for_incident("INC-1") == [] and store.get("INC-1", "gemini", "m", "v") is None
