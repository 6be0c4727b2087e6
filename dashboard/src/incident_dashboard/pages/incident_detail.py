"""Incident detail: lifecycle, severity reasons, affected services and hosts, charts around the incident,
top signatures, sample lines, linked incidents, and the root-cause analysis. Deep link: ``incident?id=ID``."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from incident_contracts.catalog import default_catalog
from incident_dashboard.ui import actions_panel, analysis_panel, charts, common
from incident_dashboard.ui.common import SEVERITY_BADGE, STATUS_BADGE, fmt_duration, fmt_pct, fmt_time, incident_link
from incident_dashboard.ui.safe_text import badge_label, md, md_code
from incident_rca.context import (
    WINDOW_AFTER,
    WINDOW_BEFORE,
    IncidentContext,
    IncidentNotFound,
    build_context,
)


def render() -> None:
    repo = common.repository()
    if common.table_notice(repo.status("incident_updates"), "incidents"):
        st.title("Incident")
        return
    incident_id = st.query_params.get("id")
    recent = repo.recent_incidents(300)
    if not incident_id:
        st.title("Incident")
        _picker(recent, None)
        return
    incident = repo.incident(incident_id)
    if incident is None:
        st.title("Incident")
        st.warning(f"No incident with ID {md_code(incident_id)}. It may not have been written yet, or the link is "
                   "wrong.", icon=":material/search_off:")
        _picker(recent, None)
        return
    context = build_context(repo, default_catalog(), incident_id)
    _header(context)
    actions_panel.render(context.incident)
    # The fragment's first run (part of this full run) reuses the context; its own reruns gather a fresh one.
    first_run = [context]
    common.live(lambda: _live_body(incident_id, first_run.pop() if first_run else None))
    st.divider()
    analysis_panel.render(common.settings(), context)


def _picker(recent: pd.DataFrame, current: str | None) -> None:
    if recent.empty:
        st.info("No incidents yet.")
        return
    labels = {r.incident_id: f"{r.incident_id} · {r.severity} {r.status} · {r.service} · {r.title}"
              for r in recent.itertuples()}
    choice = st.selectbox("Open an incident", list(labels), index=None, format_func=labels.get,
                          placeholder="Pick a recent incident…", key="incident_picker")
    if choice and choice != current:
        st.query_params["id"] = choice
        st.rerun()
    if current is None:
        newest = recent.head(10)
        st.markdown("**Newest incidents**")
        st.dataframe(pd.DataFrame({
            "link": newest["incident_id"].map(incident_link), "severity": newest["severity"],
            "status": newest["status"], "service": newest["service"], "opened_at": newest["opened_at"],
            "title": newest["title"]}), hide_index=True, width="stretch", column_config={
            "link": st.column_config.LinkColumn("incident", display_text=r"incident\?id=(.*)"),
            "severity": st.column_config.TextColumn("sev", width="small"),
            "opened_at": st.column_config.DatetimeColumn("opened (UTC)", format="YYYY-MM-DD HH:mm",
                                                         timezone="UTC"),
            "title": st.column_config.TextColumn(width="large")})
        st.caption("The Incidents page filters and sorts all of them.")


def _header(context: IncidentContext) -> None:
    inc = context.incident
    st.title(md(inc["incident_id"]))
    st.markdown(f"#### {md(inc.get('title') or inc['service'])}")
    with st.container(horizontal=True, gap="small"):
        st.badge(badge_label(inc["severity"]), color=SEVERITY_BADGE.get(inc["severity"], "gray"),
                 icon=":material/priority_high:")
        st.badge(badge_label(inc["status"]), color=STATUS_BADGE.get(inc["status"], "gray"))
        st.badge(badge_label(inc["service"]), color="blue", icon=":material/dns:")
        st.badge(f"tier {badge_label(inc.get('tier') or '?')}", color="gray")
        st.badge(f"owner {badge_label(inc.get('owner') or '?')}", color="gray", icon=":material/group:")
        if inc.get("trigger"):
            st.badge(f"trigger: {badge_label(inc['trigger'])}", color="violet")
        st.badge(badge_label(inc.get("environment")), color="gray")


def _live_body(incident_id: str, context: IncidentContext | None = None) -> None:
    if context is None:
        try:
            context = build_context(common.repository(), default_catalog(), incident_id)
        except IncidentNotFound:
            return
    inc = context.incident
    end = context.end
    cols = st.columns(6, gap="small")
    cols[0].metric("Opened (UTC)", f"{inc['opened_at']:%H:%M:%S}", border=True,
                   help=f"{fmt_time(inc['opened_at'])}; first anomalous event {fmt_time(inc['first_seen'])}")
    cols[1].metric("Resolved after" if inc.get("resolved_at") else "Open for",
                   fmt_duration(end - inc["opened_at"]), border=True)
    rate, base = inc.get("error_rate"), inc.get("baseline_error_rate")
    cols[2].metric("Error rate", fmt_pct(rate, 1), border=True, delta_color="inverse",
                   delta=_vs_baseline(rate, base), help=f"Baseline {fmt_pct(base)}")
    p95, base95 = inc.get("latency_p95_ms"), inc.get("baseline_latency_p95_ms")
    cols[3].metric("p95 latency", f"{p95:,.0f} ms" if p95 is not None else "-", border=True, delta_color="inverse",
                   delta=_vs_baseline(p95, base95), help=f"Baseline {base95:,.0f} ms" if base95 else None)
    cols[4].metric("Errors", f"{inc.get('error_count') or 0:,}", border=True,
                   help=f"out of {inc.get('event_count') or 0:,} events counted by the detector")
    cols[5].metric("Anomaly score", f"{inc.get('anomaly_score') or 0:.1f}", border=True)

    left, right = st.columns([2, 1], gap="medium")
    with left:
        _charts(context)
    with right:
        _reasons_and_scope(context)
    left, right = st.columns([1, 1], gap="medium")
    with left:
        _signatures(context)
    with right:
        _lifecycle(incident_id)
    _samples(context)
    _related(context)
    st.caption(f"Updated {pd.Timestamp.now(tz='UTC'):%H:%M:%S} UTC")


def _vs_baseline(value: float | None, baseline: float | None) -> str | None:
    """The metric's delta against its baseline: "12× baseline" above it, "-40% vs baseline" below it (the
    arrow of st.metric follows the sign)."""
    if value is None or not baseline or pd.isna(value) or pd.isna(baseline):
        return None
    ratio = value / baseline
    if ratio >= 1:
        return f"{ratio:,.0f}× baseline" if ratio >= 10 else f"{ratio:.1f}× baseline"
    return f"-{(1 - ratio) * 100:.0f}% vs baseline"


def _charts(context: IncidentContext) -> None:
    inc = context.incident
    window = context.window
    start, end = inc["opened_at"], context.end
    with st.container(border=True):
        st.markdown("### Around the incident")
        st.caption(f"{WINDOW_BEFORE.seconds // 60} min before to {WINDOW_AFTER.seconds // 60} min after; the "
                   "incident's span is shaded, its service drawn boldest, dashed line = its baseline.")
        if window.empty:
            st.caption("No raw events for this window (they may have been compacted away or not written yet).")
            return
        window = window[window["service"].isin(_chart_services(context))]
        if inc["service"] not in set(window["service"]):
            st.caption(f":orange[:material/warning:] The events table has no events of **{md(inc['service'])}** in "
                       "this window, so its own line is missing; the lines are the services around it.")
        tab_errors, tab_latency = st.tabs(["Error rate", "Latency p95"])
        with tab_errors:
            common.chart(charts.window_chart(window, "error_rate", "error rate", start, end, inc["service"],
                                             inc.get("baseline_error_rate"), fmt=".1%"))
        with tab_latency:
            common.chart(charts.window_chart(window, "latency_p95_ms", "p95 latency (ms)", start, end,
                                             inc["service"], inc.get("baseline_latency_p95_ms"), fmt=",.0f"))


def _chart_services(context: IncidentContext, extra: int = 2) -> list[str]:
    """The incident's service, services with related incidents, and the neighbours that moved most."""
    service = context.incident["service"]
    chosen = [service] + [r.service for r in context.related if r.service != service]
    window = context.window
    others = window[~window["service"].isin(chosen)]
    if not others.empty:
        peaks = others.groupby("service")["error_rate"].max().sort_values(ascending=False)
        chosen += peaks.index[:extra].tolist()
    return list(dict.fromkeys(chosen))[:5]


