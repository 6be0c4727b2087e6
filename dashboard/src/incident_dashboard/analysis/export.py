"""An analysis as a Markdown document (for the incident channel, the ticket or the postmortem).

Every field of the answer is untrusted text (a model wrote it after reading log lines): it goes through
:func:`~incident_dashboard.ui.safe_text.md`, so a link or an image in it stays text wherever the
document is rendered.
"""

from __future__ import annotations

from incident_dashboard.analysis.models import Analysis
from incident_dashboard.ui.safe_text import md


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
