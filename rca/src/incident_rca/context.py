"""Everything an analysis may use about one incident, gathered from the tables and the service catalog.

Each item gets a short ID (S1 for a signature, E1 for a sample event, M1 for a metric fact, L1 for a
lifecycle update, R1 for a related incident, P1 for a similar past incident) so that an answer can
cite what it relied on, and the page can show those items next to the answer. W items are warning or
error lines whose rate surged when the incident opened (the detector itself ranks error lines only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from incident_contracts.catalog import Catalog
from incident_rca.data.repository import Repository

MAX_SIGNATURES = 10
MAX_EVENTS = 20
MAX_RELATED = 8
MAX_SIMILAR = 5
WINDOW_BEFORE = timedelta(minutes=30)
WINDOW_AFTER = timedelta(minutes=15)


class IncidentNotFound(LookupError):
    """No incident with that ID in the incident_updates table."""


@dataclass
class SignatureItem:
    id: str
    signature: str
    signature_id: str
    count: int
    sample: str


@dataclass
class SurgeItem:
    id: str
    signature: str
    signature_id: str
    level: str
    before: int  # lines in the window before the incident opened
    during: int  # lines since it opened
    sample: str


@dataclass
class EventItem:
    id: str
    time: datetime | None
    service: str
    host: str
    level: str
    message: str
    signature_id: str
    http_status: int | None
    latency_ms: float | None


@dataclass
class Fact:
    id: str
    text: str


@dataclass
class LinkedIncident:
    id: str
    incident_id: str
    service: str
    severity: str
    status: str
    opened_at: datetime | None
    resolved_at: datetime | None
    relation: str
    title: str = ""
    root_cause: str = ""  # from a stored analysis of that incident, when there is one
    signatures: list[str] = field(default_factory=list)  # its top error signatures
    surging: list[str] = field(default_factory=list)  # its surging lines (filled for the origin only)


@dataclass
class IncidentContext:
    incident: dict[str, Any]
    lifecycle: list[Fact]
    signatures: list[SignatureItem]
    events: list[EventItem]
    metrics: list[Fact]
    topology: dict[str, Any]
    related: list[LinkedIncident]
    similar: list[LinkedIncident]
    window: pd.DataFrame = field(default_factory=pd.DataFrame)
    surging: list[SurgeItem] = field(default_factory=list)

    @property
    def incident_id(self) -> str:
        return str(self.incident["incident_id"])

    @property
    def evidence_ids(self) -> list[str]:
        return ([f.id for f in self.lifecycle] + [s.id for s in self.signatures] + [w.id for w in self.surging]
                + [e.id for e in self.events]
                + [m.id for m in self.metrics] + [r.id for r in self.related] + [p.id for p in self.similar])

    @property
    def origin(self) -> LinkedIncident | None:
        """The related incident the pipeline names as this one's origin, if it is among the related ones."""
        origin_id, origin_service = self.incident.get("origin_incident_id"), self.incident.get("origin_service")
        for item in self.related:
            if (origin_id and item.incident_id == origin_id) or (
                    not origin_id and origin_service and item.service == origin_service
                    and item.relation == "linked by the pipeline"):
                return item
        return None

    @property
    def end(self) -> datetime:
        return self.incident.get("resolved_at") or self.incident["last_seen"]


def format_time(value: Any) -> str:
    if value is None or value is pd.NaT:
        return "-"
    return pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_pct(value: Any) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{100 * float(value):.2f}%"


