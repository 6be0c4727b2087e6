"""The per-service baseline: what "normal" looks like for this service, learned from its own history.

* error rate and warning rate: exponentially decayed sums of errors, warnings and events (half-life
  `baseline_half_life_s`), shrunk towards a prior for services with little history;
* latency: an exponentially decayed latency histogram (its 95th percentile, and the share of
  requests above any threshold);
* noise: for each test and window, an exponentially weighted mean of the squared standardised
  deviation seen in normal times (1 for counts that vary as chance alone would make them vary). A service whose error count naturally swings widely (bursty, chatty) learns a
  large noise and needs a larger departure to page; a steady, quiet one learns a small noise.

The detector feeds it only buckets it judges normal once the warm-up is over, so an incident does not
teach the baseline that the incident is normal.
"""

from __future__ import annotations

import numpy as np

from incident_stream.detection import histogram
from incident_stream.detection.params import DetectionParams

NOISE_PRIOR_WEIGHT_S = 30.0  # the noise estimates start as if 30 s of unit-noise history had been seen
MAX_ERROR_NOISE = 400.0  # cap on the learned error-count dispersion (variance ratio)


class Baseline:
    def __init__(self, params: DetectionParams) -> None:
        n_windows = len(params.windows_buckets)
        self.params = params
        self.errors = 0.0  # decayed sums
        self.warns = 0.0
        self.events = 0.0
        self.latency = np.zeros(histogram.NUM_BINS, dtype=np.float64)
        prior_weight = 1 - self.alpha ** params.buckets(NOISE_PRIOR_WEIGHT_S)
        self.err_noise = [[prior_weight, prior_weight] for _ in range(n_windows)]  # [weighted sum, weight]
        self.warn_noise = [[prior_weight, prior_weight] for _ in range(n_windows)]
        self.lat_noise = [[prior_weight, prior_weight] for _ in range(n_windows)]
        self.age = 0  # buckets observed since the service was first seen
        self.events_seen = 0

    @property
    def alpha(self) -> float:
        return 0.5 ** (self.params.bucket_s / self.params.baseline_half_life_s)

    # --- reading -----------------------------------------------------------------------------
    def error_rate(self) -> float:
        p = self.params
        rate = (self.errors + p.prior_events * p.prior_error_rate) / (self.events + p.prior_events)
        return min(max(rate, 1e-6), 1 - 1e-6)

    def warning_rate(self) -> float:
        p = self.params
        rate = (self.warns + p.prior_events * p.prior_warning_rate) / (self.events + p.prior_events)
        return min(max(rate, 1e-6), 1 - 1e-6)

    def latency_p95(self) -> float | None:
        if self.latency.sum() < self.params.latency_min_samples:
            return None
        return histogram.quantile(self.latency, self.params.latency_quantile)

    def latency_share_from(self, bin_index: int) -> float:
        """Share of the baseline's requests in bins >= bin_index (0 when there is no history)."""
        total = float(self.latency.sum())
        return float(self.latency[bin_index:].sum()) / total if total > 0 else 0.0

    def error_noise(self, window_index: int) -> float:
        total, weight = self.err_noise[window_index]
        return min(max(total / weight, 1.0), MAX_ERROR_NOISE)

    def warning_noise(self, window_index: int) -> float:
        total, weight = self.warn_noise[window_index]
        return min(max(total / weight, 1.0), MAX_ERROR_NOISE)

    def latency_noise(self, window_index: int) -> float:
        total, weight = self.lat_noise[window_index]
        return min(max(total / weight, 1.0), MAX_ERROR_NOISE)

    @property
    def warm(self) -> bool:
        p = self.params
        return self.age >= p.buckets(p.warmup_s) and self.events_seen >= p.warmup_min_events

    # --- learning ----------------------------------------------------------------------------
    def tick(self, n: int, decay_buckets: int = 1) -> None:
        """Time passes (forgetting applies to every bucket, normal or not)."""
        factor = self.alpha ** decay_buckets
        self.errors *= factor
        self.warns *= factor
        self.events *= factor
        self.latency *= factor
        self.age += decay_buckets
        self.events_seen += n

    def learn_level(self, n: int, errors: int, warns: int, latency_hist: np.ndarray) -> None:
        self.errors += errors
        self.warns += warns
        self.events += n
        self.latency += latency_hist

    def learn_noise(self, err_residuals: list[float | None], warn_residuals: list[float | None],
                    lat_residuals: list[float | None], clip: float | None = None) -> None:
        """Fold one bucket's window deviations into the noise estimates. `clip` caps a deviation at
        that many current noise units, so no single bucket can inflate the noise much."""
        self._fold(self.err_noise, err_residuals, self.error_noise, clip, MAX_ERROR_NOISE)
        self._fold(self.warn_noise, warn_residuals, self.warning_noise, clip, MAX_ERROR_NOISE)
        self._fold(self.lat_noise, lat_residuals, self.latency_noise, clip, MAX_ERROR_NOISE)

    def _fold(self, cells: list[list[float]], residuals: list[float | None], current, clip: float | None,
              cap: float) -> None:
        a = self.alpha
        for i, r in enumerate(residuals):
            if r is None:
                continue
            square = min(r * r, cap)
            if clip is not None:
                square = min(square, clip * clip * current(i))
            cell = cells[i]
            cell[0] = a * cell[0] + (1 - a) * square
            cell[1] = a * cell[1] + (1 - a)

    # --- state -------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"e": self.errors, "w": self.warns, "n": self.events, "lat": histogram.to_sparse_float(self.latency),
                "en": self.err_noise, "wn": self.warn_noise, "ln": self.lat_noise, "age": self.age,
                "seen": self.events_seen}

    @classmethod
    def from_json(cls, data: dict, params: DetectionParams) -> Baseline:
        b = cls(params)
        b.errors, b.warns, b.events = data["e"], data["w"], data["n"]
        b.latency = histogram.from_sparse_float(data["lat"])
        if len(data["en"]) == len(b.err_noise):  # window set unchanged; else restart the noise estimates
            b.err_noise = [list(c) for c in data["en"]]
            b.warn_noise = [list(c) for c in data["wn"]]
            b.lat_noise = [list(c) for c in data["ln"]]
        b.age, b.events_seen = data["age"], data["seen"]
        return b
