"""The per-service baseline: what "normal" looks like for this service, learned from its own history.

* error rate and warning rate: exponentially decayed sums of errors, warnings and events (half-life
  `baseline_half_life_s`), shrunk towards a prior for services with little history;
* latency: an exponentially decayed latency histogram (its 95th percentile, and the share of
  requests above any threshold);
* noise: for each test and window, how much more the standardised deviation r swings in normal times
  than chance alone would make it swing (E[r^2] = 1). The excess is learned per event, as an
  exponentially weighted mean of (r^2 - 1) / n, and the noise of a window of n events is
  1 + excess * n: a rate that naturally wanders from second to second gives an excess r^2 that grows
  with the traffic, so a service whose traffic rises fivefold keeps the same sensitivity to a given
  departure of its rate instead of becoming five times as touchy. A service whose error count naturally
  swings widely (bursty, chatty) learns a large noise and needs a larger departure to page; a steady,
  quiet one learns a small noise.

During the warm-up every bucket is learned at once. After it, learning is delayed: buckets are
queued in blocks of BLOCK_BUCKETS and learned only `baseline_guard_s` later, and only if every bucket
of the block was judged normal (no incident, no candidate, below hold level). When an incident opens,
the queue is thrown away: the slow onset of an incident (a leak, a ramp) that stayed under the
thresholds for a while never becomes the new normal.
"""

from __future__ import annotations

import numpy as np

from incident_stream.detection import histogram
from incident_stream.detection.params import DetectionParams

Residual = tuple[float, int]  # (standardised deviation of a window, events it was computed on)

NOISE_PRIOR_WEIGHT_S = 30.0  # the noise estimates start as if 30 s of unit-noise history had been seen
NOISE_MODEL = 2  # noise learned as excess per event (1: a plain ratio); older state restarts its estimates
MAX_ERROR_NOISE = 400.0  # cap on the learned error-count dispersion (variance ratio)
BLOCK_BUCKETS = 10


class Block:
    """Buckets waiting to be learned: sums of what they would teach, and whether all were normal."""

    def __init__(self, block_id: int, n_windows: int) -> None:
        self.block_id = block_id
        self.clean = True
        self.n = self.errors = self.warns = 0
        self.latency = histogram.empty()
        # err, warn, lat: [sum of excess per event, count]
        self.noise = [[[0.0, 0] for _ in range(n_windows)] for _ in range(3)]

    def add(self, n: int, errors: int, warns: int, latency: np.ndarray, excesses: list[list[float | None]]) -> None:
        self.n += n
        self.errors += errors
        self.warns += warns
        self.latency = self.latency + latency
        for kind, per_window in enumerate(excesses):
            for i, excess in enumerate(per_window):
                if excess is not None:
                    self.noise[kind][i][0] += excess
                    self.noise[kind][i][1] += 1

    def to_json(self) -> list:
        return [self.block_id, self.clean, self.n, self.errors, self.warns, histogram.to_sparse(self.latency),
                self.noise]

    @classmethod
    def from_json(cls, data: list) -> Block:
        block = cls(data[0], len(data[6][0]))
        block.clean, block.n, block.errors, block.warns = data[1], data[2], data[3], data[4]
        block.latency = histogram.from_sparse(data[5])
        block.noise = [[list(cell) for cell in kind] for kind in data[6]]
        return block


