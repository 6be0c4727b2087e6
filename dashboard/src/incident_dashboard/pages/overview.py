"""Overview: open incidents by severity, incidents and error rate over time, response times (MTTA/MTTR),
noisiest services, freshness."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from incident_dashboard.actions.metrics import response_times
from incident_dashboard.ui import actions_panel, charts, common
from incident_dashboard.ui.common import Window, fmt_age, fmt_duration, fmt_pct


def render() -> None:
    st.title("Overview")
    repo = common.repository()
    freshness = repo.freshness()
    common.data_caption(freshness)
    window = common.time_window("overview_window", freshness, first=repo.data_start(), zoom_to_data=True)
    common.live(lambda: _body(window))


def _body(window: Window) -> None:
    repo = common.repository()
    updates, events = repo.status("incident_updates"), repo.status("events")
    freshness = repo.freshness()

    _kpis(window)
    st.space("small")
    left, right = st.columns([2, 1], gap="medium")
    with left, st.container(border=True):
        st.markdown("### Incidents opened")
        if not common.table_notice(updates, "incidents"):
            over_time = repo.incidents_over_time(window.start, window.end, window.bucket)
            if over_time.empty:
                st.caption(f"No incident opened in the last {window.label}.")
            else:
                common.chart(charts.incidents_over_time(over_time, window.span, window.step))
    with right, st.container(border=True):
        st.markdown("### Open incidents by severity")
        if not updates.empty:
            common.chart(charts.severity_donut(repo.open_by_severity()))
        else:
            st.caption("No incidents table yet.")

    with st.container(border=True):
        st.markdown("### Error rate by service")
        if not common.table_notice(events, "events"):
            traffic = repo.traffic(window.start, window.end, window.bucket)
            if traffic.empty:
                st.caption(f"No events in the last {window.label}.")
            else:
                noisy = repo.noisiest_services(window.start, window.end, limit=8)["service"].tolist()
                common.chart(charts.error_rate_over_time(traffic, noisy, window.span))

    if not events.empty:
        left, right = st.columns([3, 2], gap="medium")
        with left, st.container(border=True):
            st.markdown("### Heat map: error rate per service")
            traffic = repo.traffic(window.start, window.end, window.bucket)
            if not traffic.empty:
                common.chart(charts.service_heatmap(traffic, window.span, window.step))
        with right, st.container(border=True):
            st.markdown("### Noisiest services")
            noisy = repo.noisiest_services(window.start, window.end, limit=8)
            if not noisy.empty:
                common.chart(charts.noisiest_services(noisy))

    if not updates.empty:
        _response_times(window)

    left, right = st.columns([3, 2], gap="medium")
    with left, st.container(border=True):
        st.markdown("### Top error signatures")
        signatures = repo.top_signatures(window.start, window.end, limit=8) if not events.empty else pd.DataFrame()
        if signatures.empty:
            st.caption("No error signatures in this window.")
        else:
            st.dataframe(signatures[["service", "errors", "signature", "last_seen"]], hide_index=True,
                         width="stretch", column_config={
                             "signature": st.column_config.TextColumn("signature", width="large"),
                             "errors": st.column_config.NumberColumn("errors", format="localized"),
                             "last_seen": st.column_config.DatetimeColumn("last seen (UTC)", format="HH:mm:ss",
                                                                          timezone="UTC")})
    with right, st.container(border=True):
        st.markdown("### Pipeline freshness")
        _freshness(freshness)
    st.caption(f"Updated {pd.Timestamp.now(tz='UTC'):%H:%M:%S} UTC")


def _response_times(window: Window) -> None:
    with st.container(border=True):
        st.markdown("### Response times (MTTA / MTTR)")
        lifecycle = common.repository().lifecycle_rows(window.start, window.end)
        table = response_times(lifecycle, actions_panel.actions().frame())
        if table.empty:
            st.caption(f"No incident opened in the last {window.label}.")
            return
        shown = table.assign(mtta=table["mtta"].map(fmt_duration), mttr=table["mttr"].map(fmt_duration))
        st.dataframe(shown, hide_index=True, width="stretch", key="response_times", column_config={
            "severity": st.column_config.TextColumn("sev", width="small"),
            "acknowledged": st.column_config.NumberColumn("acked", help="Incidents a responder acknowledged "
                                                                         "(or resolved)"),
            "mtta": st.column_config.TextColumn("MTTA", help="Mean time from the detector opening the incident "
                                                             "to the first acknowledgement"),
            "resolved": st.column_config.NumberColumn(help="Resolved by a responder or by the detector"),
            "mttr": st.column_config.TextColumn("MTTR", help="Mean time from opening to resolution (a responder's "
                                                             "resolve, else the detector's)")})
        st.caption("Incidents opened in this window; processing times (docs/operations.md).")


def _kpis(window: Window) -> None:
    repo = common.repository()
    open_counts = dict(repo.open_by_severity().values.tolist())
    traffic = repo.traffic(window.start, window.end, window.bucket, by_service=False)
    events = int(traffic["events"].sum()) if not traffic.empty else 0
    errors = int(traffic["errors"].sum()) if not traffic.empty else 0
    cols = st.columns(6, gap="small")
    for col, severity in zip(cols[:4], ("P1", "P2", "P3", "P4"), strict=True):
        count = int(open_counts.get(severity, 0))
        col.metric(f"Open {severity}", count, border=True,
                   help=f"Incidents of severity {severity} whose latest update is not resolved.")
    cols[4].metric(f"Events ({window.label})", f"{events:,}", border=True)
    cols[5].metric(f"Error rate ({window.label})", fmt_pct(errors / events if events else None), border=True)


def _freshness(freshness) -> None:
    rows = [
        ("Newest event", freshness.latest_event_time, freshness.age_seconds(freshness.latest_event_time)),
        ("Newest ingest", freshness.latest_ingest_time, freshness.age_seconds(freshness.latest_ingest_time)),
        ("Newest incident update", freshness.latest_incident_update,
         freshness.age_seconds(freshness.latest_incident_update)),
        ("Newest Spark batch", freshness.latest_batch_time, freshness.age_seconds(freshness.latest_batch_time)),
    ]
    for label, moment, age in rows:
        icon = (":green[:material/check_circle:]" if age is not None and age < 120
                else ":orange[:material/schedule:]" if age is not None and age < 900
                else ":red[:material/error:]" if age is not None else ":gray[:material/radio_button_unchecked:]")
        value = f"{moment:%H:%M:%S} UTC · {fmt_age(age)} ago" if moment else "no data"
        st.markdown(f"{icon} **{label}**: {value}")
    if freshness.latest_event_time and freshness.latest_ingest_time:
        st.caption("Ingest delay of the newest event: "
                   f"{fmt_age((freshness.latest_ingest_time - freshness.latest_event_time).total_seconds())}")
    if freshness.latest_batch_lag is not None:
        st.caption(f"Kafka lag reported by the last batch: {freshness.latest_batch_lag:,} records")
