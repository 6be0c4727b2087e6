"""MTTA and MTTR by service and severity, from the lifecycle and the audit trail (a pure function).

All times are processing (wall-clock) times, so detector rows and human actions share one clock, also
for replayed logs whose event times are far in the past:

* start: the update_time of the incident's first lifecycle row (when the detector opened it);
* acknowledged: the first acknowledge (or resolve, the first response that ends the page) in the trail;
* resolved: the last human resolve when the human status ends resolved, else the update_time of the
  detector's first resolved row; an incident resolved by neither has no time to resolve.
"""

from __future__ import annotations

import pandas as pd

from incident_dashboard.actions.log import actions_of
from incident_dashboard.actions.status import fold

COLUMNS = ["service", "severity", "incidents", "acknowledged", "mtta", "resolved", "mttr"]


def response_times(lifecycle: pd.DataFrame, actions: pd.DataFrame) -> pd.DataFrame:
    """One row per (service, severity): incidents, how many were acknowledged and resolved, and the mean
    time to acknowledge and to resolve (Timedelta, NaT when none). ``lifecycle`` has incident_id,
    update_seq, update_time, service, severity, status; ``actions`` the columns of incident_actions."""
    if lifecycle.empty:
        return pd.DataFrame(columns=COLUMNS)
    ordered = lifecycle.sort_values(["incident_id", "update_seq", "update_time"], kind="stable")
    grouped = ordered.groupby("incident_id", sort=False)
    per = pd.DataFrame({
        "service": grouped["service"].last(), "severity": grouped["severity"].last(),
        "start": grouped["update_time"].first(),
        "detector_resolved": ordered[ordered["status"] == "resolved"].groupby("incident_id")["update_time"].min(),
    })
    acknowledged: dict[str, pd.Timestamp] = {}
    resolved: dict[str, pd.Timestamp] = {}
    if not actions.empty:
        for incident_id, group in actions[actions["incident_id"].isin(per.index)].groupby("incident_id"):
            responses = group[group["action"].isin(["acknowledge", "resolve"])]["action_time"]
            if not responses.empty:
                acknowledged[incident_id] = pd.Timestamp(responses.min())
            state = fold(actions_of(group))
            if state.resolved_at is not None:
                resolved[incident_id] = pd.Timestamp(state.resolved_at)
    per["acknowledged_at"] = _times(acknowledged).reindex(per.index)
    per["resolved_at"] = _times(resolved).reindex(per.index).fillna(pd.to_datetime(per["detector_resolved"], utc=True))
    per["tta"] = pd.to_datetime(per["acknowledged_at"], utc=True) - pd.to_datetime(per["start"], utc=True)
    per["ttr"] = pd.to_datetime(per["resolved_at"], utc=True) - pd.to_datetime(per["start"], utc=True)
    per.loc[per["tta"] < pd.Timedelta(0), "tta"] = pd.Timedelta(0)
    per.loc[per["ttr"] < pd.Timedelta(0), "ttr"] = pd.Timedelta(0)
    out = per.groupby(["service", "severity"]).agg(
        incidents=("start", "size"), acknowledged=("tta", "count"), mtta=("tta", "mean"),
        resolved=("ttr", "count"), mttr=("ttr", "mean")).reset_index()
    return out[COLUMNS].sort_values(["severity", "service"]).reset_index(drop=True)


def _times(values: dict[str, pd.Timestamp]) -> pd.Series:
    return pd.Series(values, dtype="datetime64[ns, UTC]") if values else pd.Series(dtype="datetime64[ns, UTC]")
