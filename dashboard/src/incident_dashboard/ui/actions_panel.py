"""The Response panel of the incident page: the detector's lifecycle state next to the human status, the
actions a responder can take (acknowledge, assign, note, snooze, resolve, reopen) and the audit trail.

Who acts: the user the login proxy signed in, else a name typed once per browser visit (kept in the
session). Every action is appended to ``incident_actions`` (incident_dashboard.actions.log)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from incident_contracts.tables import ActionKind
from incident_dashboard.actions.log import ActionLog, Record, action_log
from incident_dashboard.actions.status import MAX_SNOOZE_MINUTES, ActionRefused, HumanStatus, State, allowed
from incident_dashboard.ui import common
from incident_dashboard.ui.common import SEVERITY_BADGE, STATUS_BADGE, fmt_time
from incident_dashboard.ui.safe_text import badge_label, md

NAME_KEY = "actor_name"  # the typed name, kept for the browser session (also while other pages show)
NAME_INPUT = "actor_name_input"  # its widget (Streamlit drops a widget's state on pages without it)
HUMAN_BADGE = {"open": "red", "acknowledged": "orange", "snoozed": "gray", "resolved": "green"}
LABELS = {ActionKind.ACKNOWLEDGE: "Acknowledge", ActionKind.ASSIGN: "Assign", ActionKind.NOTE: "Add a note",
          ActionKind.SNOOZE: "Snooze", ActionKind.RESOLVE: "Resolve", ActionKind.REOPEN: "Reopen"}


def actions() -> ActionLog:
    return action_log(common.repository().store)


def who() -> tuple[str | None, str]:
    """(name, source): the signed-in user ("login"), or the name typed in this session ("typed")."""
    user = common.signed_in_user()
    if user:
        return user, "login"
    name = (st.session_state.get(NAME_KEY) or "").strip()
    return name or None, "typed"


def render(incident: dict[str, Any]) -> None:
    incident_id = incident["incident_id"]
    log = actions()
    now = datetime.now(UTC)
    state = log.state(incident_id)
    with st.container(border=True):
        st.markdown("### Response")
        left, right = st.columns([1, 2], gap="medium")
        with left:
            _status(incident, state, now)
        with right:
            _form(incident, state, now)
        _trail(log, incident_id)
        _postmortem(incident, log, state, now)


def _status(incident: dict[str, Any], state: State, now: datetime) -> None:
    st.markdown("**Detector** (what the data shows)")
    with st.container(horizontal=True, gap="small"):
        st.badge(badge_label(incident["status"]), color=STATUS_BADGE.get(incident["status"], "gray"),
                 icon=":material/sensors:")
        st.badge(badge_label(incident["severity"]), color=SEVERITY_BADGE.get(incident["severity"], "gray"))
    st.markdown("**Responders** (what people did)")
    status = state.status(now)
    with st.container(horizontal=True, gap="small"):
        st.badge(badge_label(state.label(now)), color=HUMAN_BADGE.get(status.value, "gray"),
                 icon=":material/person:")
        st.badge(f"assignee {badge_label(state.assignee or 'nobody')}", color="blue")
    facts = []
    if state.acknowledged_by and status != HumanStatus.RESOLVED:
        facts.append(f"acknowledged by {md(state.acknowledged_by)} at {fmt_time(state.acknowledged_at)}")
    if state.resolved_by:
        facts.append(f"resolved by {md(state.resolved_by)} at {fmt_time(state.resolved_at)}")
    if state.ignored:
        facts.append(f"{len(state.ignored)} concurrent action(s) had no effect (see the trail)")
    if facts:
        st.caption(" · ".join(facts))


def _form(incident: dict[str, Any], state: State, now: datetime) -> None:
    name, source = who()
    if source == "typed":
        if NAME_INPUT not in st.session_state:
            st.session_state[NAME_INPUT] = st.session_state.get(NAME_KEY, "")
        st.text_input("Your name", key=NAME_INPUT, max_chars=100, on_change=_keep_name,
                      placeholder="Needed once per visit, for the audit trail",
                      help="No login in front of this dashboard: your name is asked once per browser visit.")
    else:
        st.caption(f"Acting as {md(name)} (signed in)")
    kinds = allowed(state, now)
    kind = st.selectbox("Action", kinds, format_func=lambda k: LABELS[ActionKind(k)], key="action_kind")
    if kind == ActionKind.ASSIGN:
        st.text_input("Assignee", key="action_text", max_chars=100, placeholder="A name; empty unassigns")
    elif kind == ActionKind.NOTE:
        st.text_area("Note", key="action_text", max_chars=2000, height=80)
    elif kind == ActionKind.SNOOZE:
        st.number_input("Minutes", min_value=1, max_value=MAX_SNOOZE_MINUTES, value=30, step=5, key="action_minutes")
    st.button("Record", key="action_submit", type="primary", icon=":material/how_to_reg:", on_click=_submit,
              args=(incident,))
    outcome = st.session_state.pop("action_outcome", None)
    if outcome:
        ok, message = outcome
        (st.success if ok else st.error)(message)


def _keep_name() -> None:
    st.session_state[NAME_KEY] = (st.session_state.get(NAME_INPUT) or "").strip()


def _submit(incident: dict[str, Any]) -> None:
    """Runs before the page's next run, so that run shows the new record."""
    kind = st.session_state.get("action_kind")
    name, source = who()
    if kind is None:
        st.session_state["action_outcome"] = (False, "Pick an action first.")
        return
    argument = {ActionKind.ASSIGN: st.session_state.get("action_text"),
                ActionKind.NOTE: st.session_state.get("action_text"),
                ActionKind.SNOOZE: str(st.session_state.get("action_minutes") or "")}.get(ActionKind(kind))
    try:
        row = actions().record(Record(
            incident["incident_id"], str(kind), name or "", argument, actor_source=source,
            detector_status=incident.get("status"), detector_severity=incident.get("severity"),
            detector_update_seq=incident.get("update_seq")))
    except ActionRefused as exc:
        st.session_state["action_outcome"] = (False, md(exc))
        return
    except Exception as exc:  # the table cannot be written: say so, keep the page
        st.session_state["action_outcome"] = (False, f"The action could not be recorded: {md(exc)}")
        return
    st.session_state["action_outcome"] = (True, f"Recorded: {md(LABELS[ActionKind(kind)].lower())} by "
                                                f"{md(row['actor'])}.")
    st.session_state.pop("action_text", None)


