"""Run summary text and note."""

from __future__ import annotations

from incident_airflow.runs import run_key
from incident_airflow.summary import build_summary


def _summary(ok=True):
    return build_summary(
        "manual__2026-11-23T10:00:00+00:00", "scenario 'mixed' at 200 events/s for 30s (seed 7)",
        {"generator": {"delivered": 6000, "duration_s": 30.2, "actual_rate": 198.7}},
        {"ok": ok, "expected": 6000, "events": 5990, "dead_letters": 10, "missing": 0 if ok else 3,
         "duplicates": 0},
        {"by_severity": {"P1": 1, "P3": 2}, "open": 2, "resolved": 1},
        {"seconds": 40.0, "submissions": 1},
    )


def test_summary_names_events_incidents_dead_letters_and_throughput():
    text = _summary().text()
    assert "6000 records produced in 30.2s (199/s)" in text
    assert "5990 in events, 10 in dead_letter; reconciled: nothing lost" in text
    assert "Incidents touched: 3 (P1 1, P3 2); 2 open, 1 resolved." in text
    assert "6000 records in 40.0s (150/s" in text


def test_note_is_markdown_and_within_the_api_limit():
    note = _summary(ok=False).note()
    assert note.startswith("**Run manual__")
    assert "NOT reconciled: 3 missing" in note
    assert len(note) < 1000


def test_run_key_is_file_and_generator_safe():
    assert run_key("manual__2026-11-23T10:52:36.139472+00:00") == "manual__2026-11-23T10-52-36.139472-00-00"
    assert run_key("__weird run/../id") == "run-__weird-run-..-id"
    assert run_key("+++").startswith("run-")
    assert len(run_key("x" * 500)) == 128