def _reasons_and_scope(context: IncidentContext) -> None:
    inc = context.incident
    topo = context.topology
    with st.container(border=True):
        st.markdown("### Why this severity")
        reasons = inc.get("severity_reasons") or []
        st.markdown("\n".join(f"- {md(r)}" for r in reasons) if reasons else "No reasons recorded.")
    with st.container(border=True):
        st.markdown("### Affected services and hosts")
        hosts = inc.get("affected_hosts") or []
        st.markdown(f"**{md(inc['service'])}** ({md(topo.get('kind'))}, tier {md(topo.get('tier'))}, "
                    f"{md(topo.get('owner'))})")
        if hosts:
            st.markdown("Hosts: " + " ".join(md_code(h) for h in hosts))
        if inc.get("origin_service"):
            origin = inc.get("origin_incident_id")
            link = f" ([{md(origin)}]({incident_link(origin)}))" if origin else ""
            st.markdown(f":material/call_split: Likely origin: **{md(inc['origin_service'])}**{link}")
        deps = ", ".join(md(d["service"]) for d in topo.get("depends_on", [])) or "none"
        callers = ", ".join(md(d["service"]) for d in topo.get("called_by", [])) or "none"
        st.markdown(f":material/arrow_downward: Depends on: {deps}  \n:material/arrow_upward: Called by: {callers}")
        if not topo.get("in_catalog"):
            st.caption("This service is not in the service catalog (schemas/catalog/services.yaml).")


