"""The root-cause analysis section of the incident page: run, show, export, rate.

Errors of the Gemini call arrive as :class:`AnalysisError` with a kind, a message and a hint; they
are shown as such with a retry button (and the offline analysis as an alternative), never as a
stack trace.
"""

from __future__ import annotations

import logging
import uuid

import pandas as pd
import streamlit as st

from incident_contracts.settings import Settings
from incident_dashboard.analysis.export import to_markdown
from incident_dashboard.analysis.rate_limit import limiter_for
from incident_dashboard.ui import common
from incident_dashboard.ui.safe_text import md, md_code
from incident_rca.context import IncidentContext
from incident_rca.gemini import AnalysisError
from incident_rca.models import Analysis, Feedback
from incident_rca.prompt import build_request
from incident_rca.service import analyze, engine_for, store_for

log = logging.getLogger(__name__)

ERROR_TITLES = {
    "missing_key": "No Gemini API key",
    "bad_key": "Gemini rejected the API key",
    "quota": "Gemini quota exhausted (429)",
    "timeout": "Gemini timed out",
    "network": "Gemini is unreachable",
    "safety": "Gemini blocked the answer",
    "malformed": "Gemini's answer was malformed",
    "server": "Gemini is unavailable",
    "model": "Unknown Gemini model",
    "request": "Gemini rejected the request",
    "internal": "The analysis failed",
    "rate_limited": "Analysis limit reached",
}
PRIORITY_BADGES = {"now": ":red-badge[now]", "high": ":orange-badge[high]", "medium": ":blue-badge[medium]",
                   "low": ":gray-badge[low]"}


def _error_key(incident_id: str) -> str:
    return f"analysis_error::{incident_id}"


def _last_key(incident_id: str) -> str:
    """The analysis the user last asked for on this incident (shown first)."""
    return f"analysis_last::{incident_id}"


def _pick_key(incident_id: str) -> str:
    return f"analysis_pick::{incident_id}"


def render(cfg: Settings, context: IncidentContext) -> None:
    incident_id = context.incident_id
    engine, model, version = engine_for(cfg)
    store = store_for(cfg)
    stored = store.for_incident(incident_id)
    current = next((a for a in stored if (a.engine, a.model, a.prompt_version) == (engine, model, version)), None)

    head = st.columns([3, 2], vertical_alignment="center")
    head[0].markdown("### :material/psychology: Root-cause analysis")
    with head[1], st.container(horizontal=True, horizontal_alignment="right"):
        label = "Analyze with Gemini" if engine == "gemini" else "Run offline analysis"
        if current is None:
            if st.button(label, type="primary", icon=":material/auto_awesome:", key="analysis_run"):
                _run(cfg, incident_id, engine="auto", force=False)
        elif st.button("Run again", icon=":material/refresh:", key="analysis_rerun",
                       help="The stored answer is reused until you ask again (same incident, model and prompt)."):
            _run(cfg, incident_id, engine="auto", force=True)
        if engine == "gemini" and st.button("Offline analysis", key="analysis_offline",
                                            icon=":material/menu_book:"):
            _run(cfg, incident_id, engine="offline", force=False)

    if engine == "offline":
        st.caption("No GEMINI_API_KEY is set: the analysis is offline, matched deterministically against the runbooks "
                   "in `rca/runbooks/`. Nothing leaves this machine.")
    _show_error(cfg, incident_id)
    if current is None and not stored:
        _preview(context)
        return
    last = st.session_state.get(_last_key(incident_id))
    shown = next((a for a in stored if a.analysis_id == last), None) or current or stored[0]
    others = [a for a in stored if a.analysis_id != shown.analysis_id]
    if others:
        by_id = {a.analysis_id: a for a in [shown, *others]}
        picked = st.selectbox("Stored analyses", list(by_id), key=_pick_key(incident_id),
                              format_func=lambda i: f"{by_id[i].label} · {by_id[i].prompt_version} · "
                                                    f"{by_id[i].created_at:%Y-%m-%d %H:%M} UTC")
        shown = by_id.get(picked, shown)
    show_analysis(shown, context)
    _feedback(cfg, shown)


def _user() -> str:
    """Who the analysis limit counts for: the user the login proxy signed in (compose: dashboard-proxy sets
    X-Forwarded-User; the dashboard has no other way in), else this browser session."""
    signed_in = common.signed_in_user()
    if signed_in:
        return f"user:{signed_in}"
    return "session:" + st.session_state.setdefault("analysis_session_id", uuid.uuid4().hex)


