"""Tests of a service's trailing windows against its baseline.

Each window (of `windows_buckets` buckets) is tested for three departures:

* error rate: the signed square root of the binomial log-likelihood ratio of the window's errors
  against the baseline rate (a z-like score that behaves well for small counts), divided by the
  square root of the noise the baseline learned for that window at that many events. It must also
  clear a minimum error count and be both `error_rate_ratio` times and `error_rate_min_delta` above
  the baseline rate, so a chatty service (high baseline) needs a large rise and one stray error on a
  quiet service does not page;
* warning rate: the same test on warning lines, with its own (looser) minimums - some failures are
  logged as warnings by the service that causes them (a server's TLS handshake failures, say);
* latency: the share of the window's requests slower than a threshold T (`latency_ratio` times the
  baseline p95, and at least `latency_min_delta_ms` above it) is tested with the same binomial score
  against the share of the baseline's own requests above T. It opens when that share also reaches
  5% (the window's p95 is above T). Counting slow requests this way respects each service's own
  latency tail: a service whose p99 is far above its p95 is not paged for a few slow requests in a
  small window, while a steady service is paged for a modest but sustained slowdown.

Besides the baseline, each window is held to the service's absolute floors (floors.py): a window of at
least `min_events` events whose error rate, or whose share of requests slower than the floor's p95,
is at or beyond the floor is "over the floor" (never learned as normal, and it holds an open incident
active); it "breaches" the floor, at open level and even before the service is warm, when the
binomial score against the floor also reaches `floor_confidence_z` (and the window has `min_errors`
errors, or `min_slow_requests` slow requests).

Short windows catch sharp, large departures within a bucket or two; long windows catch moderate ones
on low-traffic services. A window at "open" level may open an incident; at "hold" level it keeps an open
incident active (hysteresis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from incident_stream.detection import histogram
from incident_stream.detection.baseline import Baseline, Residual
from incident_stream.detection.floors import Floor
from incident_stream.detection.params import DetectionParams

NORMAL, ELEVATED, ANOMALOUS = 0, 1, 2
ERROR_RATE, WARNING_RATE, LATENCY, SILENCE = "error_rate", "warning_rate", "latency", "silence"
SLOW_SHARE_FLOOR = 0.002  # a service is never assumed to have fewer slow requests than this


def binomial_score(errors: float, n: float, p0: float) -> float:
    """Signed root of the binomial log-likelihood ratio of `errors` in `n` against rate `p0`."""
    if n <= 0:
        return 0.0
    p0 = min(max(p0, 1e-9), 1 - 1e-9)
    phat = errors / n
    g = 0.0
    if errors > 0:
        g += errors * math.log(phat / p0)
    if n - errors > 0:
        g += (n - errors) * math.log((1 - phat) / (1 - p0))
    root = math.sqrt(max(2.0 * g, 0.0))
    return root if phat >= p0 else -root


def poisson_score(observed: float, expected: float) -> float:
    """Signed root of the Poisson log-likelihood ratio of `observed` events where `expected` were due:
    positive when fewer arrived than expected (the direction a silence test looks at)."""
    if expected <= 0:
        return 0.0
    g = observed * math.log(observed / expected) - (observed - expected) if observed > 0 else expected
    root = math.sqrt(max(2.0 * g, 0.0))
    return root if observed < expected else -root


@dataclass(frozen=True)
class Silence:
    level: int
    score: float
    observed: int  # events in the window that judged it
    expected: float


def silence_test(ring: list, per_bucket: float | None, p: DetectionParams) -> Silence:
    """A service's volume against the volume it usually has (events per bucket, learned by the tracker).

    On each window of at least `silence_min_window_s` in which `silence_min_expected` events or more
    were due: at most `silence_ratio` of them arrived and the Poisson score of the shortfall reaches
    `open_score` -> anomalous; at most `silence_hold_ratio` arrived -> elevated (holds an open silence)."""
    result = Silence(NORMAL, 0.0, 0, 0.0)
    if not per_bucket or not ring:
        return result
    shortest = p.buckets(p.silence_min_window_s)
    newest_first = [a.n for a in reversed(ring)]
    for w in p.windows_buckets:
        buckets = min(w, len(ring))
        expected = per_bucket * buckets
        if buckets < shortest or expected < p.silence_min_expected:
            continue
        n = sum(newest_first[:buckets])
        z = poisson_score(n, expected)
        if n <= p.silence_ratio * expected and z >= p.open_score:
            level = ANOMALOUS
        elif n <= p.silence_hold_ratio * expected and z >= p.hold_score:
            level = ELEVATED
        else:
            continue
        if (level, z) > (result.level, result.score):
            result = Silence(level, z, n, expected)
    return result


@dataclass
class WindowStats:
    buckets: int
    n: int = 0
    errors: int = 0
    warns: int = 0
    latency: np.ndarray = field(default_factory=histogram.empty)


@dataclass
class Evaluation:
    level: int = NORMAL
    triggers: tuple[str, ...] = ()  # the tests at `level`
    score: float = 0.0  # the largest score of the tests at `level`
    # per window, for noise learning: (residual, events it was computed on), or None
    err_residuals: list[Residual | None] = field(default_factory=list)
    warn_residuals: list[Residual | None] = field(default_factory=list)
    lat_residuals: list[Residual | None] = field(default_factory=list)
    # absolute floors: ELEVATED = over a floor (not learned, holds), ANOMALOUS = breached (may open)
    floor_level: int = NORMAL
    floor_triggers: tuple[str, ...] = ()
    floor_score: float = 0.0
    floor_rate: float | None = None  # the error rate of the breaching window with the most events
    floor_p95_ms: float | None = None

    def raise_floor(self, level: int, trigger: str, score: float) -> None:
        if level > self.floor_level:
            self.floor_level, self.floor_triggers, self.floor_score = level, (trigger,), score
        elif level == self.floor_level and level > NORMAL:
            if trigger not in self.floor_triggers:
                self.floor_triggers = tuple(sorted((*self.floor_triggers, trigger)))
            self.floor_score = max(self.floor_score, score)

    def raise_to(self, level: int, trigger: str, score: float) -> None:
        if level > self.level:
            self.level, self.triggers, self.score = level, (trigger,), score
        elif level == self.level and level > NORMAL:
            if trigger not in self.triggers:
                self.triggers = tuple(sorted((*self.triggers, trigger)))
            self.score = max(self.score, score)


@dataclass(frozen=True)
class RateRule:
    trigger: str
    min_count: int
    ratio: float
    min_delta: float
    hold_ratio: float


def window_sums(ring: list, windows: tuple[int, ...]) -> list[WindowStats]:
    """Sums over the newest `w` buckets of the ring (newest last), for each window length.

    A window longer than the ring holds what there is."""
    if not ring:
        return [WindowStats(w) for w in windows]
    newest_first = list(reversed(ring))
    counts = np.cumsum(np.array([(a.n, a.errors, a.warns) for a in newest_first], dtype=np.int64), axis=0)
    latency = np.cumsum(np.stack([a.lat for a in newest_first]), axis=0)
    stats = []
    for w in windows:
        i = min(w, len(newest_first)) - 1
        n, errors, warns = counts[i].tolist()
        stats.append(WindowStats(w, n, errors, warns, latency[i]))
    return stats


def evaluate(ring: list, baseline: Baseline, params: DetectionParams, floor: Floor | None = None) -> Evaluation:
    p = params
    error_rule = RateRule(ERROR_RATE, p.min_errors, p.error_rate_ratio, p.error_rate_min_delta,
                          p.hold_error_rate_ratio)
    warning_rule = RateRule(WARNING_RATE, p.min_warnings, p.warning_rate_ratio, p.warning_rate_min_delta,
                            p.hold_error_rate_ratio)
    rate0, warn0 = baseline.error_rate(), baseline.warning_rate()
    slow_levels = _slow_levels(baseline, p)
    result = Evaluation()
    for i, win in enumerate(window_sums(ring, p.windows_buckets)):
        result.err_residuals.append(
            _rate_test(result, error_rule, win.errors, win.n, rate0, baseline.error_noise(i, win.n), p))
        result.warn_residuals.append(
            _rate_test(result, warning_rule, win.warns, win.n, warn0, baseline.warning_noise(i, win.n), p))
        lat_n = int(win.latency.sum())
        result.lat_residuals.append(
            _latency_test(result, win, lat_n, slow_levels, baseline.latency_noise(i, lat_n), p))
        if floor is not None:
            _floor_test(result, win, lat_n, floor, p)
    if result.floor_level == ANOMALOUS:  # a breach may open (and feeds the same triggers) like any test
        for trigger in result.floor_triggers:
            result.raise_to(ANOMALOUS, trigger, result.floor_score)
    elif result.floor_level == ELEVATED:
        for trigger in result.floor_triggers:
            result.raise_to(ELEVATED, trigger, result.floor_score)
    return result


def _floor_test(result: Evaluation, win: WindowStats, lat_n: int, floor: Floor, p: DetectionParams) -> None:
    if win.n >= floor.min_events and win.errors >= floor.error_rate * win.n:
        z = binomial_score(win.errors, win.n, floor.error_rate)
        breach = win.errors >= p.min_errors and z >= p.floor_confidence_z
        result.raise_floor(ANOMALOUS if breach else ELEVATED, ERROR_RATE, max(z, 0.0))
        if breach and result.floor_rate is None:
            result.floor_rate = win.errors / win.n
    if lat_n >= floor.min_events:
        tail = 1.0 - p.latency_quantile
        slow = int(win.latency[histogram.bin_of(floor.p95_latency_ms) + 1:].sum())  # bins fully above
        if slow >= tail * lat_n:
            z = binomial_score(slow, lat_n, tail)
            breach = slow >= p.min_slow_requests and z >= p.floor_confidence_z
            result.raise_floor(ANOMALOUS if breach else ELEVATED, LATENCY, max(z, 0.0))
            if breach and result.floor_p95_ms is None:
                result.floor_p95_ms = histogram.quantile(win.latency, p.latency_quantile)


def _slow_levels(baseline: Baseline, p: DetectionParams) -> list[tuple[int, int, float]] | None:
    """(level, first histogram bin counted as slow, baseline share of requests that slow) for the open
    and the hold test; None while the baseline has too little latency history."""
    lat0 = baseline.latency_p95()
    if lat0 is None:
        return None
    levels = []
    for level, ratio, delta in ((ANOMALOUS, p.latency_ratio, p.latency_min_delta_ms),
                                (ELEVATED, p.hold_latency_ratio, p.latency_min_delta_ms / 2)):
        edge = histogram.bin_of(max(ratio * lat0, lat0 + delta)) + 1  # first bin fully above
        levels.append((level, edge, max(baseline.latency_share_from(edge), SLOW_SHARE_FLOOR)))
    return levels


def _rate_test(result: Evaluation, rule: RateRule, count: int, n: int, rate0: float, noise: float,
               p: DetectionParams) -> Residual | None:
    if n <= 0:
        return None
    r = binomial_score(count, n, rate0)
    z = r / math.sqrt(noise)
    rate = count / n
    if count >= rule.min_count and z >= p.open_score and rate >= max(rule.ratio * rate0, rate0 + rule.min_delta):
        result.raise_to(ANOMALOUS, rule.trigger, z)
    elif (count >= max(2, rule.min_count // 2) and z >= p.hold_score
            and rate >= max(rule.hold_ratio * rate0, rate0 + rule.min_delta / 2)):
        result.raise_to(ELEVATED, rule.trigger, z)
    return r, n


def _latency_test(result: Evaluation, win: WindowStats, lat_n: int,
                  slow_levels: list[tuple[int, int, float]] | None, noise: float,
                  p: DetectionParams) -> Residual | None:
    if slow_levels is None:
        return None
    if lat_n < p.latency_min_samples:
        return None
    tail = 1.0 - p.latency_quantile
    residual = None
    for level, edge, share0 in slow_levels:
        slow = int(win.latency[edge:].sum())
        r = binomial_score(slow, lat_n, share0)
        if residual is None:
            residual = r
        z = r / math.sqrt(noise)
        if slow >= p.min_slow_requests and slow >= tail * lat_n and z >= (p.open_score if level == ANOMALOUS
                                                                          else p.hold_score):
            result.raise_to(level, LATENCY, z)
            break
    return None if residual is None else (residual, lat_n)
