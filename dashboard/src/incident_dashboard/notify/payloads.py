"""Message bodies: a generic JSON webhook, a Slack incoming webhook and Alertmanager's webhook shape."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from incident_dashboard.notify.rules import Event, Kind, Route
from incident_dashboard.notify.transitions import Transition

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert still firing
HEADLINES = {Event.OPENED: "opened", Event.SEVERITY_RAISED: "severity raised", Event.RESOLVED: "resolved",
             Event.ACK_TIMEOUT: "not acknowledged"}


def incident_url(base: str, incident_id: str) -> str:
    return f"{base.rstrip('/')}/incident?id={quote(incident_id)}"


def _iso(value: Any) -> str | None:
    if not isinstance(value, datetime):
        return None
    return value.isoformat().replace("+00:00", "Z")


def _incident(t: Transition, base: str) -> dict[str, Any]:
    inc = t.incident
    return {"id": t.incident_id, "title": inc.get("title"), "service": t.service,
            "environment": inc.get("environment"), "severity": inc.get("severity"), "highest_severity": t.severity,
            "status": inc.get("status"), "owner": inc.get("owner"), "tier": inc.get("tier"),
            "trigger": inc.get("trigger"), "opened_at": _iso(inc.get("opened_at")),
            "resolved_at": _iso(inc.get("resolved_at")), "url": incident_url(base, t.incident_id)}


def build(route: Route, transitions: Sequence[Transition], base: str, rca: dict[str, str],
          *, summary: bool = False) -> dict[str, Any]:
    """The body for ``route``: one transition, or (``summary``) several of one service sent as one message."""
    if route.kind == Kind.SLACK:
        return slack(transitions, base, rca, summary=summary)
    if route.kind == Kind.ALERTMANAGER:
        return alertmanager(route, transitions, base, rca)
    return webhook(route, transitions, base, rca, summary=summary)


def webhook(route: Route, transitions: Sequence[Transition], base: str, rca: dict[str, str],
            *, summary: bool = False) -> dict[str, Any]:
    items = [{"event": t.event.value, "transition": t.key, "time": _iso(t.time), "incident": _incident(t, base),
              "rca_summary": rca.get(t.incident_id)} for t in transitions]
    if summary:
        return {"event": "summary", "route": route.name, "service": transitions[0].service,
                "count": len(items), "transitions": items}
    return {**items[0], "route": route.name}


def _slack_escape(text: Any) -> str:
    return str(text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_line(t: Transition, base: str, rca: dict[str, str]) -> str:
    inc = t.incident
    line = (f"*{HEADLINES[t.event]}* {t.severity} <{incident_url(base, t.incident_id)}|{_slack_escape(t.incident_id)}>"
            f" · {_slack_escape(t.service)} · {_slack_escape(inc.get('title'))}")
    if rca.get(t.incident_id):
        line += f"\n> RCA: {_slack_escape(rca[t.incident_id])}"
    return line


def slack(transitions: Sequence[Transition], base: str, rca: dict[str, str], *,
          summary: bool = False) -> dict[str, Any]:
    lines = [_slack_line(t, base, rca) for t in transitions]
    if summary:
        header = f"{len(lines)} more transitions of {_slack_escape(transitions[0].service)} (coalesced)"
        lines = [f"*{header}*", *lines]
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}]}


def alertmanager(route: Route, transitions: Sequence[Transition], base: str, rca: dict[str, str]) -> dict[str, Any]:
    alerts = []
    for t in transitions:
        inc = t.incident
        labels = {"alertname": "Incident", "incident_id": t.incident_id, "service": t.service,
                  "severity": t.severity, "environment": str(inc.get("environment") or ""),
                  "owner": str(inc.get("owner") or ""), "tier": str(inc.get("tier") or "")}
        annotations = {"summary": str(inc.get("title") or t.service), "event": t.event.value,
                       "dashboard": incident_url(base, t.incident_id)}
        if rca.get(t.incident_id):
            annotations["description"] = rca[t.incident_id]
        alerts.append({
            "status": "firing" if t.firing else "resolved", "labels": labels, "annotations": annotations,
            "startsAt": _iso(inc.get("opened_at")) or _iso(t.time),
            "endsAt": ZERO_TIME if t.firing else (_iso(inc.get("resolved_at")) or _iso(t.time)),
            "generatorURL": incident_url(base, t.incident_id),
            "fingerprint": hashlib.sha256(t.incident_id.encode()).hexdigest()[:16]})
    service = transitions[0].service
    group_labels = {"service": service}
    common = {k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)}
    common_annotations = {k: v for k, v in alerts[0]["annotations"].items()
                          if all(a["annotations"].get(k) == v for a in alerts)}
    return {"version": "4", "groupKey": f'{{}}:{{service="{service}"}}', "truncatedAlerts": 0,
            "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
            "receiver": route.name, "groupLabels": group_labels, "commonLabels": common,
            "commonAnnotations": common_annotations, "externalURL": base.rstrip("/"), "alerts": alerts}