def _run(cfg: Settings, incident_id: str, *, engine: str, force: bool) -> None:
    st.session_state.pop(_error_key(incident_id), None)
    chosen, model, _ = engine_for(cfg, engine)  # type: ignore[arg-type]
    if chosen == "gemini":  # a Gemini call spends the API key: counted against the user's limit
        decision = limiter_for(cfg).try_acquire(_user())
        if not decision.allowed:
            st.session_state[_error_key(incident_id)] = {
                "kind": "rate_limited", "message": decision.message(),
                "hint": "Stored analyses stay available, and the offline analysis is not limited.",
                "retryable": False}
            st.rerun()
    what = f"Asking Gemini ({model})…" if chosen == "gemini" else "Matching the runbooks…"
    try:
        with st.spinner(what):
            done = analyze(incident_id, settings=cfg, force=force, engine=engine)  # type: ignore[arg-type]
        st.session_state[_last_key(incident_id)] = done.analysis_id
        st.session_state.pop(_pick_key(incident_id), None)  # the picker starts at the new answer
    except AnalysisError as exc:
        st.session_state[_error_key(incident_id)] = {
            "kind": exc.kind, "message": exc.message, "hint": exc.hint, "retryable": exc.retryable}
    except Exception as exc:  # never a stack trace on the page; the log has it
        log.exception("analysis of %s failed", incident_id)
        st.session_state[_error_key(incident_id)] = {
            "kind": "internal", "message": f"{type(exc).__name__}: {exc}",
            "hint": "This is a bug or a data problem; the dashboard log has the details. Retry, or use the "
                    "offline analysis.", "retryable": True}
    st.rerun()  # draw the page again with the stored answer (or the error)


def _show_error(cfg: Settings, incident_id: str) -> None:
    error = st.session_state.get(_error_key(incident_id))
    if not error:
        return
    title = ERROR_TITLES.get(error["kind"], "The analysis failed")
    st.error(f"**{title}.** {md(error['message'])}\n\n{error['hint']}", icon=":material/error:")
    with st.container(horizontal=True):
        if error["kind"] != "rate_limited" and st.button("Retry", icon=":material/replay:", key="analysis_retry",
                                                          type="primary"):
            _run(cfg, incident_id, engine="auto", force=True)
        if engine_for(cfg)[0] == "gemini" and st.button("Use the offline analysis instead",
                                                        icon=":material/menu_book:", key="analysis_fallback"):
            _run(cfg, incident_id, engine="offline", force=False)
        if st.button("Dismiss", key="analysis_dismiss", type="tertiary"):
            st.session_state.pop(_error_key(incident_id), None)
            st.rerun()


def _preview(context: IncidentContext) -> None:
    request = build_request(context)
    redacted = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(request.redactions.items())) or "nothing"
    with st.expander(f"What would be sent ({len(request.prompt):,} characters; redacted: {redacted})",
                     icon=":material/visibility:"):
        st.caption("Secrets and personal data are replaced before anything leaves the machine; log text is marked "
                   "as untrusted data.")
        st.code(request.system_instruction, language="text", wrap_lines=True)
        st.code(request.prompt, language="markdown", wrap_lines=True, height=420)


