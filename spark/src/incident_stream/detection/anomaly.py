"""Tests of a service's trailing windows against its baseline.

Each window (of `windows_buckets` buckets) is tested for two departures:

* error rate: the signed square root of the binomial log-likelihood ratio of the window's errors
  against the baseline rate (a z-like score that behaves well for small counts), divided by the
  square root of the noise the baseline learned for that window. It must also clear a minimum error
  count and be both `error_rate_ratio` times and `error_rate_min_delta` above the baseline rate, so a
  chatty service (high baseline) needs a large rise and one stray error on a quiet service does not page;
* latency: log(window p95 / baseline p95) over the learned noise of that window (never below the
  noise a quantile of that many samples has). It must also be `latency_ratio` times and
  `latency_min_delta_ms` above the baseline.

Short windows catch sharp, large departures within a bucket or two; long windows catch moderate ones
on low-traffic services. A window at "open" level may open an incident; at "hold" level it keeps an open
incident active (hysteresis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from incident_stream.detection import histogram
from incident_stream.detection.baseline import Baseline
from incident_stream.detection.params import DetectionParams

NORMAL, ELEVATED, ANOMALOUS = 0, 1, 2
ERROR_RATE, LATENCY = "error_rate", "latency"
QUANTILE_NOISE = 2.0  # ~sd of log(p95) from one sample; divided by sqrt(n)


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


@dataclass
class WindowStats:
    buckets: int
    n: int = 0
    errors: int = 0
    latency: np.ndarray = field(default_factory=histogram.empty)

    @property
    def error_rate(self) -> float:
        return self.errors / self.n if self.n else 0.0


@dataclass
class Evaluation:
    level: int = NORMAL
    triggers: tuple[str, ...] = ()  # the tests at `level`
    score: float = 0.0  # the largest score of any test that passed its ratio/size conditions
    error_rate: float | None = None  # of the window that decided
    latency_p95: float | None = None
    err_residuals: list[float | None] = field(default_factory=list)  # per window, for noise learning
    lat_residuals: list[float | None] = field(default_factory=list)


def window_sums(ring: list, windows: tuple[int, ...]) -> list[WindowStats]:
    """Sums over the newest `w` buckets of the ring (newest last), for each window length."""
    stats = [WindowStats(w) for w in windows]
    n = errors = 0
    latency = histogram.empty()
    order = sorted(range(len(windows)), key=lambda i: windows[i])
    pending = list(order)
    taken = 0
    for agg in reversed(ring):
        n += agg.n
        errors += agg.errors
        latency = latency + agg.lat
        taken += 1
        while pending and windows[pending[0]] == taken:
            i = pending.pop(0)
            stats[i].n, stats[i].errors, stats[i].latency = n, errors, latency.copy()
    for i in pending:  # ring shorter than the window: the window holds what there is
        stats[i].n, stats[i].errors, stats[i].latency = n, errors, latency.copy()
    return stats


def evaluate(ring: list, baseline: Baseline, params: DetectionParams) -> Evaluation:
    p = params
    rate0 = baseline.error_rate()
    lat0 = baseline.latency_p95()
    result = Evaluation()
    for i, win in enumerate(window_sums(ring, p.windows_buckets)):
        # --- error rate ----------------------------------------------------------------------
        r = binomial_score(win.errors, win.n, rate0) if win.n else None
        result.err_residuals.append(r)
        if r is not None and win.n:
            z = r / math.sqrt(baseline.error_noise(i))
            rate = win.error_rate
            if (win.errors >= p.min_errors and z >= p.open_score
                    and rate >= max(p.error_rate_ratio * rate0, rate0 + p.error_rate_min_delta)):
                _raise(result, ANOMALOUS, ERROR_RATE, z, rate, None)
            elif (win.errors >= max(2, p.min_errors // 2) and z >= p.hold_score
                    and rate >= max(p.hold_error_rate_ratio * rate0, rate0 + p.error_rate_min_delta / 2)):
                _raise(result, ELEVATED, ERROR_RATE, z, rate, None)
        # --- latency -------------------------------------------------------------------------
        lat_n = int(win.latency.sum())
        d = None
        if lat0 is not None and lat_n >= p.latency_min_samples:
            p95 = histogram.quantile(win.latency, p.latency_quantile)
            d = math.log(p95 / lat0)
            noise = max(baseline.latency_noise(i), QUANTILE_NOISE / math.sqrt(lat_n))
            z = d / noise
            if z >= p.open_score and p95 >= p.latency_ratio * lat0 and p95 - lat0 >= p.latency_min_delta_ms:
                _raise(result, ANOMALOUS, LATENCY, z, None, p95)
            elif (z >= p.hold_score and p95 >= p.hold_latency_ratio * lat0
                    and p95 - lat0 >= p.latency_min_delta_ms / 2):
                _raise(result, ELEVATED, LATENCY, z, None, p95)
        result.lat_residuals.append(d)
    return result


def _raise(result: Evaluation, level: int, trigger: str, score: float, rate: float | None,
           p95: float | None) -> None:
    if level > result.level:
        result.level, result.triggers = level, (trigger,)
        result.score, result.error_rate, result.latency_p95 = score, None, None
    elif level == result.level and trigger not in result.triggers:
        result.triggers = tuple(sorted((*result.triggers, trigger)))
    if level == result.level:
        result.score = max(result.score, score)
        if rate is not None:
            result.error_rate = rate if result.error_rate is None else max(result.error_rate, rate)
        if p95 is not None:
            result.latency_p95 = p95 if result.latency_p95 is None else max(result.latency_p95, p95)
