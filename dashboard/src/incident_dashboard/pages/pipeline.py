"""Pipeline: Kafka topics, partitions, offsets and lag; Spark throughput, batch duration and state;
dead letters with reasons; files on disk; notification deliveries and failures; links to the Spark, Airflow
and Kafka UIs."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from incident_contracts.catalog import CatalogError, load_catalog
from incident_contracts.detector_counters import CLOCK_AHEAD, ENVIRONMENT_SILENT, LATE_COUNTED, LATE_EXCLUDED
from incident_dashboard.data.kafka_status import snapshot
from incident_dashboard.notify.notifier import delivery_status
from incident_dashboard.ui import charts, common
from incident_dashboard.ui.common import fmt_age
from incident_dashboard.ui.safe_text import md, md_code
from incident_rca.service import store_for


def render() -> None:
    st.title("Pipeline")
    cfg = common.settings()
    repo = common.repository()
    common.data_caption(repo.freshness())
    with st.container(horizontal=True, gap="small"):
        for name, url in common.ui_links(cfg).items():
            if url:
                st.link_button(name, url, icon=":material/open_in_new:")
            else:
                st.button(name, disabled=True, help="Set KAFKA_UI_URL to link a Kafka UI (the distributed stack "
                                                    "ships one; the embedded broker has none).")
    common.live(_body)


def _body() -> None:
    _kafka()
    _spark()
    _detection()
    _dead_letters()
    _storage()
    _notifications()
    _analysis_quality()
    st.caption(f"Updated {pd.Timestamp.now(tz='UTC'):%H:%M:%S} UTC")


def _notifications() -> None:
    cfg = common.settings()
    with st.container(border=True):
        st.markdown("### :material/notifications: Notifications")
        try:
            status = delivery_status(common.repository().store)
        except Exception as exc:  # an unreadable delivery log must not break the page
            st.error(f"**The notifications table cannot be read.** {md(exc)}", icon=":material/error:")
            return
        if not status["exists"]:
            # NOTIFY_WEBHOOK_URL is the notifier's secret: the dashboard cannot tell whether it is set.
            st.caption("No notification sent yet." + ("" if cfg.notify_rules_file else " Routes come from "
                       "NOTIFY_WEBHOOK_URL (given to the notifier only) or NOTIFY_RULES_FILE; the notifier's "
                       "/healthz lists them (docs/operations.md)."))
            return
        cols = st.columns(2)
        cols[0].metric("Messages sent", f"{status['sent']:,}", border=True)
        cols[1].metric("Failed deliveries", f"{status['failed']:,}", border=True,
                       help="Deliveries that failed every attempt (each is tried again, three rounds at most)")
        if status["last_error"]:
            st.warning(f"Last failure ({common.fmt_time(status['last_error_at'])} UTC): {md(status['last_error'])}",
                       icon=":material/error:")


def _kafka() -> None:
    cfg = common.settings()
    with st.container(border=True):
        st.markdown(f"### :material/hub: Kafka · `{cfg.kafka_bootstrap_servers}`")
        snap = snapshot(cfg.kafka_bootstrap_servers, cfg.kafka_topic_logs, cfg.kafka_consumer_group,
                        ttl=max(2.0, cfg.dashboard_cache_ttl_seconds))
        if not snap.reachable:
            st.error(f"**The broker is not reachable.** {md(snap.error)}", icon=":material/cloud_off:")
            return
        if snap.error:
            st.warning(md(snap.error), icon=":material/warning:")  # the client's text, as is
        logs = snap.partitions[snap.partitions["topic"] == cfg.kafka_topic_logs]
        cols = st.columns(4)
        cols[0].metric("Topics", len(snap.topics), border=True)
        cols[1].metric(f"Partitions of {cfg.kafka_topic_logs}", len(logs), border=True)
        cols[2].metric("Records retained", f"{int(logs['records'].sum()):,}" if not logs.empty else "-", border=True)
        lag = snap.total_lag
        cols[3].metric(f"Lag of group {snap.group}", f"{lag:,}" if lag is not None else "-", border=True,
                       help="True end offset minus the group's committed offset, summed over partitions.")
        if cfg.kafka_topic_logs not in set(snap.topics["topic"]):
            st.info(f"Topic `{cfg.kafka_topic_logs}` does not exist yet; `make up` creates it.")
        left, right = st.columns([3, 2], gap="medium")
        with left:
            st.dataframe(snap.partitions, hide_index=True, width="stretch", column_config={
                "earliest_offset": st.column_config.NumberColumn("earliest", format="localized"),
                "end_offset": st.column_config.NumberColumn("end", format="localized"),
                "records": st.column_config.NumberColumn(format="localized"),
                "committed": st.column_config.NumberColumn(format="localized"),
                "lag": st.column_config.NumberColumn(format="localized")})
            if not logs.empty and logs["committed"].isna().all():
                st.caption(f"Group `{snap.group}` has committed nothing on `{cfg.kafka_topic_logs}` yet: lag counts "
                           "every retained record.")
        with right:
            if not logs.empty and logs["lag"].fillna(0).sum() > 0:
                common.chart(charts.partition_lag_chart(logs.fillna({"lag": 0})))
            elif not logs.empty and logs["committed"].notna().any():
                st.success(f"Group `{snap.group}` is caught up: no lag on any partition of "
                           f"`{cfg.kafka_topic_logs}`.", icon=":material/check_circle:")
            with st.expander(f"All topics ({len(snap.topics)})"):
                st.dataframe(snap.topics, hide_index=True, width="stretch")


def _spark() -> None:
    cfg = common.settings()
    repo = common.repository()
    with st.container(border=True):
        st.markdown("### :material/bolt: Spark streaming job")
        if common.table_notice(repo.status("metrics"), "Spark metrics"):
            return
        metrics = repo.metrics_series()
        if metrics.empty:
            st.caption("No Spark metrics yet: the job records one row per micro-batch.")
            return
        last = metrics.iloc[-1]
        recent = metrics[metrics["timestamp"] >= last["timestamp"] - pd.Timedelta(minutes=5)]
        age = (pd.Timestamp.now(tz="UTC") - last["timestamp"]).total_seconds()
        cols = st.columns(5)
        cols[0].metric("Last batch", f"#{int(last['batch_id']):,}", border=True, help=f"{fmt_age(age)} ago")
        cols[1].metric("Rows/s (5 min)", f"{recent['processed_rows_per_second'].median():,.0f}", border=True,
                       help="Median processed rows per second over the last 5 minutes of batches")
        cols[2].metric("Batch p95 (5 min)", f"{recent['batch_duration_ms'].quantile(0.95):,.0f} ms", border=True)
        cols[3].metric("State rows", f"{int(last['state_rows'] or 0):,}", border=True)
        cols[4].metric("Lag (last batch)", f"{int(last['lag'] or 0):,}", border=True)
        view = _downsample(metrics)
        tab_rate, tab_duration, tab_state, tab_lag = st.tabs(["Throughput", "Batch duration", "State", "Lag"])
        with tab_rate:
            common.chart(charts.throughput_chart(view))
        with tab_duration:
            common.chart(charts.batch_duration_chart(view, cfg.stream_trigger_seconds * 1000))
        with tab_state:
            common.chart(charts.state_chart(view))
        with tab_lag:
            common.chart(charts.lag_chart(view))
        st.caption(f"{len(metrics):,} micro-batches recorded; charts show at most 1,500 points.")


def _detection() -> None:
    """What detection did not see as it arrived: late events (counted at arrival, or left out) and events
    dated ahead of their arrival per service, whole environments that fell silent, and services that are not
    in the catalog."""
    repo = common.repository()
    with st.container(border=True):
        st.markdown("### :material/radar: Detection input")
        counters = repo.detection_counters() if repo.status("metrics").exists else pd.DataFrame()
        if counters.empty:
            st.caption("Every event reached detection in time so far; no environment fell silent.")
        else:
            _silences(counters[counters["counter"] == ENVIRONMENT_SILENT])
            _late(counters[counters["counter"].isin([LATE_COUNTED, LATE_EXCLUDED, CLOCK_AHEAD])])
        _discovered(repo.services_seen() if repo.status("events").exists or repo.status("incident_updates").exists
                    else pd.DataFrame())


def _silences(silent: pd.DataFrame) -> None:
    for row in silent.itertuples():
        st.error(f"**Environment {md(row.environment)} fell silent** for {int(row.total):,} s in all (last "
                 f"{common.fmt_time(row.last_seen)}): most of its services stopped sending together, so the "
                 "detector paged none of them. Check the log shippers and the ingest path of that environment.",
                 icon=":material/signal_disconnected:")


def _late(late: pd.DataFrame) -> None:
    if late.empty:
        return
    table = late.pivot_table(index=["environment", "service"], columns="counter", values="total", aggfunc="sum",
                             fill_value=0).reset_index()
    for column in (LATE_COUNTED, LATE_EXCLUDED, CLOCK_AHEAD):
        if column not in table.columns:
            table[column] = 0
    excluded = int(table[LATE_EXCLUDED].sum())
    if excluded:
        st.warning(f"**{excluded:,} events were left out of detection**: they arrived more than the detector's "
                   "late horizon behind its clock (a host clock far behind, or old logs sent to a live "
                   "environment).", icon=":material/schedule:")
    st.markdown("Events not judged in their own second, per service: *counted at arrival* were later than the "
                "allowed lateness and judged in the second they arrived (a host clock behind, a shipper sending "
                "in batches); *left out* were not judged at all; *clock ahead* were dated after they reached the "
                "pipeline (a host clock ahead) and judged at their arrival.")
    st.dataframe(table[["environment", "service", LATE_COUNTED, LATE_EXCLUDED, CLOCK_AHEAD]], hide_index=True,
                 width="stretch",
                 column_config={LATE_COUNTED: st.column_config.NumberColumn("counted at arrival", format="%d"),
                                LATE_EXCLUDED: st.column_config.NumberColumn("left out", format="%d"),
                                CLOCK_AHEAD: st.column_config.NumberColumn("clock ahead", format="%d")})


def _discovered(seen: pd.DataFrame) -> None:
    if seen.empty:
        return
    try:
        known = set(load_catalog().names)
    except CatalogError as exc:  # an unreadable catalog must not take the page down
        st.warning(f"The service catalog cannot be read: {md(exc)}", icon=":material/warning:")
        known = None
    found = seen[seen["untiered"] | (~seen["service"].isin(known) if known is not None else False)]
    if found.empty:
        return
    names = found["service"].tolist()
    st.markdown(f"**Discovered services** ({len(names)}): seen in the events or incidents, not in the service "
                "catalog, so detection treats them as the default tier: " + ", ".join(md_code(n) for n in names))
    st.dataframe(found[["service", "events", "incidents"]], hide_index=True, width="stretch")
    st.caption("Add them to the catalog file (CATALOG_FILE, schemas/catalog/services.yaml) under `services:`, "
               "with their tier, owner and hosts:")
    st.code(catalog_snippet(names, common.settings().default_service_tier), language="yaml")


def catalog_snippet(names: list[str], tier: int) -> str:
    """YAML entries for the catalog's `services:` list, one per service; owner and hosts to fill in."""
    lines = []
    for name in names:
        quoted = name if name.replace("-", "").replace("_", "").replace(".", "").isalnum() else repr(name)
        lines += [f"  - name: {quoted}", f"    tier: {tier}", "    owner: TODO-team", "    hosts: [TODO-host]"]
    return "\n".join(lines)


