"""Transitions worth a notification, derived from lifecycle rows and audit records (pure functions).

* ``opened``       an incident's first lifecycle row
* ``raised:<seq>`` a row whose severity is higher than every earlier one of the incident
* ``resolved``     the row that resolved it
* ``ack_timeout``  an incident still open (detector) and ``open`` (humans: nobody acknowledged, snoozed or
  resolved it) NOTIFY_ACK_TIMEOUT_MINUTES after it opened

Each transition has a stable key, so (incident_id, key, route) identifies one message for good.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from incident_dashboard.actions.status import HumanStatus, State
from incident_dashboard.notify.rules import Event

RANK = {"P1": 1, "P2": 2, "P3": 3, "P4": 4}


@dataclass(frozen=True)
class Transition:
    incident_id: str
    key: str  # opened, raised:<seq>, resolved, ack_timeout
    event: Event
    time: datetime  # when it happened (the row's processing time; for ack_timeout the deadline)
    severity: str  # the incident's highest severity so far (routes match on it)
    service: str
    incident: Mapping[str, Any] = field(default_factory=dict, compare=False)  # the lifecycle row

    @property
    def firing(self) -> bool:
        return self.event != Event.RESOLVED


def _aware(value: Any) -> datetime | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
        return None
    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).to_pydatetime()


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, pd.Timestamp | datetime):
            out[key] = _aware(value)
        elif hasattr(value, "tolist") and not isinstance(value, str):
            out[key] = value.tolist()
        else:
            out[key] = None if value is pd.NaT else value
    return out


def lifecycle_transitions(updates: pd.DataFrame) -> list[Transition]:
    """Every opened / severity-raised / resolved transition in the lifecycle rows, oldest first."""
    found: list[Transition] = []
    if updates.empty:
        return found
    ordered = updates.sort_values(["incident_id", "update_seq", "update_time"], kind="stable")
    for incident_id, rows in ordered.groupby("incident_id", sort=False):
        highest: str | None = None
        resolved = False
        for row in rows.to_dict("records"):
            severity = str(row["severity"])
            time = _aware(row["update_time"])
            plain = _plain(row)
            if highest is None:
                highest = severity
                found.append(Transition(incident_id, "opened", Event.OPENED, time, severity, row["service"], plain))
            elif RANK.get(severity, 9) < RANK.get(highest, 9):
                highest = severity
                found.append(Transition(incident_id, f"raised:{row['update_seq']}", Event.SEVERITY_RAISED, time,
                                        severity, row["service"], plain))
            if row["status"] == "resolved" and not resolved:
                resolved = True
                found.append(Transition(incident_id, "resolved", Event.RESOLVED, time, highest, row["service"],
                                        plain))
    return sorted(found, key=lambda t: (t.time, t.incident_id, t.key))


def ack_timeouts(updates: pd.DataFrame, states: Mapping[str, State], now: datetime,
                 timeout: timedelta) -> list[Transition]:
    """Incidents open for the detector and for the humans ``timeout`` after they opened."""
    if updates.empty or timeout <= timedelta(0):
        return []
    found = []
    latest = updates.sort_values(["update_seq", "update_time"]).groupby("incident_id").tail(1)
    opened = updates.groupby("incident_id")["update_time"].min()
    highest = updates.assign(rank=updates["severity"].map(lambda s: RANK.get(s, 9))).groupby("incident_id")["rank"]
    best = highest.min()
    names = {v: k for k, v in RANK.items()}
    for row in latest.to_dict("records"):
        incident_id = row["incident_id"]
        deadline = _aware(opened[incident_id]) + timeout
        state = states.get(incident_id, State())
        if row["status"] != "open" or deadline > now or state.status(now) != HumanStatus.OPEN:
            continue
        if state.last_action_at is not None and state.last_action_at + timeout > now:
            continue  # reopened (or snoozed) lately: the clock restarts at the last action
        found.append(Transition(incident_id, "ack_timeout", Event.ACK_TIMEOUT, deadline,
                                names.get(int(best[incident_id]), row["severity"]), row["service"], _plain(row)))
    return found
