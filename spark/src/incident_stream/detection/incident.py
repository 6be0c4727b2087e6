"""One incident of one service: what it has accumulated and how it is written as an update row."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from incident_contracts.tables import IncidentStatus, UpdateType
from incident_stream.detection import histogram
from incident_stream.detection.anomaly import ERROR_RATE, LATENCY, SILENCE, WARNING_RATE
from incident_stream.detection.buckets import BucketAgg
from incident_stream.detection.params import DetectionParams

HOST_SHARE = 0.05
TITLE_SIGNATURE_CHARS = 120


def shorten(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else cut at the last word boundary with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:  # a word boundary not too far back; else cut inside the long word
        cut = cut[:space]
    return cut.rstrip() + "…"


def incident_id(environment: str, service: str, opened_at_ms: int) -> str:
    """Deterministic id: the same events give the same id, whatever the batching or the run."""
    digest = hashlib.sha256(f"{environment}\x1f{service}\x1f{opened_at_ms}".encode()).hexdigest()
    return f"inc-{digest[:20]}"


@dataclass
class Incident:
    incident_id: str
    service: str
    environment: str
    opened_at: int  # ms, start of the first anomalous bucket
    first_seen: int
    last_seen: int
    last_active: int  # bucket number of the last bucket at hold level or above
    baseline_error_rate: float
    baseline_latency_p95: float | None
    baseline_warning_rate: float | None = None
    stats: BucketAgg = field(default_factory=BucketAgg)  # the incident's span so far
    tail: BucketAgg = field(default_factory=BucketAgg)  # quiet buckets since last_active
    triggers: list[str] = field(default_factory=list)
    peak_score: float = 0.0
    status: str = IncidentStatus.OPEN.value
    resolved_at: int | None = None
    severity: str | None = None
    severity_reasons: list[str] = field(default_factory=list)
    origin_service: str | None = None
    origin_incident_id: str | None = None
    linked_ids: list[str] = field(default_factory=list)
    dependents: list[str] = field(default_factory=list)
    next_seq: int = 0
    last_emit_bucket: int | None = None
    last_emit_key: list | None = None  # what an update row reports that matters; a change emits a row
    last_emit_events: int = 0
    baselined: bool = True  # False: opened on an absolute floor before the service had a baseline
    floor_error_rate: float | None = None  # the service's floors when it opened (for the reasons)
    floor_p95_ms: float | None = None
    discovered: bool = False  # the service is not in the catalog
    usual_volume: float | None = None  # silence incidents: events per bucket the service usually sends
    opened_bucket: int = 0  # the bucket of opened_at

    # --- accumulation --------------------------------------------------------------------------
    def absorb_active(self, agg: BucketAgg, bucket: int, triggers: tuple[str, ...], score: float,
                      params: DetectionParams) -> None:
        """A bucket at hold level or above: the quiet tail (if any) and it join the incident."""
        self.stats.merge(self.tail, params.slowest_kept)
        self.tail = BucketAgg()
        self.stats.merge(agg, params.slowest_kept)
        self.stats.finalize()
        self.last_active = bucket
        for t in triggers:
            if t not in self.triggers:
                self.triggers = sorted([*self.triggers, t])
        self.peak_score = max(self.peak_score, score)
        self._see(agg)

    def absorb_quiet(self, agg: BucketAgg, params: DetectionParams) -> None:
        self.tail.merge(agg, params.slowest_kept)
        self.tail.finalize()

    def _see(self, agg: BucketAgg) -> None:
        times = [t for t in (agg.first_err, agg.last_err) if t is not None]
        if WARNING_RATE in self.triggers:
            times += [t for t in (agg.first_warn, agg.last_warn) if t is not None]
        if LATENCY in self.triggers:
            times += [s[1] for s in agg.slow]
        if times:
            self.first_seen = min(self.first_seen, min(times))
            self.last_seen = max(self.last_seen, max(times))

    # --- reporting ------------------------------------------------------------------------------
    @property
    def error_rate(self) -> float | None:
        return self.stats.errors / self.stats.n if self.stats.n else None

    @property
    def warning_rate(self) -> float | None:
        return self.stats.warns / self.stats.n if self.stats.n else None

    @property
    def volume_share(self) -> float | None:
        """Silence incidents: events received over those usually sent in the incident's span."""
        if SILENCE not in self.triggers or not self.usual_volume:
            return None
        buckets = max(1, self.last_active - self.opened_bucket + 1)
        return self.stats.n / (self.usual_volume * buckets)

    @property
    def latency_p95(self) -> float | None:
        if self.stats.lat_n == 0:
            return None
        return histogram.quantile(self.stats.lat, 0.95)

    def emit_key(self) -> list:
        return [self.severity, list(self.triggers), self.origin_incident_id, list(self.linked_ids)]

    def row(self, update_type: UpdateType, update_time_ms: int, params: DetectionParams) -> dict:
        """The incident_updates row, timestamps in ms (converted by the caller)."""
        self.next_seq += 1
        signatures = self._top_signatures(params)
        return {
            "incident_id": self.incident_id,
            "update_seq": self.next_seq - 1,
            "update_type": update_type.value,
            "status": self.status,
            "update_time": update_time_ms,
            "service": self.service,
            "environment": self.environment,
            "tier": self.stats.tier,
            "owner": self.stats.owner,
            "severity": self.severity,
            "severity_reasons": list(self.severity_reasons),
            "trigger": "+".join(self.triggers),
            "title": self._title(signatures),
            "opened_at": self.opened_at,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "resolved_at": self.resolved_at,
            "event_count": self.stats.n,
            "error_count": self.stats.errors,
            "error_rate": self.error_rate,
            "baseline_error_rate": self.baseline_error_rate,
            "latency_p95_ms": self.latency_p95,
            "baseline_latency_p95_ms": self.baseline_latency_p95,
            "anomaly_score": round(self.peak_score, 3),
            "top_signatures": signatures,
            "sample_messages": self._samples(signatures, params),
            "affected_hosts": self._hosts(params),
            "origin_service": self.origin_service,
            "origin_incident_id": self.origin_incident_id,
            "linked_incident_ids": list(self.linked_ids),
        }

    def _top_signatures(self, params: DetectionParams) -> list[dict]:
        if self.stats.sigs:
            errors_first = ERROR_RATE in self.triggers
            ranked = sorted(self.stats.sigs.items(),
                            key=lambda kv: (-kv[1][4] if errors_first else 0, -kv[1][1], kv[0]))
            return [{"signature": sig, "signature_id": sid, "count": int(count), "sample": sample}
                    for sid, (sig, count, sample, _t, _errors) in ranked[: params.max_signatures]]
        counts: dict[str, list] = {}
        for _lat, _t, _host, sid, sig, message in self.stats.slow:  # latency-only incident: the slowest
            entry = counts.setdefault(sid, [sig, 0, message])
            entry[1] += 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1][1], kv[0]))
        return [{"signature": sig, "signature_id": sid, "count": int(count), "sample": message}
                for sid, (sig, count, message) in ranked[: params.max_signatures]]

    def _samples(self, signatures: list[dict], params: DetectionParams) -> list[str]:
        out: list[str] = []
        candidates = [s["sample"] for s in signatures] + [s[5] for s in self.stats.slow]
        for message in candidates:
            if message and message not in out:
                out.append(message[: params.message_max_chars])
            if len(out) >= params.max_samples:
                break
        return out

    def _hosts(self, params: DetectionParams) -> list[str]:
        """Hosts with errors (or, for latency, slow requests), most first; hosts with only a stray
        background error (under HOST_SHARE of the incident's errors) are left out."""
        hosts = dict(self.stats.hosts)
        if LATENCY in self.triggers:
            for s in self.stats.slow:
                hosts[s[2]] = hosts.get(s[2], 0) + 1
        floor = HOST_SHARE * sum(hosts.values())
        ranked = sorted(hosts.items(), key=lambda kv: (-kv[1], kv[0]))
        return [h for h, count in ranked if count >= floor][: params.max_hosts]

    def _title(self, signatures: list[dict]) -> str:
        parts = []
        if ERROR_RATE in self.triggers and self.error_rate is not None:
            parts.append(f"error rate {self.error_rate:.1%} (baseline {self.baseline_error_rate:.2%})")
        if WARNING_RATE in self.triggers and self.warning_rate is not None:
            parts.append(f"warning rate {self.warning_rate:.1%}")
        if LATENCY in self.triggers and self.latency_p95 is not None:
            base = f" (baseline {self.baseline_latency_p95:,.0f} ms)" if self.baseline_latency_p95 else ""
            parts.append(f"p95 latency {self.latency_p95:,.0f} ms{base}")
        if SILENCE in self.triggers and self.volume_share is not None:
            parts.append(f"traffic {self.volume_share:.0%} of its usual volume")
        title = f"{self.service}: {' and '.join(parts) or 'departure from baseline'}"
        if signatures and signatures[0].get("signature") and self.triggers != [SILENCE]:
            title += f" - {shorten(signatures[0]['signature'], TITLE_SIGNATURE_CHARS)}"
        return title

    # --- state -----------------------------------------------------------------------------------
    def to_json(self) -> dict:
        data = {k: getattr(self, k) for k in _PLAIN}
        data["stats"], data["tail"] = self.stats.to_json(), self.tail.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict) -> Incident:
        plain = {k: data[k] for k in _PLAIN if k in data}  # fields added later keep their defaults
        return cls(stats=BucketAgg.from_json(data["stats"]), tail=BucketAgg.from_json(data["tail"]), **plain)


_PLAIN = ("incident_id", "service", "environment", "opened_at", "first_seen", "last_seen", "last_active",
          "baseline_error_rate", "baseline_latency_p95", "baseline_warning_rate", "triggers", "peak_score",
          "status", "resolved_at", "severity", "severity_reasons", "origin_service", "origin_incident_id",
          "linked_ids", "dependents", "next_seq", "last_emit_bucket", "last_emit_key", "last_emit_events",
          "baselined", "floor_error_rate", "floor_p95_ms", "discovered", "usual_volume",
          "opened_bucket")
