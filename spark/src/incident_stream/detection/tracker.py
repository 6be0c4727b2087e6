"""The lifecycle of one service, one final bucket at a time: normal -> candidate -> open -> resolved.

* normal: every bucket is tested (anomaly.evaluate). A bucket at "open" level starts a candidate run.
* candidate: after `confirm_buckets` consecutive open-level buckets the incident opens, or at once on a
  bucket scoring `fast_open_ratio` times `open_score` or more (a severe failure: waiting one more bucket
  only delays the page; as in multi-window burn-rate alerting, the faster the burn, the shorter the
  wait). Its id comes from the first bucket of the run. A flapping service - marked `flapping: true`
  in the catalog, or seen flapping (`flap_min_episodes` short episodes in `flap_window_s`) - must
  instead stay anomalous for `flap_sustain_s`: its short bursts never page, a lasting failure still does.
* open: a bucket keeps it active, and is added to it, when one of the incident's own tests (its
  triggers) is at "hold" level or above, or any test is at "open" level (which then joins the
  triggers); other buckets are kept aside and only added if it becomes active again. A test that
  never opened the incident cannot hold it open: a stray slow second does not stretch an error
  incident.
* resolved: after `quiet_period_s` without an active bucket; resolved_at is the end of the last active
  bucket. Since the longest window still holds the incident's lines for `max_window` buckets after
  they stop, resolved_at lies at most about that long after the failure ended (plus any hold-level
  noise of its own tests), and the resolved row is written `quiet_period_s` after resolved_at.

Absolute floors (floors.py) are the exception to "learn first, page later": a window that breaches its
service's floor may open an incident during the warm-up, and a window over a floor is never learned.

Volume (the silence test) is judged by the engine (silence_preview) only where silence is not expected
(quiet.SilencePolicy): a bucket in one of the service's known quiet periods (`quiet=True` to `step`) is
not judged, and the usual volume does not learn from it, nor forget during it: the usual volume is the
service's volume when its volume is a health signal, so a weekend of silence by design neither teaches
it that zero is normal nor makes Monday's traffic look like a surge. Just after a quiet period, only
the buckets since its end are judged (the period's empty buckets would look like a silence).

The baseline learns from every bucket during the warm-up (so a service that is bursty by nature
learns its burstiness); after it, only from buckets that are normal and outside any candidate run or
incident, with a delay, and with the noise contribution of a bucket capped (see baseline.py), which
keeps an incident, or its slow onset, from becoming the new normal.
"""

from __future__ import annotations

from collections import deque

from incident_contracts.tables import IncidentStatus
from incident_stream.detection.anomaly import (
    ANOMALOUS,
    ELEVATED,
    ERROR_RATE,
    LATENCY,
    NORMAL,
    SILENCE,
    WARNING_RATE,
    Silence,
    evaluate,
    silence_test,
)
from incident_stream.detection.baseline import Baseline
from incident_stream.detection.buckets import BucketAgg
from incident_stream.detection.floors import Floor
from incident_stream.detection.incident import Incident, incident_id
from incident_stream.detection.params import DetectionParams

OPENED, RESOLVED = "opened", "resolved"