class Baseline:
    def __init__(self, params: DetectionParams) -> None:
        self.params = params
        self.errors = 0.0  # decayed sums
        self.warns = 0.0
        self.events = 0.0
        self.latency = np.zeros(histogram.NUM_BINS, dtype=np.float64)
        self.err_noise = self._prior_noise()  # per window: [weighted sum of excess per event, weight]
        self.warn_noise = self._prior_noise()
        self.lat_noise = self._prior_noise()
        self.age = 0  # buckets observed since the service was first seen
        self.events_seen = 0
        self.block: Block | None = None  # being filled
        self.queue: list[Block] = []  # full, waiting for the guard time to pass
        # Read on every bucket, changed only by learning (forgetting scales every bin alike): kept.
        self._lat_q: float | None = None
        self._lat_tail: list[float] = [0.0] * (histogram.NUM_BINS + 1)

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
        return self._lat_q

    def latency_share_from(self, bin_index: int) -> float:
        """Share of the baseline's requests in bins >= bin_index (0 when there is no history)."""
        return self._lat_tail[min(max(bin_index, 0), histogram.NUM_BINS)]

    def _latency_changed(self) -> None:
        self._lat_q = histogram.quantile(self.latency, self.params.latency_quantile)
        self._lat_tail = histogram.tail_shares(self.latency)

    def error_noise(self, window_index: int, n: int) -> float:
        return _noise(self.err_noise[window_index], n)

    def warning_noise(self, window_index: int, n: int) -> float:
        return _noise(self.warn_noise[window_index], n)

    def latency_noise(self, window_index: int, n: int) -> float:
        return _noise(self.lat_noise[window_index], n)

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

    def learn_now(self, n: int, errors: int, warns: int, latency_hist: np.ndarray,
                  residuals: list[list[Residual | None]]) -> None:
        """Learn one bucket at once (warm-up): level, and noise without any cap."""
        self._learn_level(n, errors, warns, latency_hist)
        a = self.alpha
        for cells, per_window in zip(self._noise_cells(), residuals, strict=True):
            for cell, residual in zip(cells, per_window, strict=True):
                if residual is not None and residual[1] > 0:
                    r, events = residual
                    cell[0] = a * cell[0] + (1 - a) * (min(r * r, MAX_ERROR_NOISE) - 1) / events
                    cell[1] = a * cell[1] + (1 - a)

    def observe(self, bucket: int, n: int, errors: int, warns: int, latency_hist: np.ndarray,
                residuals: list[list[Residual | None]], normal: bool) -> None:
        """Queue one bucket for delayed learning (after the warm-up). An abnormal bucket spoils its block."""
        block_id = bucket // BLOCK_BUCKETS
        if self.block is not None and self.block.block_id != block_id:
            self.queue.append(self.block)
            self.block = None
        if self.block is None:
            self.block = Block(block_id, len(self.params.windows_buckets))
        if not normal:
            self.block.clean = False
        elif self.block.clean:
            clip = self.params.hold_score ** 2
            excesses = [[None if res is None or res[1] <= 0
                         else (min(res[0] * res[0], clip * current(i, res[1]), MAX_ERROR_NOISE) - 1) / res[1]
                         for i, res in enumerate(per_window)]
                        for per_window, current in zip(residuals, (self.error_noise, self.warning_noise,
                                                                   self.latency_noise), strict=True)]
            self.block.add(n, errors, warns, latency_hist, excesses)
        guard_blocks = max(1, self.params.buckets(self.params.baseline_guard_s) // BLOCK_BUCKETS)
        while self.queue and self.queue[0].block_id <= block_id - guard_blocks - 1:
            self._learn_block(self.queue.pop(0))

    def discard_recent(self) -> None:
        """Forget what was queued: it may hold the onset of the incident that just opened."""
        self.queue.clear()
        if self.block is not None:
            self.block.clean = False

    def flush(self) -> None:
        """Learn every clean queued block now (a long gap in the data has passed)."""
        if self.block is not None:
            self.queue.append(self.block)
            self.block = None
        while self.queue:
            self._learn_block(self.queue.pop(0))

    def _learn_block(self, block: Block) -> None:
        if not block.clean:
            return
        self._learn_level(block.n, block.errors, block.warns, block.latency)
        a = self.alpha
        for cells, kind in zip(self._noise_cells(), block.noise, strict=True):
            for cell, (total, count) in zip(cells, kind, strict=True):
                if count:
                    keep = a ** count
                    cell[0] = keep * cell[0] + (1 - keep) * total / count
                    cell[1] = keep * cell[1] + (1 - keep)

    def _learn_level(self, n: int, errors: int, warns: int, latency_hist: np.ndarray) -> None:
        self.errors += errors
        self.warns += warns
        self.events += n
        if latency_hist.any():
            self.latency += latency_hist
            self._latency_changed()

    def _noise_cells(self) -> tuple[list[list[float]], ...]:
        return self.err_noise, self.warn_noise, self.lat_noise

    def _prior_noise(self) -> list[list[float]]:
        """No excess yet (noise 1), weighted as NOISE_PRIOR_WEIGHT_S of history."""
        weight = 1 - self.alpha ** self.params.buckets(NOISE_PRIOR_WEIGHT_S)
        return [[0.0, weight] for _ in self.params.windows_buckets]

    # --- state -------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"e": self.errors, "w": self.warns, "n": self.events, "lat": histogram.to_sparse_float(self.latency),
                "en": self.err_noise, "wn": self.warn_noise, "ln": self.lat_noise, "nm": NOISE_MODEL, "age": self.age,
                "seen": self.events_seen, "block": self.block.to_json() if self.block else None,
                "queue": [b.to_json() for b in self.queue], "lq": self._lat_q, "lt": self._lat_tail}

    @classmethod
    def from_json(cls, data: dict, params: DetectionParams) -> Baseline:
        b = cls(params)
        b.errors, b.warns, b.events = data["e"], data["w"], data["n"]
        b.latency = histogram.from_sparse_float(data["lat"])
        same_noise = len(data["en"]) == len(b.err_noise) and data.get("nm") == NOISE_MODEL
        if same_noise:  # same windows and noise model; else restart the noise estimates
            b.err_noise = [list(c) for c in data["en"]]
            b.warn_noise = [list(c) for c in data["wn"]]
            b.lat_noise = [list(c) for c in data["ln"]]
        b.age, b.events_seen = data["age"], data["seen"]
        if "lq" in data:
            b._lat_q, b._lat_tail = data["lq"], list(data["lt"])
        else:
            b._latency_changed()
        if same_noise:
            b.block = Block.from_json(data["block"]) if data["block"] else None
            b.queue = [Block.from_json(x) for x in data["queue"]]
        return b


def _noise(cell: list[float], n: int) -> float:
    """Noise of a window of n events: 1 + the learned excess per event * n (at least 1, capped)."""
    total, weight = cell
    return min(max(1.0 + total / weight * n, 1.0), MAX_ERROR_NOISE)
