"""Tables built from the real log generator's scenarios, the way the Spark job would write them.

Events: the generator's LogEvent records with the Spark job's signature function and error rule,
committed to the Delta Lake events table (hourly partitions) through the table store. Incidents: for
each scenario, an incident at the ground-truth origin and at up to two callers whose error rate or
latency departed from baseline, the callers linked to the origin; top signatures from error lines (the
slowest lines for a latency-only incident), as the detector ranks them.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from incident_contracts import tables as contract
from incident_contracts.catalog import Catalog
from incident_contracts.table_store import TableStore
from incident_stream.signature import mask_message, signature_id
from log_generator.api import generate
from log_generator.ground_truth import IncidentTruth

BEFORE = timedelta(minutes=30)


@dataclass
class PlannedIncident:
    incident_id: str
    scenario: str
    category: str
    service: str
    is_origin: bool


def _is_error(event: dict) -> bool:
    return event["level"] in ("ERROR", "FATAL") or (event.get("http_status") or 0) >= 500


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def write_events(events: list[dict], store: TableStore, catalog: Catalog) -> None:
    specs = {s.name: s for s in catalog.services}
    signatures = [mask_message(e["message"]) for e in events]
    when = [_ts(e["timestamp"]) for e in events]
    columns = {
        "event_id": [e["event_id"] for e in events], "event_time": when,
        "ingest_time": [w + timedelta(seconds=1) for w in when],
        "signature": signatures, "signature_id": [signature_id(s) for s in signatures],
        "is_error": [_is_error(e) for e in events],
        "tier": [str(specs[e["service"]].tier) if e["service"] in specs else None for e in events],
        "owner": [specs[e["service"]].owner if e["service"] in specs else None for e in events],
        "attributes": [list((e.get("attributes") or {}).items()) for e in events],
        "topic": ["logs.events"] * len(events), "kafka_partition": [0] * len(events),
        "kafka_offset": list(range(len(events))),
        "event_date": [f"{w:%Y-%m-%d}" for w in when], "event_hour": [w.hour for w in when],
    }
    for name in ("service", "environment", "host", "level", "logger", "message", "trace_id", "span_id",
                 "http_method", "http_path", "http_status", "latency_ms", "error_type"):
        columns[name] = [e.get(name) for e in events]
    store.append("events", pa.Table.from_pydict({f.name: columns[f.name] for f in contract.EVENTS},
                                                schema=contract.EVENTS))


def _stats(events: list[dict], truth: IncidentTruth, service: str) -> dict | None:
    start, end = truth.start_ms, truth.end_ms
    first = start - BEFORE.total_seconds() * 1000
    before = [e for e in events if e["service"] == service and first <= e["timestamp"] < start]
    during = [e for e in events if e["service"] == service and start <= e["timestamp"] < end]
    if not during or not before:
        return None
    rate = sum(map(_is_error, during)) / len(during)
    base = max(sum(map(_is_error, before)) / len(before), 1e-4)
    lat = [e["latency_ms"] for e in during if e.get("latency_ms") is not None]
    lat_before = [e["latency_ms"] for e in before if e.get("latency_ms") is not None]
    p95 = float(np.percentile(lat, 95)) if lat else None
    p95_before = float(np.percentile(lat_before, 95)) if lat_before else None
    errors = [e for e in during if _is_error(e)]
    elevated_errors = rate >= max(3 * base, 0.02)
    slow = bool(p95 and p95_before and p95 >= 3 * p95_before)
    ranked = errors if errors else sorted(during, key=lambda e: -(e.get("latency_ms") or 0))[:50]
    counts = collections.Counter(mask_message(e["message"]) for e in ranked)
    samples: dict[str, str] = {}
    for e in ranked:
        samples.setdefault(mask_message(e["message"]), e["message"])
    return {"during": during, "rate": rate, "base": base, "p95": p95, "p95_before": p95_before,
            "elevated": elevated_errors or slow, "trigger": "error_rate" if elevated_errors else "latency",
            "top": [{"signature": s, "signature_id": signature_id(s), "count": c, "sample": samples[s]}
                    for s, c in counts.most_common(5)],
            "hosts": [h for h, _ in collections.Counter(e["host"] for e in ranked).most_common(4)]}


def incident_rows(events: list[dict], truth: IncidentTruth, catalog: Catalog, prefix: str
                  ) -> tuple[list[dict], list[PlannedIncident]]:
    chosen: list[tuple[str, dict]] = []
    origin_stats = _stats(events, truth, truth.origin_service)
    if origin_stats is not None:
        chosen.append((truth.origin_service, origin_stats))
    for service in truth.affected_services:
        if service == truth.origin_service or len(chosen) >= 3:
            continue
        stats = _stats(events, truth, service)
        if stats is not None and stats["elevated"] and stats["top"]:
            chosen.append((service, stats))
    origin_id = f"{prefix}-{truth.origin_service}"
    rows, planned = [], []
    opened, last = _ts(truth.start_ms), _ts(truth.end_ms)
    for service, stats in chosen:
        is_origin = service == truth.origin_service
        incident_id = f"{prefix}-{service}"
        spec = catalog.get(service)
        callers = [f"{prefix}-{s}" for s, _ in chosen if s != truth.origin_service]
        for seq, (update_type, status, seen) in enumerate(
                [("opened", "open", opened + timedelta(minutes=2)), ("resolved", "resolved", last)], start=1):
            rows.append({
                "incident_id": incident_id, "update_seq": seq, "update_type": update_type, "status": status,
                "update_time": seen + timedelta(seconds=5), "service": service, "environment": "prod",
                "tier": str(spec.tier), "owner": spec.owner, "severity": "P2" if spec.tier == 1 else "P3",
                "severity_reasons": [f"{stats['trigger']} departed from baseline"], "trigger": stats["trigger"],
                "title": f"{service}: {stats['trigger']} - {stats['top'][0]['signature'][:100]}",
                "opened_at": opened, "first_seen": opened, "last_seen": seen,
                "resolved_at": last if status == "resolved" else None, "event_count": len(stats["during"]),
                "error_count": int(stats["rate"] * len(stats["during"])), "error_rate": stats["rate"],
                "baseline_error_rate": stats["base"], "latency_p95_ms": stats["p95"],
                "baseline_latency_p95_ms": stats["p95_before"], "anomaly_score": 5.0, "top_signatures": stats["top"],
                "sample_messages": [t["sample"] for t in stats["top"][:3]], "affected_hosts": stats["hosts"],
                "origin_service": None if is_origin else truth.origin_service,
                "origin_incident_id": None if is_origin else origin_id,
                "linked_incident_ids": callers if is_origin else [origin_id],
            })
        planned.append(PlannedIncident(incident_id, truth.scenario, truth.root_cause_category, service, is_origin))
    return rows, planned


def build_generated_tables(data_dir: Path, catalog: Catalog, scenarios: list[str], *, rate: float = 20.0,
                           duration_s: float = 900.0, seed: int = 11) -> list[PlannedIncident]:
    """One generator run per scenario, an hour apart, committed to the events and incident_updates tables."""
    store = TableStore(str(data_dir.resolve()))
    base = 1_800_000_000_000
    all_rows: list[dict] = []
    planned: list[PlannedIncident] = []
    for i, name in enumerate(scenarios):
        events, truth = generate(name, rate=rate, duration_s=duration_s, seed=seed, start_ms=base + i * 3_600_000)
        events = list(events)
        write_events(events, store, catalog)
        incident = next(t for t in truth.incidents if t.expect_incident)
        rows, found = incident_rows(events, incident, catalog, prefix=f"GEN-{i}")
        all_rows += rows
        planned += found
    store.append("incident_updates", pa.Table.from_pylist(all_rows, schema=contract.INCIDENT_UPDATES))
    return planned