def _signatures(context: IncidentContext) -> None:
    with st.container(border=True):
        st.markdown("### Top signatures")
        if not context.signatures:
            st.caption("The detector recorded no signatures for this incident.")
            return
        frame = pd.DataFrame([{"id": s.id, "count": s.count, "signature": s.signature} for s in context.signatures])
        common.chart(charts.signatures_bar(frame))
        st.dataframe(frame, hide_index=True, width="stretch",
                     column_config={"signature": st.column_config.TextColumn(width="large")})
        if context.surging:
            st.markdown("**Lines that surged when it opened** (warnings included)")
            surge = pd.DataFrame([{"id": w.id, "level": w.level, "before": w.before, "during": w.during,
                                   "signature": w.signature} for w in context.surging])
            st.dataframe(surge, hide_index=True, width="stretch", column_config={
                "before": st.column_config.NumberColumn("30 min before"),
                "during": st.column_config.NumberColumn("since opened"),
                "signature": st.column_config.TextColumn(width="large")})


def _lifecycle(incident_id: str) -> None:
    history = common.repository().incident_history(incident_id)
    with st.container(border=True):
        st.markdown("### Lifecycle")
        table = pd.DataFrame({
            "id": [f"L{i + 1}" for i in range(len(history))],
            "time": history["update_time"], "update": history["update_type"], "severity": history["severity"],
            "status": history["status"], "error rate": history["error_rate"], "events": history["event_count"]})
        st.dataframe(table, hide_index=True, width="stretch", column_config={
            "time": st.column_config.DatetimeColumn("time (UTC)", format="HH:mm:ss", timezone="UTC"),
            "error rate": st.column_config.NumberColumn(format="percent")})


def _samples(context: IncidentContext) -> None:
    with st.container(border=True):
        st.markdown("### Sample log lines")
        if not context.events:
            st.caption("No sample lines.")
            return
        raw = any(e.time is not None for e in context.events)
        lines = [f"[{e.id}] {fmt_time(e.time)} {e.host or '-':<10} {e.level or '-':<5} {e.message}" if e.time
                 else f"[{e.id}] {e.message}" for e in context.events]
        st.code("\n".join(lines), language="log", wrap_lines=True)
        source = ("" if raw else "The events table holds no error lines of this service for the incident's span "
                  "(not written yet, or removed); these are the sample lines the detector stored with the incident. ")
        st.caption(source + "Log text is shown as written by the applications; it is untrusted data.")


def _related(context: IncidentContext) -> None:
    with st.container(border=True):
        st.markdown("### Linked incidents in dependent services")
        if not context.related:
            st.caption("No incident in this service's dependencies or callers at the same time.")
            return
        table = pd.DataFrame([{
            "id": r.id, "link": incident_link(r.incident_id), "relation": r.relation, "service": r.service,
            "severity": r.severity, "status": r.status, "opened_at": r.opened_at, "title": r.title,
        } for r in context.related])
        st.dataframe(table, hide_index=True, width="stretch", column_config={
            "link": st.column_config.LinkColumn("incident", display_text=r"incident\?id=(.*)"),
            "opened_at": st.column_config.DatetimeColumn("opened (UTC)", format="HH:mm:ss", timezone="UTC"),
            "title": st.column_config.TextColumn(width="large")})