def _downsample(frame: pd.DataFrame, points: int = 1500) -> pd.DataFrame:
    """Every n-th batch (keeping the maxima of duration and lag per step), so long runs stay light in the browser."""
    if len(frame) <= points:
        return frame
    step = -(-len(frame) // points)
    groups = frame.groupby(frame.index // step)
    return groups.agg({"timestamp": "first", "batch_id": "first", "num_input_rows": "sum",
                       "input_rows_per_second": "mean", "processed_rows_per_second": "mean",
                       "batch_duration_ms": "max", "state_rows": "last", "state_memory_bytes": "last",
                       "lag": "max"}).reset_index(drop=True)


def _dead_letters() -> None:
    repo = common.repository()
    with st.container(border=True):
        st.markdown("### :material/report: Dead letters")
        status = repo.status("dead_letter")
        if status.error:
            common.table_notice(status, "dead letters")
            return
        if not status.exists or status.empty:
            st.success("No dead letters: every record read from Kafka so far became an event.",
                       icon=":material/check_circle:")
            return
        summary = repo.dead_letter_summary()
        total = int(summary["records"].sum())
        st.markdown(f"**{total:,} records** could not be decoded; each is kept with its reason and raw bytes.")
        left, right = st.columns([2, 3], gap="medium")
        with left:
            common.chart(charts.dead_letter_reasons(summary))
        with right:
            common.chart(charts.dead_letter_over_time(repo.dead_letter_over_time()))
        reasons = summary["reason"].tolist()
        reason = st.selectbox("Reason", reasons, index=None, placeholder="All reasons", key="dl_reason")
        recent = repo.dead_letters(limit=200, reason=reason)
        st.dataframe(recent, hide_index=True, width="stretch", column_config={
            "detected_at": st.column_config.DatetimeColumn("detected (UTC)", format="YYYY-MM-DD HH:mm:ss",
                                                           timezone="UTC"),
            "kafka_timestamp": st.column_config.DatetimeColumn("kafka time (UTC)", format="HH:mm:ss", timezone="UTC"),
            "detail": st.column_config.TextColumn(width="large"),
            "raw_prefix_hex": st.column_config.TextColumn("raw bytes (hex, prefix)", width="medium")})


def _storage() -> None:
    repo = common.repository()
    with st.expander("Delta Lake tables", icon=":material/folder_open:"):
        rows = []
        for table in ("events", "incident_updates", "dead_letter", "metrics"):
            status = repo.status(table)
            rows.append({"table": table, "location": status.location, "exists": status.exists,
                         "version": status.version, "files": status.files, "MB": round(status.bytes / 1e6, 1),
                         "unreadable": len(status.unreadable), "problem": status.error or ""})
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        st.caption("Delta Lake tables: the dashboard reads the files of the latest committed version only, so files "
                   "being written or replaced by a compaction are never counted.")


def _analysis_quality() -> None:
    store = store_for(common.settings())
    with st.expander("Root-cause analysis quality (user ratings)", icon=":material/thumbs_up_down:"):
        quality = store.quality()
        if quality.empty:
            st.caption("No ratings yet. Rate an analysis on its incident page.")
        else:
            st.dataframe(quality, hide_index=True, width="stretch", column_config={
                "useful_share": st.column_config.ProgressColumn("useful", format="percent", min_value=0,
                                                                max_value=1)})
        analyses = store.all_analyses()
        if analyses:
            tokens = sum(a.usage.total_tokens for a in analyses if a.usage)
            st.caption(f"{len(analyses)} stored analyses; {tokens:,} Gemini tokens used in total.")