class ServiceTracker:
    def __init__(self, service: str, environment: str, params: DetectionParams, first_bucket: int,
                 known_flapping: bool = False) -> None:
        self.service = service
        self.known_flapping = known_flapping
        self.environment = environment
        self.params = params
        self.first_bucket = first_bucket
        self.ring: deque[BucketAgg] = deque(maxlen=params.max_window)
        self.baseline = Baseline(params)
        self.incident: Incident | None = None
        self.run_start: int | None = None  # first bucket of the current open-level run
        self.run_len = 0
        self.streak_start: int | None = None  # first bucket of the current elevated-or-worse streak
        self.episodes: list[list[int]] = []  # [start, end] buckets of recent anomalous episodes
        self.volume = [0.0, 0.0]  # decayed events and decayed buckets: the service's usual volume
        self.since_quiet = params.max_window  # buckets since the last one in a quiet period (up to max_window)

    # --- one bucket ------------------------------------------------------------------------------
    def step(self, bucket: int, agg: BucketAgg, floor: Floor | None = None,
             silence: Silence | None = None, quiet: bool = False) -> list[tuple[str, Incident]]:
        """One final bucket. `silence`: silence_preview's verdict on it, when the environment as a whole
        is not silent (None: volume is not judged this bucket). `quiet`: silence is expected of the service
        in this bucket (a known quiet period, or `silence: false`): its usual volume does not learn it."""
        p = self.params
        self.ring.append(agg)
        ev = evaluate(list(self.ring), self.baseline, p, floor)
        silent_incident = self.incident is not None and SILENCE in self.incident.triggers
        if silence is not None and (silence.level == ANOMALOUS or (silence.level == ELEVATED and silent_incident)):
            ev.raise_to(silence.level, SILENCE, silence.score)  # elevated volume only holds an open silence
        if not quiet and not silent_incident and (silence is None or silence.level != ANOMALOUS):
            a = self.baseline.alpha  # a near-silent bucket is never learned as the usual volume
            self.volume = [a * self.volume[0] + agg.n, a * self.volume[1] + 1]
        self.since_quiet = 0 if quiet else min(self.since_quiet + 1, p.max_window)
        self.baseline.tick(agg.n)
        if ev.level >= ELEVATED:
            self.streak_start = bucket if self.streak_start is None else self.streak_start
        else:
            self.streak_start = None
        if self.incident is not None:
            self.baseline.observe(bucket, 0, 0, 0, agg.lat, [[], [], []], normal=False)
            return self._step_open(bucket, agg, ev)
        warm = self.baseline.warm
        # before the warm-up ends only an absolute floor can page: the baseline knows nothing yet
        if ev.level == ANOMALOUS and (warm or ev.floor_level == ANOMALOUS):
            if self.run_start is None:
                self.run_start, self.run_len = bucket, 0
            self.run_len += 1
            self.baseline.observe(bucket, 0, 0, 0, agg.lat, [[], [], []], normal=False)
            if self.run_len >= self._needed(bucket, ev.score if warm else ev.floor_score):
                self.baseline.discard_recent()
                return [(OPENED, self._open(bucket, ev, warm, floor))]
            return []
        if self.run_start is not None:
            self._record_episode(self.run_start, bucket - 1)
            self.run_start, self.run_len = None, 0
        residuals = [ev.err_residuals, ev.warn_residuals, ev.lat_residuals]
        if not warm:
            if ev.floor_level == NORMAL:  # a window over a floor is never learned as normal
                self.baseline.learn_now(agg.n, agg.errors, agg.warns, agg.lat, residuals)
        else:
            self.baseline.observe(bucket, agg.n, agg.errors, agg.warns, agg.lat, residuals,
                                  normal=ev.level == NORMAL)
        return []

    def usual_volume(self) -> float | None:
        """Events per bucket this service usually sends (None until it is warm)."""
        if not self.baseline.warm or self.volume[1] <= 0:
            return None
        return self.volume[0] / self.volume[1]

    def silence_preview(self, agg: BucketAgg) -> Silence | None:
        """The silence test on the ring as it will be once `agg` joins it, leaving out the buckets up to
        the last one in a quiet period; None when volume cannot be judged (not warm, or too few events
        due in every window)."""
        per_bucket = self.usual_volume()
        if per_bucket is None or per_bucket * self.params.buckets(self.params.silence_min_window_s) \
                < self.params.silence_min_expected:
            return None
        kept = min(self.since_quiet, self.params.max_window - 1, len(self.ring))
        ring = [*list(self.ring)[len(self.ring) - kept:], agg]
        return silence_test(ring, per_bucket, self.params)

    def skip(self, buckets: int) -> None:
        """Let `buckets` empty buckets pass at once (a long gap in the data, nothing open)."""
        self.ring.clear()
        self.baseline.flush()
        self.baseline.tick(0, buckets)
        self.streak_start = None

    @property
    def idle(self) -> bool:
        return self.incident is None and self.run_start is None

    # --- helpers -----------------------------------------------------------------------------------
    def _needed(self, bucket: int, score: float) -> int:
        """Open-level buckets in a row needed to open: `confirm_buckets`, one for a bucket at
        `fast_open_score` (a severe failure pages a bucket sooner), the sustain time for a flapping service."""
        p = self.params
        if self.flapping(bucket):
            return max(p.confirm_buckets, p.buckets(p.flap_sustain_s))
        return 1 if score >= p.fast_open_score else p.confirm_buckets

    def flapping(self, bucket: int) -> bool:
        """Marked flapping in the catalog, or seen flapping: several short anomalous episodes lately."""
        if self.known_flapping:
            return True
        p = self.params
        horizon = bucket - p.buckets(p.flap_window_s)
        short = p.buckets(p.flap_episode_max_s)
        recent = [e for e in self.episodes if e[1] >= horizon and e[1] - e[0] + 1 <= short]
        return len(recent) >= p.flap_min_episodes

    def _record_episode(self, start: int, end: int) -> None:
        p = self.params
        self.episodes.append([start, end])
        horizon = end - p.buckets(p.flap_window_s)
        self.episodes = [e for e in self.episodes if e[1] >= horizon][-4 * p.flap_min_episodes:]

    def _open(self, bucket: int, ev, warm: bool = True, floor: Floor | None = None) -> Incident:
        p = self.params
        triggers = ev.triggers if warm else ev.floor_triggers
        opened_at = self.run_start * p.bucket_ms
        streak = self.run_start if self.streak_start is None else min(self.run_start, self.streak_start)
        evidence_from = streak - (min(p.windows_buckets) - 1)
        inc = Incident(
            incident_id=incident_id(self.environment, self.service, opened_at), service=self.service,
            environment=self.environment, opened_at=opened_at, first_seen=opened_at,
            last_seen=opened_at, last_active=bucket,
            baseline_error_rate=self.baseline.error_rate(), baseline_latency_p95=self.baseline.latency_p95(),
            baseline_warning_rate=self.baseline.warning_rate(), baselined=warm,
            usual_volume=self.usual_volume() if SILENCE in triggers else None, opened_bucket=self.run_start,
            floor_error_rate=None if floor is None else floor.error_rate,
            floor_p95_ms=None if floor is None else floor.p95_latency_ms)
        first_bucket_in_ring = bucket - len(self.ring) + 1
        for i, agg in enumerate(self.ring):
            if first_bucket_in_ring + i >= evidence_from:
                inc.absorb_active(agg, first_bucket_in_ring + i, triggers, ev.score, p)
        inc.first_seen = _first_bad_time(inc, opened_at)
        inc.last_seen = max(inc.last_seen, inc.first_seen)
        self.incident = inc
        self.run_start, self.run_len = None, 0
        return inc

    def _step_open(self, bucket: int, agg: BucketAgg, ev) -> list[tuple[str, Incident]]:
        p = self.params
        inc = self.incident
        held = tuple(t for t in ev.triggers if t in inc.triggers) if ev.level == ELEVATED else ev.triggers
        if held:
            inc.absorb_active(agg, bucket, held, ev.score, p)
        else:
            inc.absorb_quiet(agg, p)
        if bucket - inc.last_active >= p.buckets(p.quiet_period_s):
            inc.status = IncidentStatus.RESOLVED.value
            inc.resolved_at = (inc.last_active + 1) * p.bucket_ms
            inc.tail = BucketAgg()
            self._record_episode(inc.opened_at // p.bucket_ms, inc.last_active)
            self.incident = None
            return [(RESOLVED, inc)]
        return []

    # --- state -------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"first": self.first_bucket, "ring": [a.to_json() for a in self.ring],
                "base": self.baseline.to_json(), "inc": self.incident.to_json() if self.incident else None,
                "run": [self.run_start, self.run_len], "streak": self.streak_start, "eps": self.episodes,
                "vol": self.volume, "sq": self.since_quiet}

    @classmethod
    def from_json(cls, service: str, environment: str, data: dict, params: DetectionParams,
                  known_flapping: bool = False) -> ServiceTracker:
        t = cls(service, environment, params, data["first"], known_flapping)
        t.ring.extend(BucketAgg.from_json(a) for a in data["ring"])
        t.baseline = Baseline.from_json(data["base"], params)
        t.incident = Incident.from_json(data["inc"]) if data["inc"] else None
        t.run_start, t.run_len = data["run"]
        t.streak_start = data["streak"]
        t.episodes = [list(e) for e in data["eps"]]
        t.volume = list(data.get("vol", [0.0, 0.0]))  # state from before volume was learned: learn it anew
        t.since_quiet = data.get("sq", params.max_window)  # state from before quiet periods: none
        return t


def _first_bad_time(inc: Incident, default: int) -> int:
    """Earliest sign of what triggered the incident in its evidence: error, warning or slow request."""
    times = []
    if ERROR_RATE in inc.triggers and inc.stats.first_err is not None:
        times.append(inc.stats.first_err)
    if WARNING_RATE in inc.triggers and inc.stats.first_warn is not None:
        times.append(inc.stats.first_warn)
    if LATENCY in inc.triggers:
        times.extend(s[1] for s in inc.stats.slow)
    return min(times) if times else default