def _postmortem(incident: dict[str, Any], log: ActionLog, state: State, now: datetime) -> None:
    from incident_dashboard.analysis.export import postmortem_markdown
    from incident_rca.service import store_for

    incident_id = incident["incident_id"]
    try:
        stored = store_for(common.settings()).for_incident(incident_id)
    except OSError:
        stored = []
    draft = postmortem_markdown(incident, common.repository().incident_history(incident_id),
                                log.for_incident(incident_id), stored[0] if stored else None, state, now)
    st.download_button("Export post-mortem draft", draft, file_name=f"postmortem-{incident_id}.md",
                       mime="text/markdown", icon=":material/description:", key="postmortem_export",
                       help="Markdown: timeline of the lifecycle and the audit trail, root cause, action items")


def _trail(log: ActionLog, incident_id: str) -> None:
    trail = log.for_incident(incident_id)
    st.markdown("**Audit trail**")
    if trail.empty:
        st.caption("Nobody has acted on this incident yet.")
        return
    st.dataframe(pd.DataFrame({
        "time": trail["action_time"], "who": trail["actor"], "action": trail["action"],
        "argument": trail["argument"], "status before": trail["human_status"],
        "detector": trail["detector_status"].fillna("?") + " " + trail["detector_severity"].fillna(""),
    }), hide_index=True, width="stretch", column_config={
        "time": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss", timezone="UTC"),
        "argument": st.column_config.TextColumn(width="large")})