def as_float(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def build_context(repo: Repository, catalog: Catalog, incident_id: str,
                  root_causes: dict[str, str] | None = None) -> IncidentContext:
    """Collect the incident's facts; ``root_causes`` maps incident IDs to earlier analyses' conclusions."""
    incident = repo.incident(incident_id)
    if incident is None:
        raise IncidentNotFound(f"incident {incident_id!r} is not in the incident_updates table under "
                               f"{repo.location}; check the ID, or wait for the pipeline to write it")
    root_causes = root_causes or {}
    service = incident["service"]
    spec = catalog.get(service)
    end = incident.get("resolved_at") or incident["last_seen"]

    history = repo.incident_history(incident_id)
    lifecycle = [
        Fact(f"L{i + 1}", f"{format_time(row.update_time)} update {int(row.update_seq)} ({row.update_type}): "
                          f"severity {row.severity}, status {row.status}, error rate {format_pct(row.error_rate)}, "
                          f"p95 latency {as_float(row.latency_p95_ms) or 0:.0f} ms, events {row.event_count}")
        for i, row in enumerate(history.itertuples())]

    signatures = [SignatureItem(f"S{i + 1}", s.get("signature") or "", s.get("signature_id") or "",
                                int(s.get("count") or 0), s.get("sample") or "")
                  for i, s in enumerate((incident.get("top_signatures") or [])[:MAX_SIGNATURES]) if s]

    events = _sample_events(repo, incident, signatures, end)
    surge_frame = repo.surging_signatures(service, incident["opened_at"], end, WINDOW_BEFORE,
                                          exclude=[s.signature_id for s in signatures])
    surging = [SurgeItem(f"W{i + 1}", r.signature or "", r.signature_id or "", r.level or "", int(r.before),
                         int(r.during), r.sample or "") for i, r in enumerate(surge_frame.itertuples())]
    dependencies = catalog.dependencies_of(service) if spec else []
    dependents = catalog.dependents_of(service) if spec else []
    window = repo.incident_window([service, *dependencies, *dependents], incident["opened_at"] - WINDOW_BEFORE,
                                  end + WINDOW_AFTER)
    metrics = _metric_facts(incident, window, service, dependencies, dependents)

    topology = {
        "service": service,
        "kind": spec.kind if spec else "unknown",
        "tier": spec.tier if spec else incident.get("tier"),
        "owner": spec.owner if spec else incident.get("owner"),
        "hosts": list(spec.hosts) if spec else [],
        "depends_on": [{"service": d, "kind": catalog.get(d).kind, "owner": catalog.get(d).owner}
                       for d in dependencies],
        "called_by": [{"service": d, "kind": catalog.get(d).kind, "owner": catalog.get(d).owner}
                      for d in dependents],
        "in_catalog": spec is not None,
    }

    related_frame = repo.related_incidents(incident, [*dependencies, *dependents])
    related = []
    for i, row in enumerate(related_frame.head(MAX_RELATED).itertuples()):
        relation = ("linked by the pipeline" if row.explicitly_linked
                    else "dependency" if row.service in dependencies
                    else "caller" if row.service in dependents else "linked")
        related.append(LinkedIncident(f"R{i + 1}", row.incident_id, row.service, row.severity, row.status,
                                      _ts(row.opened_at), _ts(row.resolved_at), relation, row.title or "",
                                      root_causes.get(row.incident_id, ""),
                                      [str(s) for s in (row.signature_texts if row.signature_texts is not None
                                                        else [])][:MAX_SIGNATURES]))
    context_origin = IncidentContext(incident, [], [], [], [], topology, related, []).origin
    if context_origin is not None and context_origin.opened_at is not None:
        origin_end = context_origin.resolved_at or end
        frame = repo.surging_signatures(context_origin.service, context_origin.opened_at, origin_end, WINDOW_BEFORE)
        context_origin.surging = [str(x) for x in frame["signature"].tolist()]
    similar = []
    for i, row in enumerate(repo.similar_incidents(incident, MAX_SIMILAR).itertuples()):
        relation = (f"{int(row.shared_signatures)} shared signatures" if row.shared_signatures
                    else "same service")
        similar.append(LinkedIncident(f"P{i + 1}", row.incident_id, row.service, row.severity, row.status,
                                      _ts(row.opened_at), _ts(row.resolved_at), relation, row.title or "",
                                      root_causes.get(row.incident_id, "")))
    return IncidentContext(incident, lifecycle, signatures, events, metrics, topology, related, similar, window,
                           surging)


def _ts(value: Any) -> datetime | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
        return None
    return pd.Timestamp(value).to_pydatetime()


def _sample_events(repo: Repository, incident: dict[str, Any], signatures: list[SignatureItem],
                   end: datetime) -> list[EventItem]:
    frame = repo.sample_events(incident["service"], incident["first_seen"], end,
                               [s.signature_id for s in signatures], per_signature=2, limit=MAX_EVENTS)
    events = [EventItem(f"E{i + 1}", _ts(r.event_time), r.service, r.host, r.level, r.message, r.signature_id,
                        None if pd.isna(r.http_status) else int(r.http_status),
                        None if pd.isna(r.latency_ms) else float(r.latency_ms))
              for i, r in enumerate(frame.itertuples())]
    if not events:  # raw events not available (retention, or not written yet): the incident's own samples
        events = [EventItem(f"E{i + 1}", None, incident["service"], "", "", m, "", None, None)
                  for i, m in enumerate((incident.get("sample_messages") or [])[:MAX_EVENTS])]
    return events


def _metric_facts(incident: dict[str, Any], window: pd.DataFrame, service: str, dependencies: list[str],
                  dependents: list[str]) -> list[Fact]:
    facts: list[str] = []
    rate, base = as_float(incident.get("error_rate")), as_float(incident.get("baseline_error_rate"))
    if rate is not None:
        ratio = f" ({rate / base:.0f}x)" if base else ""
        facts.append(f"Error rate of {service} during the incident {format_pct(rate)} vs baseline "
                     f"{format_pct(base)}{ratio}.")
    p95, base95 = as_float(incident.get("latency_p95_ms")), as_float(incident.get("baseline_latency_p95_ms"))
    if p95 is not None:
        ratio = f" ({p95 / base95:.1f}x)" if base95 else ""
        facts.append(f"p95 latency of {service} {p95:.0f} ms vs baseline {base95 or 0:.0f} ms{ratio}.")
    if incident.get("event_count") is not None:
        facts.append(f"{incident.get('event_count')} events, {incident.get('error_count')} errors counted by the "
                     f"detector; anomaly score {as_float(incident.get('anomaly_score')) or 0:.1f}.")
    opened = pd.Timestamp(incident["opened_at"])
    if not window.empty:
        for name in [service, *dependencies, *dependents]:
            rows = window[window["service"] == name]
            if rows.empty:
                continue
            before = rows[rows["bucket"] < opened]
            during = rows[rows["bucket"] >= opened]
            if during.empty:
                continue
            peak = during.loc[during["error_rate"].idxmax()]
            base_rate = before["errors"].sum() / before["events"].sum() if before["events"].sum() else None
            role = "" if name == service else (" (dependency)" if name in dependencies else " (caller)")
            facts.append(
                f"{name}{role}: error rate {format_pct(base_rate)} in the 30 min before opening, "
                f"peak {format_pct(peak.error_rate)} "
                f"at {format_time(peak.bucket)}; p95 latency before {_median(before, 'latency_p95_ms')} ms, "
                f"peak {_peak(during, 'latency_p95_ms')} ms during.")
    return [Fact(f"M{i + 1}", text) for i, text in enumerate(facts)]


def _peak(frame: pd.DataFrame, column: str) -> str:
    values = frame[column].dropna()
    return f"{values.max():.0f}" if len(values) else "n/a"


def _median(frame: pd.DataFrame, column: str) -> str:
    values = frame[column].dropna() if not frame.empty else frame
    value = values.median() if len(values) else None
    return "n/a" if value is None or pd.isna(value) else f"{value:.0f}"
