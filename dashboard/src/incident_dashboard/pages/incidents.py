"""Incidents: filter by time, severity, detector status, response (the human status), service and text; a
sortable table; links to each incident."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from incident_dashboard.actions.status import HUMAN_STATUSES
from incident_dashboard.ui import actions_panel, charts, common
from incident_dashboard.ui.common import fmt_duration, incident_link
from incident_rca.data import SEVERITIES, STATUSES, IncidentFilter

SORT_LABELS = {"severity": "Severity, open first", "newest": "Newest first", "oldest": "Oldest first",
               "longest": "Longest", "anomaly": "Most anomalous", "errors": "Most errors"}


def render() -> None:
    st.title("Incidents")
    repo = common.repository()
    freshness = repo.freshness()
    common.data_caption(freshness)
    status = repo.status("incident_updates")
    if common.table_notice(status, "incidents"):
        return

    top = st.columns([3, 2, 2, 3], gap="medium", vertical_alignment="bottom")
    with top[0]:
        window = common.time_window("incidents_window", freshness, default="24 h",
                                    first=repo.data_start())
    with top[1]:
        severities = st.pills("Severity", SEVERITIES, selection_mode="multi", key="incidents_severity")
    with top[2]:
        statuses = st.pills("Detector status", STATUSES, selection_mode="multi", key="incidents_status",
                            help="What the detector sees: open while the anomaly lasts.")
    with top[3]:
        human = st.pills("Response", HUMAN_STATUSES, selection_mode="multi", key="incidents_human",
                         help="What responders did: acknowledged, snoozed (until a time), resolved; open when "
                              "nobody acted yet or it was reopened.")
    row = st.columns([2, 3, 2], gap="medium", vertical_alignment="bottom")
    services = row[0].multiselect("Service", repo.services(), key="incidents_service", placeholder="All services")
    text = row[1].text_input("Search", key="incidents_text", placeholder="ID, title, signature, owner, trigger...")
    sort = row[2].selectbox("Sort", list(SORT_LABELS), format_func=SORT_LABELS.get, key="incidents_sort")
    flt = IncidentFilter(start=window.start, end=window.end, severities=tuple(severities or ()),
                         statuses=tuple(statuses or ()), services=tuple(services or ()), text=text or "", sort=sort)
    common.live(lambda: _results(flt, tuple(human or ())))


def _results(flt: IncidentFilter, human: tuple[str, ...] = ()) -> None:
    log = actions_panel.actions()
    now = datetime.now(UTC)
    if human:
        only, excluded = log.filter_ids(human, now)
        flt = replace(flt, only_ids=only, excluded_ids=excluded)
    page = common.repository().incidents(flt)
    rows = page.rows
    states = log.states()
    response = rows["incident_id"].map(lambda i: states[i].label(now) if i in states else "open")
    assignee = rows["incident_id"].map(lambda i: states[i].assignee if i in states else None)
    shown = f" (showing the first {len(rows)})" if page.total > len(rows) else ""
    st.markdown(f"**{page.total:,} incident{'s' if page.total != 1 else ''}** match{'es' if page.total == 1 else ''}"
                f"{shown}.")
    if rows.empty:
        st.info("No incident matches these filters. Widen the time window or clear a filter.",
                icon=":material/filter_alt_off:")
        return
    with st.container(border=True):
        st.markdown("### Timeline")
        common.chart(charts.incident_timeline(rows.head(300)))
    table = pd.DataFrame({
        "link": rows["incident_id"].map(incident_link),
        "severity": rows["severity"],
        "status": rows["status"],
        "response": response,
        "assignee": assignee,
        "service": rows["service"],
        "title": rows["title"],
        "opened_at": rows["opened_at"],
        "duration": (rows["active_until"] - rows["opened_at"]).map(fmt_duration),
        "error_rate": rows["error_rate"],
        "latency_p95_ms": rows["latency_p95_ms"],
        "owner": rows["owner"],
        "trigger": rows["trigger"],
        "linked": rows["linked"],
    })
    event = st.dataframe(
        table, hide_index=True, width="stretch", height=min(38 + 35 * len(table), 640),
        on_select="rerun", selection_mode="single-row", key="incidents_table",
        column_config={
            "link": st.column_config.LinkColumn("incident", display_text=r"incident\?id=(.*)", pinned=True,
                                                help="Deep link to the incident (opens in a new tab)"),
            "severity": st.column_config.TextColumn("sev", width="small"),
            "status": st.column_config.TextColumn("detector", help="The detector's lifecycle status"),
            "response": st.column_config.TextColumn("response", help="What responders did (audit trail)"),
            "title": st.column_config.TextColumn("title", width="large"),
            "opened_at": st.column_config.DatetimeColumn("opened (UTC)", format="YYYY-MM-DD HH:mm", timezone="UTC"),
            "error_rate": st.column_config.ProgressColumn("error rate", format="percent", min_value=0, max_value=1),
            "latency_p95_ms": st.column_config.NumberColumn("p95 ms", format="%.0f"),
            "linked": st.column_config.NumberColumn("linked", help="Incidents linked by dependency"),
        })
    st.caption("Click a row to open the incident here, or use its link to share it. Click a column header to sort.")
    selected = event.selection.rows if event and event.selection else []
    if selected:
        incident_id = rows.iloc[selected[0]]["incident_id"]
        st.switch_page("views/incident.py", query_params={"id": incident_id})
