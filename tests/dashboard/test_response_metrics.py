"""MTTA/MTTR from lifecycle + audit rows, and the post-mortem draft export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from incident_dashboard.actions.metrics import response_times
from incident_dashboard.actions.status import Action, fold
from incident_dashboard.analysis.export import postmortem_markdown

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def _at(minutes: float) -> pd.Timestamp:
    return pd.Timestamp(T0 + timedelta(minutes=minutes))


def _lifecycle(rows: list[tuple[str, int, float, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame([{"incident_id": i, "update_seq": seq, "update_time": _at(m), "service": svc,
                          "severity": sev, "status": status} for i, seq, m, svc, sev, status in rows])


def _actions(rows: list[tuple[str, str, float, str | None]]) -> pd.DataFrame:
    return pd.DataFrame([{"action_id": f"{n:03d}", "incident_id": i, "action": a, "action_time": _at(m),
                          "actor": "ana", "argument": arg} for n, (i, a, m, arg) in enumerate(rows)])


def test_mtta_and_mttr_by_service_and_severity() -> None:
    lifecycle = _lifecycle([
        ("A", 1, 0, "orders", "P1", "open"), ("A", 2, 30, "orders", "P1", "resolved"),
        ("B", 1, 10, "orders", "P1", "open"),  # acked after 4 min, resolved by a human after 20
        ("C", 1, 0, "search", "P2", "open"),  # nobody acted, still open
    ])
    actions = _actions([("A", "acknowledge", 2, None), ("B", "acknowledge", 14, None), ("B", "resolve", 30, None),
                        ("Z", "acknowledge", 1, None)])  # an incident outside the window is ignored
    table = response_times(lifecycle, actions).set_index(["service", "severity"])
    orders = table.loc[("orders", "P1")]
    assert orders["incidents"] == 2 and orders["acknowledged"] == 2 and orders["resolved"] == 2
    assert orders["mtta"] == pd.Timedelta(minutes=3)  # (2 + 4) / 2
    assert orders["mttr"] == pd.Timedelta(minutes=25)  # A: detector after 30; B: human after 20
    search = table.loc[("search", "P2")]
    assert search["acknowledged"] == 0 and pd.isna(search["mtta"]) and pd.isna(search["mttr"])


def test_a_reopened_incident_counts_its_last_resolution() -> None:
    lifecycle = _lifecycle([("A", 1, 0, "orders", "P2", "open")])
    actions = _actions([("A", "resolve", 5, None), ("A", "reopen", 6, None), ("A", "resolve", 12, None)])
    row = response_times(lifecycle, actions).iloc[0]
    assert row["mtta"] == pd.Timedelta(minutes=5) and row["mttr"] == pd.Timedelta(minutes=12)


def test_no_incidents_gives_an_empty_table() -> None:
    assert response_times(_lifecycle([]), _actions([])).empty


def test_postmortem_draft_interleaves_lifecycle_and_actions_and_escapes_text() -> None:
    incident = {"incident_id": "INC-1", "title": "orders [down](http://x)", "service": "orders",
                "environment": "prod", "tier": "1", "owner": "team-a", "severity": "P1", "trigger": "error_rate",
                "status": "resolved", "opened_at": T0, "resolved_at": T0 + timedelta(minutes=30),
                "severity_reasons": ["error rate 38%"]}
    lifecycle = pd.DataFrame([
        {"update_time": _at(0), "update_type": "opened", "severity": "P1", "status": "open", "error_rate": 0.38},
        {"update_time": _at(30), "update_type": "resolved", "severity": "P1", "status": "resolved",
         "error_rate": 0.01}])
    trail = _actions([("INC-1", "acknowledge", 2, None), ("INC-1", "note", 5, "pool *raised*")])
    trail["human_status"] = ["open", "acknowledged"]
    state = fold([Action("acknowledge", T0 + timedelta(minutes=2), "ana")])
    text = postmortem_markdown(incident, lifecycle, trail, None, state, T0 + timedelta(hours=1))
    assert text.startswith("# Post-mortem draft: INC\\-1: orders \\[down\\]\\(http\\:")  # no link survives
    timeline = text.split("## Timeline")[1].split("## Root cause")[0]
    order = [line.split("|")[3].strip() for line in timeline.splitlines() if line.startswith("| 2026")]
    assert order == ["opened", "acknowledge", "note: pool \\*raised\\*", "resolved"]
    assert "No root-cause analysis is stored" in text and "| 1 | (to be written) | | open |" in text
    assert "- Responders: acknowledged; assignee nobody" in text
    assert "## Responders' notes" in text
