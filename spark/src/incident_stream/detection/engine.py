"""The detector of one environment: partial buckets in, incident_updates rows out. Pure Python.

It is what the Spark stateful processor runs for each environment key, and it runs as is in unit
tests and offline replays. Time is event time only:

* events arrive aggregated into partial buckets (aggregate.py, by the job's reading tasks or by
  offline.OfflineDetector) and are merged into the buckets still open (`ingest_parts`);
* the clock is the newest event time seen minus `allowed_lateness_s` (or Spark's watermark, if ahead);
  every bucket that ends at or before the clock is final and is stepped, in order, through every
  service's tracker;
* events for a bucket that is already final (a host whose clock is behind, a shipper that sends in
  batches) are counted at their arrival, in the oldest bucket still open, when they are at most
  `late_horizon_s` behind; older ones are left out. Both are counted per service (`late_counts`), as
  are the events whose time the view took at their arrival (a host clock ahead: `ahead_counts`);
* after each bucket, incidents are linked along dependencies, severities are assessed and rows are
  written for what changed.

So the rows depend only on the events (and, for events later than the allowed lateness, on when they
arrived), not on how on-time events were cut into micro-batches: reprocessing the same events gives the
same rows and ids; only `update_time` (processing time, by contract) differs.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable

# the counters the detector reports (drain_counters)
from incident_contracts.detector_counters import CLOCK_AHEAD, ENVIRONMENT_SILENT, LATE_COUNTED, LATE_EXCLUDED
from incident_contracts.tables import UpdateType
from incident_stream.detection import severity
from incident_stream.detection.anomaly import ELEVATED, WARNING_RATE
from incident_stream.detection.buckets import BucketAgg, merge_into
from incident_stream.detection.floors import Floor, FloorPolicy
from incident_stream.detection.incident import Incident
from incident_stream.detection.linking import DependencyGraph, Span, link
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.quiet import SilencePolicy
from incident_stream.detection.tracker import OPENED, RESOLVED, ServiceTracker

STATE_VERSION = 1


class EnvironmentDetector:
    def __init__(self, environment: str, params: DetectionParams, graph: DependencyGraph,
                 tiers: dict[str, int] | None = None, flapping: frozenset[str] = frozenset(),
                 floors: FloorPolicy | None = None, silence: SilencePolicy | None = None) -> None:
        self.environment = environment
        self.params = params
        self.graph = graph
        self.tiers = tiers or {}
        self.flapping = frozenset(flapping)
        self.floors = floors or FloorPolicy()
        self.silence = silence or SilencePolicy()  # when each service is expected to be silent
        self.services: dict[str, ServiceTracker] = {}
        self.pending: dict[tuple[str, int], BucketAgg] = {}
        self.next_bucket: int | None = None  # first bucket not final yet
        self.max_event_ms: int | None = None
        self.late_events = 0  # events left out: older than late_horizon_s behind the clock
        # per service: [events counted at arrival (later than the allowed lateness), events left out]
        self.late_counts: dict[str, list[int]] = {}
        self.late_last: dict[str, int] = {}  # service -> the last bucket that took late events of it
        self.ahead_counts: dict[str, int] = {}  # per service: events taken at their arrival (CLOCK_AHEAD)
        # counters not yet reported (drain_counters): (counter, service or "" for the environment) -> amount
        self.counter_deltas: dict[tuple[str, str], int] = {}
        self.recent: list[dict] = []  # resolved incidents still linkable: {id, service, start, end}
        self.silent_environment_buckets = 0  # buckets in which the whole environment fell silent (not persisted)

    # --- input ---------------------------------------------------------------------------------
    def ingest_parts(self, parts: Iterable[tuple[tuple[str, int], BucketAgg]], newest_ms: int | None) -> None:
        """Partial buckets keyed by (service, bucket), aggregated elsewhere (partials.py), and the newest
        event time they cover. Partials of a bucket that is already final go into the oldest bucket still
        open (their arrival) when they are at most `late_horizon_s` behind it, and are left out otherwise;
        both are counted per service in `late_counts`."""
        horizon = None
        if self.next_bucket is not None:
            horizon = self.next_bucket - self.params.late_horizon_ms // self.params.bucket_ms
        for key, agg in parts:
            if agg.ahead:
                self.ahead_counts[key[0]] = self.ahead_counts.get(key[0], 0) + agg.ahead
                self._count(CLOCK_AHEAD, key[0], agg.ahead)
            if self.next_bucket is not None and key[1] < self.next_bucket:
                counts = self.late_counts.setdefault(key[0], [0, 0])
                if key[1] < horizon:
                    counts[1] += agg.n
                    self.late_events += agg.n
                    self._count(LATE_EXCLUDED, key[0], agg.n)
                    continue
                counts[0] += agg.n
                self._count(LATE_COUNTED, key[0], agg.n)
                self.late_last[key[0]] = self.next_bucket
                key = (key[0], self.next_bucket)
            merge_into(self.pending, key, agg, self.params.slowest_kept)
        if newest_ms is not None:
            self.max_event_ms = newest_ms if self.max_event_ms is None else max(self.max_event_ms, newest_ms)

    # --- counters ------------------------------------------------------------------------------
    def _count(self, counter: str, service: str, amount: int) -> None:
        key = (counter, service)
        self.counter_deltas[key] = self.counter_deltas.get(key, 0) + amount

    def drain_counters(self) -> list[tuple[str, str, int]]:
        """What was counted since the last call, as (counter, service, amount), sorted: LATE_COUNTED,
        LATE_EXCLUDED and CLOCK_AHEAD events per service, ENVIRONMENT_SILENT buckets (service "") in which
        the whole environment fell silent (no service judged). The state keeps undrained counts, so a replayed
        micro-batch reports the same amounts."""
        out = [(c, s, n) for (c, s), n in sorted(self.counter_deltas.items()) if n]
        self.counter_deltas = {}
        return out

    # --- time ----------------------------------------------------------------------------------
    def clock_ms(self, watermark_ms: int | None = None) -> int | None:
        candidates = [c for c in (watermark_ms,) if c is not None and c > 0]
        if self.max_event_ms is not None:
            candidates.append(self.max_event_ms - self.params.lateness_ms)
        return max(candidates) if candidates else None

    def advance(self, now_ms: int, watermark_ms: int | None = None) -> list[dict]:
        """Finalize every bucket that the clock has passed; return the rows this produced."""
        clock = self.clock_ms(watermark_ms)
        if clock is None:
            return []
        if self.next_bucket is None:
            if not self.pending:
                return []
            self.next_bucket = min(b for _, b in self.pending)
        b_ms = self.params.bucket_ms
        settle = self.params.max_window + self.params.buckets(self.params.quiet_period_s) + 2
        rows: list[dict] = []
        while (self.next_bucket + 1) * b_ms <= clock:
            k = self.next_bucket
            horizon = clock // b_ms  # first bucket that is not final
            upcoming = min((b for _, b in self.pending), default=horizon)
            gap = min(upcoming, horizon) - k
            if gap > settle and all(t.idle and not any(a.n for a in t.ring) for t in self.services.values()):
                for tracker in self.services.values():
                    tracker.skip(gap)
                self.next_bucket = k + gap
                self._forget(self.next_bucket)
                continue
            rows.extend(self._finalize(k, now_ms))
            self.next_bucket = k + 1
        return rows

    # --- one final bucket -------------------------------------------------------------------------
    def _finalize(self, k: int, now_ms: int) -> list[dict]:
        for service, bucket in sorted(key for key in self.pending if key[1] == k):
            if service not in self.services:
                self.services[service] = ServiceTracker(service, self.environment, self.params, bucket,
                                                        known_flapping=service in self.flapping)
        transitions: dict[str, str] = {}
        aggs = {}
        for service in sorted(self.services):
            agg = self.pending.pop((service, k), None)
            aggs[service] = agg.finalize() if agg is not None else BucketAgg()
        quiet = {s for s in aggs if self.silence.expected(s, k * self.params.bucket_ms)}
        silences = self._silences(k, aggs, quiet)
        for service, agg in aggs.items():
            for kind, inc in self.services[service].step(k, agg, self._floor(service, agg), silences.get(service),
                                                         service in quiet):
                transitions[inc.incident_id] = kind
                if kind == RESOLVED:
                    self.recent.append({"id": inc.incident_id, "service": inc.service,
                                        "start": inc.opened_at, "end": inc.resolved_at, "inc": inc})
        rows = self._report(k, transitions, now_ms)
        for entry in self.recent:
            entry.pop("inc", None)
        self._forget(k)
        return rows

    def _silences(self, k: int, aggs: dict[str, BucketAgg], quiet: set[str]) -> dict[str, object]:
        """Each service's silence verdict for this bucket, or none at all when so many of the services
        whose volume can be judged fall silent together (`silence_environment_share`, two or more) that
        the environment's logs stopped arriving: a pipeline problem, not one incident per service.
        A service whose events arrived late within `late_horizon_s` is not judged: its volume per bucket
        is then its delivery pattern (a shipper that sends in batches), not its traffic. Nor is a service
        of which silence is expected in this bucket (`quiet`: a known quiet period, or `silence: false`),
        and it does not count among the judged services."""
        horizon = self.params.late_horizon_ms // self.params.bucket_ms
        verdicts = {s: v for s, v in ((s, self.services[s].silence_preview(a)) for s, a in aggs.items()
                                      if s not in quiet and k - self.late_last.get(s, k - horizon - 1) > horizon)
                    if v is not None}
        silent = sum(1 for v in verdicts.values() if v.level >= ELEVATED)
        if silent >= 2 and silent >= self.params.silence_environment_share * len(verdicts):
            self.silent_environment_buckets += 1
            self._count(ENVIRONMENT_SILENT, "", 1)
            return {}
        return verdicts

    def _report(self, k: int, transitions: dict[str, str], now_ms: int) -> list[dict]:
        p = self.params
        now_event_ms = (k + 1) * p.bucket_ms
        open_incidents = [t.incident for t in self.services.values() if t.incident is not None]
        just_resolved = [e["inc"] for e in self.recent if "inc" in e]
        if not open_incidents and not just_resolved:
            return []
        spans = [Span(i.incident_id, i.service, i.opened_at, now_event_ms) for i in open_incidents]
        spans += [Span(e["id"], e["service"], e["start"], e["end"]) for e in self.recent]
        links = link(spans, self.graph, int(p.link_slack_s * 1000))
        rows = []
        for inc in sorted(open_incidents + just_resolved, key=lambda i: (i.service, i.incident_id)):
            lk = links[inc.incident_id]
            inc.origin_service, inc.origin_incident_id = lk.origin_service, lk.origin_incident_id
            inc.linked_ids, inc.dependents = list(lk.linked_incident_ids), list(lk.dependents_in_incident)
            self._assess(inc)
            kind = transitions.get(inc.incident_id)
            if kind == OPENED:
                update = UpdateType.OPENED
            elif kind == RESOLVED:
                update = UpdateType.RESOLVED
            elif inc.emit_key() != inc.last_emit_key or (
                    k - (inc.last_emit_bucket or k) >= p.buckets(p.update_interval_s)
                    and inc.stats.n != inc.last_emit_events):
                update = UpdateType.UPDATED
            else:
                continue
            rows.append(inc.row(update, now_ms, p))
            inc.last_emit_bucket, inc.last_emit_key, inc.last_emit_events = k, inc.emit_key(), inc.stats.n
        return rows

    def _tier(self, service: str, event_tier: str | None) -> tuple[int, bool]:
        """The service's tier (catalog, else what its events say), and whether it is a discovered service
        (known to neither: it gets the default tier)."""
        tier = self.tiers.get(service)
        if tier is None:
            tier = severity.parse_tier(event_tier)
        if tier is None:
            return self.params.default_tier, True
        return tier, False

    def _floor(self, service: str, agg: BucketAgg) -> Floor:
        return self.floors.floor(service, self._tier(service, agg.tier)[0], self.params.default_tier)

    def _assess(self, inc: Incident) -> None:
        p = self.params
        tier, discovered = self._tier(inc.service, inc.stats.tier)
        inc.discovered = discovered
        facts = severity.SeverityInput(
            tier=tier, error_rate=inc.error_rate, baseline_error_rate=inc.baseline_error_rate,
            latency_p95_ms=inc.latency_p95, baseline_latency_p95_ms=inc.baseline_latency_p95,
            dependents_in_incident=tuple(inc.dependents),
            duration_s=((inc.last_active + 1) * p.bucket_ms - inc.opened_at) / 1000,
            warning_rate=inc.warning_rate if WARNING_RATE in inc.triggers else None,
            volume_share=inc.volume_share,
            usual_rate_per_s=None if inc.usual_volume is None else inc.usual_volume / p.bucket_s,
            baseline_warning_rate=inc.baseline_warning_rate, discovered=discovered, baselined=inc.baselined,
            floor_error_rate=inc.floor_error_rate, floor_p95_ms=inc.floor_p95_ms)
        level, reasons = severity.assess(facts)
        if inc.severity is None or not severity.more_severe(inc.severity, level):
            inc.severity, inc.severity_reasons = level, reasons
        if inc.stats.tier is None and not discovered:  # a discovered service keeps a null tier
            inc.stats.tier = str(tier)

    def _forget(self, k: int) -> None:
        horizon_ms = (k + 1) * self.params.bucket_ms - int(self.params.link_slack_s * 1000) * 2
        self.recent = [e for e in self.recent if e["end"] >= horizon_ms or "inc" in e]

    # --- state -------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "v": STATE_VERSION, "env": self.environment, "next": self.next_bucket, "max": self.max_event_ms,
            "late": self.late_events, "late_by_service": self.late_counts, "late_last": self.late_last,
            "ahead_by_service": self.ahead_counts,
            "deltas": [[c, s, n] for (c, s), n in sorted(self.counter_deltas.items())],
            "recent": self.recent,
            "pending": [[s, b, a.to_json()] for (s, b), a in sorted(self.pending.items())],
            "services": {name: t.to_json() for name, t in sorted(self.services.items())},
        }

    def to_bytes(self) -> bytes:
        return zlib.compress(json.dumps(self.to_json(), separators=(",", ":")).encode(), 1)

    @classmethod
    def from_json(cls, data: dict, params: DetectionParams, graph: DependencyGraph,
                  tiers: dict[str, int] | None = None, flapping: frozenset[str] = frozenset(),
                  floors: FloorPolicy | None = None, silence: SilencePolicy | None = None) -> EnvironmentDetector:
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"detector state version {data.get('v')!r} is not {STATE_VERSION}; run the job "
                             "from a fresh checkpoint (a new application: the records it reads are written "
                             "to the tables again)")
        d = cls(data["env"], params, graph, tiers, flapping, floors, silence)
        d.next_bucket, d.max_event_ms, d.late_events = data["next"], data["max"], data["late"]
        d.late_counts = {s: list(c) for s, c in data.get("late_by_service", {}).items()}  # older states: none
        d.late_last = dict(data.get("late_last", {}))
        d.ahead_counts = dict(data.get("ahead_by_service", {}))
        d.counter_deltas = {(c, s): n for c, s, n in data.get("deltas", [])}
        d.recent = data["recent"]
        d.pending = {(s, b): BucketAgg.from_json(a) for s, b, a in data["pending"]}
        d.services = {name: ServiceTracker.from_json(name, d.environment, t, params, name in d.flapping)
                      for name, t in data["services"].items()}
        return d

    @classmethod
    def from_bytes(cls, blob: bytes, params: DetectionParams, graph: DependencyGraph,
                   tiers: dict[str, int] | None = None, flapping: frozenset[str] = frozenset(),
                   floors: FloorPolicy | None = None, silence: SilencePolicy | None = None) -> EnvironmentDetector:
        return cls.from_json(json.loads(zlib.decompress(blob)), params, graph, tiers, flapping, floors, silence)
