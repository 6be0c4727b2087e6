"""Writes realistic demo tables (events, incident_updates, dead_letter, metrics) with the contract's schemas.

Used by the tests, the benchmark and ``python -m incident_dashboard.demo`` (a populated dashboard
without running Kafka and Spark). The tables are Delta Lake tables written through
``incident_contracts.table_store`` as the Spark job writes them: many small files
(``write_files``) committed a batch at a time (``commit_files``), events in ``event_date=/event_hour=``
partitions, dead letters in ``dl_date=`` partitions.

Scale: events are generated hour by hour with numpy and Arrow ``take`` over pre-rendered message
pools, so 10 million events take well under a minute and bounded memory.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from incident_contracts import tables as contract
from incident_contracts.catalog import Catalog, ServiceSpec, default_catalog
from incident_contracts.dead_letter import DeadLetterReason
from incident_contracts.signature import mask_message, signature_id
from incident_contracts.table_store import DataFile, TableStore
from incident_dashboard.demo.scenarios import (
    BASELINE_ERRORS,
    FLAPPING_MESSAGES,
    NORMAL_MESSAGES,
    SCENARIOS,
    Scenario,
    render,
)

TOPIC = "logs.events"
POOL_SIZE = 40  # rendered variants per template
FILES_PER_COMMIT = 50  # incident update files committed together (a few micro-batches' worth)


@dataclass
class DemoConfig:
    events: int = 200_000
    incidents: int = 21  # incidents at their origin service (linked caller incidents come on top)
    updates_per_incident: int = 4  # lifecycle rows per incident, on average
    hours: float = 6.0
    end: datetime | None = None  # defaults to now
    files_per_hour: int = 6
    updates_per_file: int = 40
    dead_letters: int = 240
    batch_seconds: float = 2.0
    injected_share: float = 0.08  # share of events that belong to incidents
    seed: int = 7
    linked_share: float = 0.5  # share of incidents that also open a linked incident in a caller


@dataclass
class IncidentPlan:
    incident_id: str
    scenario: Scenario
    service: str
    opened_at: datetime
    resolved_at: datetime | None
    severity: str
    origin_incident_id: str | None = None
    linked: list[str] = field(default_factory=list)
    events: int = 0


@dataclass
class DemoSummary:
    data_dir: Path | str
    start: datetime
    end: datetime
    events: int
    event_files: int
    incidents: list[IncidentPlan]
    update_rows: int
    update_files: int
    dead_letters: int
    metrics_rows: int

    def incident_for(self, family: str) -> IncidentPlan:
        """The first origin incident of a failure family (incident_contracts.failures)."""
        return next(i for i in self.incidents if i.scenario.family == family and i.origin_incident_id is None)


class _Pools:
    """Pre-rendered messages per service and kind, with their signatures."""

    def __init__(self, catalog: Catalog, rng: random.Random) -> None:
        self.messages: list[str] = []
        self.index: dict[tuple[str, str], np.ndarray] = {}
        for spec in catalog.services:
            normal = NORMAL_MESSAGES.get(spec.kind, NORMAL_MESSAGES["http"])
            self._add((spec.name, "normal"), [render(t, rng, path=rng.choice(spec.endpoints),
                                                     method=rng.choice(("GET", "POST")), status=200)
                                              for t in normal for _ in range(POOL_SIZE)])
            self._add((spec.name, "error"), [render(t, rng, path=rng.choice(spec.endpoints))
                                             for t in BASELINE_ERRORS for _ in range(POOL_SIZE // 4)])
            if spec.flapping:
                self._add((spec.name, "flap"), [render(t, rng) for t in FLAPPING_MESSAGES for _ in range(10)])
        for scenario in SCENARIOS.values():
            self._add((scenario.family, "origin"), [render(t, rng) for t in scenario.origin_messages
                                                 for _ in range(POOL_SIZE // 4)])
            callers = scenario.caller_messages or scenario.origin_messages
            self._add((scenario.family, "caller"), [render(t, rng) for t in callers for _ in range(POOL_SIZE // 4)])
        self.signatures = [mask_message(m) for m in self.messages]
        self.signature_ids = [signature_id(s) for s in self.signatures]
        self.message_array = pa.array(self.messages, pa.string())
        self.signature_array = pa.array(self.signatures, pa.string())
        self.signature_id_array = pa.array(self.signature_ids, pa.string())
        self.trace_array = pa.array([f"{rng.getrandbits(128):032x}" for _ in range(20_000)], pa.string())

    def _add(self, key: tuple[str, str], messages: list[str]) -> None:
        start = len(self.messages)
        self.messages.extend(messages)
        self.index[key] = np.arange(start, len(self.messages))


def build_demo_data(data_dir: str | Path | TableStore, config: DemoConfig | None = None,
                    catalog: Catalog | None = None) -> DemoSummary:
    """Write all four tables under ``data_dir``, a folder or a table store (existing tables are appended to)."""
    config = config or DemoConfig()
    catalog = catalog or default_catalog()
    store = data_dir if isinstance(data_dir, TableStore) else TableStore(str(Path(data_dir).resolve()))
    data_dir = Path(store.root) if store.is_local else store.root
    rng = random.Random(config.seed)
    nprng = np.random.default_rng(config.seed)
    end = (config.end or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    start = end - timedelta(hours=config.hours)
    pools = _Pools(catalog, rng)
    plans = _plan_incidents(config, catalog, rng, start, end)
    injected_total = int(config.events * config.injected_share) if plans else 0
    _share_events(plans, injected_total)
    events, files = _write_events(store, config, catalog, pools, plans, nprng, start, end)
    rows, update_files = _write_updates(store, config, catalog, pools, plans, rng, end)
    dead = _write_dead_letters(store, config, rng, start, end)
    metrics = _write_metrics(store, config, nprng, start, end, events)
    return DemoSummary(data_dir, start, end, events, files, plans, rows, update_files, dead, metrics)


# --- incidents plan --------------------------------------------------------------------------

def _plan_incidents(config: DemoConfig, catalog: Catalog, rng: random.Random, start: datetime,
                    end: datetime) -> list[IncidentPlan]:
    keys = list(SCENARIOS)
    span = (end - start).total_seconds()
    plans: list[IncidentPlan] = []
    known = set(catalog.names)
    for i in range(config.incidents):
        scenario = SCENARIOS[keys[i % len(keys)]]
        if scenario.origin not in known:
            continue
        opened = start + timedelta(seconds=span * (i + 0.3 + 0.4 * rng.random()) / config.incidents)
        duration = timedelta(minutes=rng.uniform(8, 50))
        # the newest incidents are still open
        resolved = opened + duration if opened + duration < end - timedelta(minutes=2) else None
        tier = catalog.get(scenario.origin).tier
        severity = "P1" if tier == 1 and scenario.error_share >= 0.5 else ("P2" if tier <= 2 else "P3")
        if rng.random() < 0.15:
            severity = "P3" if severity != "P3" else "P4"
        plan = IncidentPlan(f"INC-{opened:%Y%m%d}-{i + 1:05d}", scenario, scenario.origin, opened, resolved,
                            severity)
        plans.append(plan)
        callers = [c for c in scenario.callers if c in known]
        if callers and rng.random() < config.linked_share:
            caller = callers[0]
            lag = timedelta(minutes=rng.uniform(1, 4))
            child = IncidentPlan(f"{plan.incident_id}-L", scenario, caller, opened + lag,
                                 resolved + lag if resolved and resolved + lag < end else None,
                                 "P2" if severity in ("P1", "P2") else "P3", origin_incident_id=plan.incident_id)
            plan.linked.append(child.incident_id)
            child.linked.append(plan.incident_id)
            plans.append(child)
    return plans


def _share_events(plans: list[IncidentPlan], total: int) -> None:
    weights = [(0.75 if p.origin_incident_id is None else 0.25) for p in plans]
    scale = total / sum(weights) if weights else 0
    for plan, weight in zip(plans, weights, strict=True):
        plan.events = int(weight * scale)


# --- events ----------------------------------------------------------------------------------

def _lognormal_latency(nprng: np.random.Generator, spec: ServiceSpec, n: int) -> np.ndarray:
    sigma = math.log(spec.latency.p95_ms / spec.latency.p50_ms) / 1.645
    return nprng.lognormal(math.log(spec.latency.p50_ms), max(sigma, 0.05), n)


def _write_events(store: TableStore, config: DemoConfig, catalog: Catalog, pools: _Pools, plans: list[IncidentPlan],
                  nprng: np.random.Generator, start: datetime, end: datetime) -> tuple[int, int]:
    services = catalog.services
    weights = np.array([s.weight for s in services], dtype=float)
    weights /= weights.sum()
    base_total = config.events - sum(p.events for p in plans)
    span_ms = (end - start).total_seconds() * 1000
    start_ms = int(start.timestamp() * 1000)
    offsets = [0, 0]
    written = files = 0
    hour = start.replace(minute=0, second=0)
    while hour < end:
        lo, hi = max(hour, start), min(hour + timedelta(hours=1), end)
        lo_ms, hi_ms = int(lo.timestamp() * 1000), int(hi.timestamp() * 1000)
        share = (hi_ms - lo_ms) / span_ms
        parts = [_base_events(services, weights, pools, nprng, round(base_total * share), lo_ms, hi_ms)]
        for plan in plans:
            if plan.opened_at < hi and (plan.resolved_at or end) > lo:
                parts.append(_incident_events(plan, catalog, pools, nprng, start_ms, lo_ms, hi_ms, end))
        parts = [p for p in parts if len(p["time"])]
        n = sum(len(p["time"]) for p in parts)
        if n:
            columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            order = np.argsort(columns["time"], kind="stable")
            columns = {k: v[order] for k, v in columns.items()}
            table = _events_table(columns, catalog, pools, nprng, offsets, written)
            files += _write_hour(store, table, config.files_per_hour)
            written += n
        hour += timedelta(hours=1)
    return written, files


def _base_events(services: list[ServiceSpec], weights: np.ndarray, pools: _Pools, nprng: np.random.Generator,
                 n: int, lo_ms: int, hi_ms: int) -> dict[str, np.ndarray]:
    svc = nprng.choice(len(services), size=n, p=weights)
    times = nprng.integers(lo_ms, hi_ms, size=n)
    is_error = np.zeros(n, dtype=bool)
    message = np.zeros(n, dtype=np.int64)
    latency = np.zeros(n)
    status = np.full(n, 200, dtype=np.int32)
    for i, spec in enumerate(services):
        mask_i = svc == i
        count = int(mask_i.sum())
        err = nprng.random(count) < spec.baseline_error_rate * (6 if spec.flapping else 1)
        is_error[mask_i] = err
        normal, errors = pools.index[(spec.name, "normal")], pools.index[(spec.name, "error")]
        if spec.flapping:
            errors = pools.index[(spec.name, "flap")]
        message[mask_i] = np.where(err, nprng.choice(errors, count), nprng.choice(normal, count))
        latency[mask_i] = _lognormal_latency(nprng, spec, count)
        status[mask_i] = np.where(err, nprng.choice([400, 499, 502], count), 200)
    return {"time": times, "service": svc, "is_error": is_error, "message": message, "latency": latency,
            "status": status}


def _incident_events(plan: IncidentPlan, catalog: Catalog, pools: _Pools, nprng: np.random.Generator,
                     start_ms: int, lo_ms: int, hi_ms: int, end: datetime) -> dict[str, np.ndarray]:
    p_start = int(plan.opened_at.timestamp() * 1000)
    p_end = int((plan.resolved_at or end).timestamp() * 1000)
    overlap = max(0, min(p_end, hi_ms) - max(p_start, lo_ms))
    n = int(plan.events * overlap / max(1, p_end - p_start))
    names = [s.name for s in catalog.services]
    spec = catalog.get(plan.service)
    scenario = plan.scenario
    kind = "origin" if plan.origin_incident_id is None else "caller"
    times = nprng.integers(max(p_start, lo_ms), max(p_start, lo_ms) + max(overlap, 1), size=n)
    is_error = nprng.random(n) < max(scenario.error_share, 0.2)
    pool = pools.index[(scenario.family, kind)]
    weights = 0.55 ** (np.arange(len(pool)) // (POOL_SIZE // 4))  # a scenario's first template is its loudest
    message = np.where(is_error, nprng.choice(pool, n, p=weights / weights.sum()),
                       nprng.choice(pools.index[(plan.service, "normal")], n))
    latency = _lognormal_latency(nprng, spec, n) * scenario.latency_factor
    status = np.where(is_error, scenario.http_status, 200).astype(np.int32)
    return {"time": times, "service": np.full(n, names.index(plan.service)), "is_error": is_error,
            "message": message, "latency": latency, "status": status}


def _events_table(c: dict[str, np.ndarray], catalog: Catalog, pools: _Pools, nprng: np.random.Generator,
                  offsets: list[int], first_id: int) -> pa.Table:
    n = len(c["time"])
    services = catalog.services
    svc = c["service"].astype(np.int64)
    names = pa.array([s.name for s in services])
    host_pool = [h for s in services for h in s.hosts]
    host_start = np.cumsum([0] + [len(s.hosts) for s in services])[:-1]
    host_count = np.array([len(s.hosts) for s in services])
    host = host_start[svc] + (nprng.integers(0, 1 << 30, n) % host_count[svc])
    kinds = np.array([s.kind for s in services])
    is_http = kinds[svc] == "http"
    endpoints = [e for s in services for e in s.endpoints]
    ep_start = np.cumsum([0] + [len(s.endpoints) for s in services])[:-1]
    ep_count = np.array([len(s.endpoints) for s in services])
    endpoint = ep_start[svc] + (nprng.integers(0, 1 << 30, n) % ep_count[svc])
    times = pa.array(c["time"], pa.timestamp("ms", tz="UTC")).cast(contract.TS)
    ingest = pa.array(c["time"] + nprng.integers(150, 2500, n), pa.timestamp("ms", tz="UTC")).cast(contract.TS)
    partition = nprng.integers(0, 2, n).astype(np.int32)
    kafka_offset = np.zeros(n, dtype=np.int64)
    for p in (0, 1):
        sel = partition == p
        count = int(sel.sum())
        kafka_offset[sel] = offsets[p] + np.arange(count)
        offsets[p] += count
    level = np.where(c["is_error"], "ERROR", np.where(nprng.random(n) < 0.05, "WARN", "INFO"))
    error_types = pa.array([None, "HttpError", "TimeoutException", "IOException"])
    error_type_idx = np.where(c["is_error"], 1 + (c["message"] % 3), 0)
    has_trace = nprng.random(n) < 0.6
    trace = nprng.integers(0, len(pools.trace_array), n)
    method = nprng.integers(0, 2, n)
    ids = pa.array(np.arange(first_id, first_id + n, dtype=np.int64)).cast(pa.string())
    dates = np.datetime_as_string(c["time"].astype("datetime64[ms]"), unit="D")
    hours = ((c["time"] // 3_600_000) % 24).astype(np.int32)
    msg = pa.array(c["message"])
    arrays = {
        "event_id": pc.binary_join_element_wise("evt-", ids, ""),
        "event_time": times,
        "ingest_time": ingest,
        "service": names.take(pa.array(svc)),
        "environment": pa.array(np.full(n, catalog.environment)),
        "host": pa.array(host_pool).take(pa.array(host)),
        "level": pa.array(level),
        "is_error": pa.array(c["is_error"]),
        "logger": pa.array(np.full(n, "app")),
        "message": pools.message_array.take(msg),
        "trace_id": pools.trace_array.take(pa.array(trace, mask=~has_trace)),
        "span_id": pa.nulls(n, pa.string()),
        "http_method": pa.array(["GET", "POST"]).take(pa.array(method, mask=~is_http)),
        "http_path": pa.array(endpoints).take(pa.array(endpoint, mask=~is_http)),
        "http_status": pa.array(c["status"], mask=~is_http),
        "latency_ms": pa.array(np.round(c["latency"], 2)),
        "error_type": error_types.take(pa.array(error_type_idx)),
        "signature": pools.signature_array.take(msg),
        "signature_id": pools.signature_id_array.take(msg),
        "tier": pa.array([str(s.tier) for s in services]).take(pa.array(svc)),
        "owner": pa.array([s.owner for s in services]).take(pa.array(svc)),
        "attributes": pa.nulls(n, pa.map_(pa.string(), pa.string())),
        "topic": pa.array(np.full(n, TOPIC)),
        "kafka_partition": pa.array(partition),
        "kafka_offset": pa.array(kafka_offset),
        "event_date": pa.array(dates),
        "event_hour": pa.array(hours),
    }
    return pa.Table.from_arrays([arrays[f.name].cast(f.type) for f in contract.EVENTS],
                                schema=contract.EVENTS)


def _write_hour(store: TableStore, table: pa.Table, files: int) -> int:
    """An hour of events as ``files`` files (micro-batches' output), committed as one version."""
    per_file = max(1, math.ceil(table.num_rows / files))
    written: list[DataFile] = []
    for i in range(0, table.num_rows, per_file):
        written += store.write_files("events", table.slice(i, per_file))
    store.commit_files("events", written)
    return len(written)


# --- incident updates ------------------------------------------------------------------------

def _write_updates(store: TableStore, config: DemoConfig, catalog: Catalog, pools: _Pools, plans: list[IncidentPlan],
                   rng: random.Random, end: datetime) -> tuple[int, int]:
    rows: list[dict] = []
    for plan in plans:
        rows.extend(_lifecycle(plan, config, catalog, pools, rng, end))
    rows.sort(key=lambda r: r["update_time"])
    files = 0
    batch: list[DataFile] = []
    for i in range(0, len(rows), config.updates_per_file):
        chunk = rows[i:i + config.updates_per_file]
        batch += store.write_files("incident_updates", pa.Table.from_pylist(chunk, schema=contract.INCIDENT_UPDATES))
        if len(batch) >= FILES_PER_COMMIT:
            files += len(batch)
            store.commit_files("incident_updates", batch)
            batch = []
    store.commit_files("incident_updates", batch)
    store.create("incident_updates")  # an empty table when there is no incident
    return len(rows), files + len(batch)


def _lifecycle(plan: IncidentPlan, config: DemoConfig, catalog: Catalog, pools: _Pools, rng: random.Random,
               end: datetime) -> list[dict]:
    spec = catalog.get(plan.service)
    scenario = plan.scenario
    kind = "origin" if plan.origin_incident_id is None else "caller"
    idx = pools.index[(scenario.family, kind)]
    signatures: dict[str, dict] = {}
    for i in idx:
        entry = signatures.setdefault(pools.signature_ids[i], {
            "signature": pools.signatures[i], "signature_id": pools.signature_ids[i], "count": 0,
            "sample": pools.messages[i]})
        entry["count"] += 1
    top = list(signatures.values())[:5]
    for rank, entry in enumerate(top):  # the first template of a scenario is its loudest
        entry["count"] = max(1, int(entry["count"] * (0.55 ** rank) * 10))
    samples = [pools.messages[i] for i in idx[:: max(1, len(idx) // 4)]][:4]
    until = plan.resolved_at or end
    n_updates = max(1, min(12, int(rng.expovariate(1 / config.updates_per_incident)) + 1))
    if plan.resolved_at is not None:
        n_updates = max(2, n_updates)
    total_events = max(plan.events, 50)
    baseline_rate = spec.baseline_error_rate
    baseline_p95 = spec.latency.p95_ms
    rows = []
    for seq in range(1, n_updates + 1):
        last = seq == n_updates
        resolved = last and plan.resolved_at is not None
        progress = seq / n_updates
        seen = plan.opened_at + (until - plan.opened_at) * progress
        severity = plan.severity
        if seq == 1 and severity in ("P1", "P2") and n_updates > 2:
            severity = "P3" if severity == "P2" else "P2"  # escalated on a later update
        scale = int(total_events * progress / scenario.error_share) if scenario.error_share else total_events
        errors = int(scale * scenario.error_share)
        counted = [dict(s, count=max(1, int(s["count"] * errors / max(1, sum(t["count"] for t in top)))))
                   for s in top]
        reasons = list(scenario.reasons)
        if plan.origin_incident_id:
            reasons.append(f"caller of {scenario.origin}, which has incident {plan.origin_incident_id}")
        rows.append({
            "incident_id": plan.incident_id, "update_seq": seq,
            "update_type": "opened" if seq == 1 else ("resolved" if resolved else "updated"),
            "status": "resolved" if resolved else "open",
            "update_time": seen + timedelta(seconds=rng.uniform(2, 8)),
            "service": plan.service, "environment": catalog.environment, "tier": str(spec.tier),
            "owner": spec.owner, "severity": severity, "severity_reasons": reasons,
            "trigger": scenario.trigger,
            "title": scenario.title.replace("{small}", str(rng.randint(10, 20)))
            if plan.origin_incident_id is None else f"{plan.service}: errors calling {scenario.origin}",
            "opened_at": plan.opened_at, "first_seen": plan.opened_at - timedelta(seconds=rng.randint(20, 90)),
            "last_seen": seen, "resolved_at": plan.resolved_at if resolved else None,
            "event_count": scale, "error_count": errors,
            "error_rate": errors / scale if scale else 0.0, "baseline_error_rate": baseline_rate,
            "latency_p95_ms": round(baseline_p95 * scenario.latency_factor * (0.6 + 0.4 * rng.random()), 1),
            "baseline_latency_p95_ms": float(baseline_p95),
            "anomaly_score": round(min(60.0, (errors / max(scale, 1)) / max(baseline_rate, 1e-4)) / 6, 2),
            "top_signatures": counted, "sample_messages": samples,
            "affected_hosts": spec.hosts[: max(1, len(spec.hosts) - (0 if progress > 0.5 else 1))],
            "origin_service": scenario.origin if plan.origin_incident_id else None,
            "origin_incident_id": plan.origin_incident_id, "linked_incident_ids": list(plan.linked),
        })
    return rows


# --- dead letters and metrics ----------------------------------------------------------------

_DL_REASONS = (
    (DeadLetterReason.MALFORMED_BODY, "Avro body could not be decoded: unexpected end of data at byte {n}"),
    (DeadLetterReason.BAD_MAGIC, "first byte 0x7b is neither 0x00 (Confluent framing) nor 0xC3 0x01 (single-object)"),
    (DeadLetterReason.UNKNOWN_FINGERPRINT, "no schema with CRC-64-AVRO fingerprint 0x{hex} in schemas/avro"),
    (DeadLetterReason.TRUNCATED, "record of {n} bytes is shorter than its framing header"),
    (DeadLetterReason.INVALID_FIELD,
     "field level has value 'VERBOSE', expected one of DEBUG, INFO, WARN, ERROR, FATAL"),
    (DeadLetterReason.TIMESTAMP_OUT_OF_RANGE,
     "event timestamp 1970-01-01T00:00:00Z is more than 7 days from ingest time"),
)


def _write_dead_letters(store: TableStore, config: DemoConfig, rng: random.Random, start: datetime,
                        end: datetime) -> int:
    if config.dead_letters <= 0:
        return 0
    span = (end - start).total_seconds()
    rows = []
    for i in range(config.dead_letters):
        reason, template = _DL_REASONS[min(len(_DL_REASONS) - 1, int(rng.paretovariate(1.2)) - 1)]
        at = start + timedelta(seconds=rng.uniform(0, span))
        raw = (b'{"level": "INFO", "msg": "plain json"}' if reason is DeadLetterReason.BAD_MAGIC
               else bytes([0xC3, 0x01]) + rng.randbytes(rng.randint(4, 60)))
        rows.append({"topic": TOPIC, "kafka_partition": i % 2, "kafka_offset": 1000 + i * 37,
                     "kafka_timestamp": at, "key": None, "raw_value": raw, "value_size": len(raw),
                     "reason": reason.value,
                     "detail": template.format(n=rng.randint(5, 400), hex=f"{rng.getrandbits(64):016x}"),
                     "detected_at": at + timedelta(seconds=rng.uniform(0.5, 3)), "dl_date": f"{at:%Y-%m-%d}"})
    table = pa.Table.from_pylist(rows, schema=contract.DEAD_LETTER)
    written: list[DataFile] = []
    for date in sorted({r["dl_date"] for r in rows}):
        part = table.filter(pc.equal(table["dl_date"], date))
        for j in range(0, part.num_rows, 50):
            written += store.write_files("dead_letter", part.slice(j, 50))
    store.commit_files("dead_letter", written)
    return len(rows)


def _write_metrics(store: TableStore, config: DemoConfig, nprng: np.random.Generator, start: datetime, end: datetime,
                   events: int) -> int:
    span = (end - start).total_seconds()
    n = max(1, int(span / config.batch_seconds))
    rate = events / span if span else 0.0
    stamps = np.array([int(start.timestamp() * 1000 + i * config.batch_seconds * 1000) for i in range(n)])
    rows_in = np.maximum(0, nprng.normal(rate * config.batch_seconds, rate * config.batch_seconds * 0.15, n))
    bursts = nprng.random(n) < 0.01
    rows_in[bursts] *= 4
    duration = 450 + rows_in / 400 + nprng.gamma(2.0, 60, n)
    lag = np.maximum(0, (duration - config.batch_seconds * 1000) / 1000 * rate).astype(np.int64)
    state_rows = (2_000 + 300 * np.sin(np.arange(n) / 500) + nprng.normal(0, 40, n)).astype(np.int64)
    end_offsets = np.cumsum(rows_in).astype(np.int64)
    table = pa.Table.from_pydict({
        "query_name": ["incident_stream"] * n, "query_id": ["7f0c2d9e-query"] * n, "run_id": ["run-1"] * n,
        "batch_id": np.arange(n, dtype=np.int64),
        "timestamp": pa.array(stamps, pa.timestamp("ms", tz="UTC")).cast(contract.TS),
        "num_input_rows": rows_in.astype(np.int64),
        "input_rows_per_second": rows_in / config.batch_seconds,
        "processed_rows_per_second": rows_in / np.maximum(duration / 1000, 0.05),
        "batch_duration_ms": duration.astype(np.int64),
        "state_rows": state_rows, "state_memory_bytes": state_rows * 420,
        "start_offsets": [json.dumps({"0": int(o // 2), "1": int(o // 2)}) for o in np.roll(end_offsets, 1)],
        "end_offsets": [json.dumps({"0": int(o // 2), "1": int(o - o // 2)}) for o in end_offsets],
        "latest_offsets": [json.dumps({"0": int((o + lg) // 2), "1": int((o + lg) - (o + lg) // 2)})
                           for o, lg in zip(end_offsets, lag, strict=True)],
        "lag": lag,
    }, schema=contract.METRICS)
    per_file = 300
    written: list[DataFile] = []
    for i in range(0, n, per_file):
        written += store.write_files("metrics", table.slice(i, per_file))
    store.commit_files("metrics", written)
    return n
