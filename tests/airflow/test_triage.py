"""Which incidents the triage DAG analyses (the analysis itself is tested end to end in test_pipeline_e2e)."""

from __future__ import annotations

from incident_airflow.triage import incidents_to_triage


def test_ids_come_from_the_triggering_events_without_repeats():
    extras = [{"escalate": ["inc-a", "inc-b"]}, {}, None, {"escalate": ["inc-b", "inc-c"], "events": 5}]
    assert incidents_to_triage(extras) == ["inc-a", "inc-b", "inc-c"]