def show_analysis(analysis: Analysis, context: IncidentContext | None = None) -> None:
    r = analysis.result
    rc = r.root_cause
    if analysis.engine == "offline":
        st.info("**Offline analysis** — generated from the runbook knowledge base by deterministic matching, "
                "without AI. Set GEMINI_API_KEY for a model-written analysis.", icon=":material/menu_book:")
    meta = [analysis.label, f"prompt {analysis.prompt_version}", f"{analysis.created_at:%Y-%m-%d %H:%M:%S} UTC",
            f"{analysis.duration_ms / 1000:.1f} s"]
    if analysis.usage:
        meta.append(f"{analysis.usage.prompt_tokens:,} tokens in / {analysis.usage.output_tokens:,} out")
    if context is not None and analysis.incident_update_seq is not None:
        latest = context.incident.get("update_seq")
        if latest is not None and int(latest) > analysis.incident_update_seq:
            meta.append(f"incident has changed since (update {analysis.incident_update_seq} → {int(latest)})")
    st.caption(" · ".join(meta))
    for warning in analysis.warnings:
        st.warning(md(warning), icon=":material/warning:")
    if r.insufficient_evidence:
        st.warning("**The evidence is insufficient for a confident conclusion.** "
                   + " ".join(md(m) for m in r.missing_information[:2]), icon=":material/help:")

    with st.container(border=True):
        st.markdown(f"**Summary.** {md(r.summary)}")
        cols = st.columns([4, 1], vertical_alignment="center")
        cols[0].markdown(f"#### Most likely root cause\n{md(rc.statement)}")
        with cols[1]:
            st.badge(str(rc.category), icon=":material/category:", color="violet")
            st.progress(rc.confidence, text=f"confidence {rc.confidence:.0%}")
        st.caption(md(rc.confidence_rationale))

    left, right = st.columns(2, gap="medium")
    with left, st.container(border=True):
        st.markdown("#### Evidence")
        for item in r.evidence:
            cites = " ".join(md_code(c) for c in item.citations)
            mark = ":green[:material/check_circle:]" if item.supports else ":orange[:material/help:]"
            st.markdown(f"{mark} {md(item.finding)} {cites}")
    with right, st.container(border=True):
        st.markdown("#### Timeline")
        st.markdown("\n".join(
            f"- **{md(_short_time(t.time))}** {md(t.event)} " + " ".join(md_code(c) for c in t.citations)
            for t in r.timeline)
            or "-")

    with st.container(border=True):
        st.markdown("#### Action plan")
        st.markdown("\n".join(
            f"{s.order}. {PRIORITY_BADGES.get(s.priority, md(s.priority))} {md(s.action)} "
            f":gray[— {md(s.owner)}{'; ' + md(s.rationale) if s.rationale else ''}]" for s in r.action_plan) or "-")
        st.caption("Suggested steps for a person to review and carry out. Nothing here is ever executed by the "
                   "dashboard.")
    left, right = st.columns(2, gap="medium")
    with left, st.container(border=True):
        st.markdown("#### How to confirm")
        st.markdown("\n".join(f"- {md(v)}" for v in r.verification) or "-")
    with right, st.container(border=True):
        st.markdown("#### Prevention")
        st.markdown("\n".join(f"- {md(p)}" for p in r.prevention) or "-")
        if r.missing_information:
            st.markdown("**Missing information**\n" + "\n".join(f"- {md(m)}" for m in r.missing_information))

    if analysis.runbooks:
        with st.expander("Runbook candidates (offline matcher)", icon=":material/leaderboard:"):
            st.dataframe(pd.DataFrame([m.model_dump() for m in analysis.runbooks]), hide_index=True, width="stretch")
    sent = analysis.sent
    redacted = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(sent.redactions.items())) or "nothing"
    title = "Exactly what was sent" if analysis.engine == "gemini" else "What was matched (nothing was sent)"
    with st.expander(f"{title} (redacted: {redacted})", icon=":material/visibility:"):
        st.code(sent.system_instruction, language="text", wrap_lines=True)
        st.code(sent.prompt, language="markdown", wrap_lines=True, height=420)
    st.download_button("Export as Markdown", to_markdown(analysis), file_name=f"{analysis.incident_id}-rca.md",
                       mime="text/markdown", icon=":material/download:", key=f"export_{analysis.analysis_id}")


def _short_time(value: str) -> str:
    """'2026-11-23T09:07:08Z' -> '09:07:08' (other formats unchanged)."""
    try:
        return pd.Timestamp(value).strftime("%H:%M:%S")
    except (ValueError, TypeError):
        return value


def _feedback(cfg: Settings, analysis: Analysis) -> None:
    store = store_for(cfg)
    given = store.feedback_for(analysis.analysis_id)
    useful = sum(1 for f in given if f.useful)
    with st.form(f"feedback_{analysis.analysis_id}", border=True):
        st.markdown("**Was this analysis useful?**"
                    + (f" · rated {len(given)}× so far, {useful} useful" if given else ""))
        verdict = st.radio("Rating", ["Useful", "Not useful"], horizontal=True, index=None,
                           key=f"rating_{analysis.analysis_id}", label_visibility="collapsed")
        comment = st.text_area("Comment (optional)", key=f"comment_{analysis.analysis_id}", height=80,
                               placeholder="What was right or wrong?")
        if st.form_submit_button("Send rating", icon=":material/thumbs_up_down:"):
            if verdict is None:
                st.warning("Pick Useful or Not useful first.")
            else:
                store.add_feedback(Feedback(analysis_id=analysis.analysis_id, incident_id=analysis.incident_id,
                                            engine=analysis.engine, model=analysis.model,
                                            prompt_version=analysis.prompt_version, useful=verdict == "Useful",
                                            comment=comment.strip()))
                st.success("Thanks: the rating is saved with the model and prompt version.")
