"""An analysis as a Markdown document (for the incident channel, the ticket or the postmortem), and a
post-mortem draft of an incident (lifecycle, audit trail, root cause, action items).

Every field of the answer is untrusted text (a model wrote it after reading log lines): it goes through
:func:`~incident_dashboard.ui.safe_text.md`, so a link or an image in it stays text wherever the
document is rendered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from incident_dashboard.actions.status import State
from incident_dashboard.ui.safe_text import md
from incident_rca.models import Analysis


def to_markdown(analysis: Analysis) -> str:
    r = analysis.result
    rc = r.root_cause
    lines = [
        f"# Root-cause analysis of {md(analysis.incident_id)}",
        "",
        f"- Engine: {analysis.label}",
        f"- Prompt version: {analysis.prompt_version}",
        f"- Created: {analysis.created_at:%Y-%m-%d %H:%M:%S} UTC",
    ]
    if analysis.usage:
        lines.append(f"- Tokens: {analysis.usage.prompt_tokens} in, {analysis.usage.output_tokens} out, "
                     f"{analysis.usage.total_tokens} total")
    if r.insufficient_evidence:
        lines += ["", "> **The evidence is insufficient for a confident conclusion.**"]
    lines += ["", "## Summary", "", md(r.summary), "",
              "## Most likely root cause", "",
              f"**{md(rc.statement)}**", "",
              f"Category: {rc.category} · Confidence: {rc.confidence:.0%}", "", md(rc.confidence_rationale), "",
              "## Evidence", ""]
    lines += [f"- {'' if e.supports else '(against) '}{md(e.finding)}"
              + (f" \\[{md(', '.join(e.citations))}\\]" if e.citations else "") for e in r.evidence] or ["- none"]
    lines += ["", "## Timeline", "", "| Time (UTC) | Event | Data |", "|---|---|---|"]
    lines += [f"| {md(t.time)} | {md(t.event)} | {md(', '.join(t.citations))} |" for t in r.timeline]
    lines += ["", "## Action plan", "", "| # | Action | Priority | Owner |", "|---|---|---|---|"]
    lines += [f"| {s.order} | {md(s.action)} | {s.priority} | {md(s.owner)} |" for s in r.action_plan]
    lines += ["", "## How to confirm", ""] + [f"- {md(v)}" for v in r.verification]
    lines += ["", "## Prevention", ""] + [f"- {md(p)}" for p in r.prevention]
    if r.missing_information:
        lines += ["", "## Missing information", ""] + [f"- {md(m)}" for m in r.missing_information]
    if analysis.warnings:
        lines += ["", "## Warnings", ""] + [f"- {md(w)}" for w in analysis.warnings]
    if analysis.runbooks:
        lines += ["", "## Runbook candidates", ""] + [f"- {m.title} (`{m.runbook_id}`): score {m.score:.1f}"
                                                       for m in analysis.runbooks]
    lines += ["", "---", "Suggested commands are for a human operator to review and run; nothing was executed.", ""]
    return "\n".join(lines)


def _when(value: Any) -> str:
    if value is None or value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
        return "-"
    return f"{pd.Timestamp(value):%Y-%m-%d %H:%M:%S}"


def postmortem_markdown(incident: dict[str, Any], lifecycle: pd.DataFrame, trail: pd.DataFrame,
                        analysis: Analysis | None, state: State, now: datetime) -> str:
    """A post-mortem draft: summary, one timeline of the detector's lifecycle and the responders' actions,
    the root cause (when an analysis is stored) and action items to complete. Every value from the data,
    the trail or the analysis goes through :func:`md`."""
    inc = incident
    lines = [f"# Post-mortem draft: {md(inc['incident_id'])}: {md(inc.get('title') or inc.get('service'))}", "",
             "## Summary", "",
             f"- Service: {md(inc.get('service'))} ({md(inc.get('environment'))}), tier {md(inc.get('tier') or '?')}, "
             f"owner {md(inc.get('owner') or '?')}",
             f"- Severity: {md(inc.get('severity'))}; trigger: {md(inc.get('trigger') or '-')}",
             f"- Detector: {md(inc.get('status'))}; opened {_when(inc.get('opened_at'))} UTC, resolved "
             f"{_when(inc.get('resolved_at'))} UTC (event time)",
             f"- Responders: {md(state.label(now))}; assignee {md(state.assignee or 'nobody')}",
             ""]
    reasons = inc.get("severity_reasons") or []
    if reasons:
        lines += ["Why this severity:", ""] + [f"- {md(r)}" for r in reasons] + [""]
    events: list[tuple[Any, str, str, str]] = []
    for row in lifecycle.to_dict("records"):
        rate = row.get("error_rate")
        detail = f"severity {row.get('severity')}, status {row.get('status')}" + (
            f", error rate {100 * rate:.1f}%" if rate is not None and not pd.isna(rate) else "")
        events.append((row.get("update_time"), "detector", md(row.get("update_type")), md(detail)))
    for row in trail.to_dict("records"):
        argument = row.get("argument")
        text = md(row.get("action")) + (f": {md(argument)}" if argument else "")
        events.append((row.get("action_time"), md(row.get("actor")), text, f"was {md(row.get('human_status'))}"))
    events.sort(key=lambda e: pd.Timestamp(e[0]) if e[0] is not None else pd.Timestamp.min.tz_localize("UTC"))
    lines += ["## Timeline (processing time, UTC)", "", "| Time | Who | What | Detail |", "|---|---|---|---|"]
    lines += [f"| {_when(t)} | {who} | {what} | {detail} |" for t, who, what, detail in events] or ["| - | - | - | - |"]
    lines += ["", "## Root cause", ""]
    if analysis is None:
        lines += ["No root-cause analysis is stored for this incident yet: run one on the incident page, or write "
                  "the root cause here."]
    else:
        rc = analysis.result.root_cause
        lines += [f"**{md(rc.statement)}**", "", f"Category: {rc.category} · Confidence: {rc.confidence:.0%} · "
                  f"from {analysis.label}, {analysis.created_at:%Y-%m-%d %H:%M} UTC", "", md(analysis.result.summary)]
    lines += ["", "## Action items", "", "| # | Action | Owner | Status |", "|---|---|---|---|"]
    steps = analysis.result.action_plan if analysis is not None else []
    items = [(md(s.action), md(s.owner)) for s in steps]
    items += [(md(p), md(inc.get("owner") or "?")) for p in (analysis.result.prevention if analysis else [])]
    lines += [f"| {i} | {action} | {owner} | open |" for i, (action, owner) in enumerate(items, 1)]
    if not items:
        lines.append("| 1 | (to be written) | | open |")
    notes = [row for row in trail.to_dict("records") if row.get("action") == "note"]
    if notes:
        lines += ["", "## Responders' notes", ""]
        lines += [f"- {_when(n.get('action_time'))} {md(n.get('actor'))}: {md(n.get('argument'))}" for n in notes]
    lines += ["", "## What went well / what to improve", "", "- ", "",
              "---", f"Draft generated {now:%Y-%m-%d %H:%M} UTC from the incident's lifecycle, its audit trail and "
              "the stored analysis; review before sharing.", ""]
    return "\n".join(lines)
