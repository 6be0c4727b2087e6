"""Tunables of the incident detector, with the defaults the README explains."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class DetectionParams:
    """Every threshold of the detector in one place. Times are event time (seconds)."""

    # --- time ------------------------------------------------------------------------------
    bucket_s: float = 1.0  # event-time bucket: the unit of aggregation and of decisions
    allowed_lateness_s: float = 2.0  # a bucket is final once event time has moved this far past its end
    late_horizon_s: float = 600.0  # events later than that (a host clock behind, a shipper that batches) are
    # counted in the oldest bucket still open, at their arrival, when at most this far behind the clock;
    # older ones are left out and counted per service (a replay of old logs into a live environment)
    arrival_tolerance_s: float = 1.0  # an event dated later than its arrival (Kafka timestamp) plus this is a
    # host clock ahead: it is taken at its arrival plus this, and counted per service (view.py). Keep it at or
    # below allowed_lateness_s, so such events never make the others late
    # --- baseline --------------------------------------------------------------------------
    baseline_half_life_s: float = 600.0  # exponential forgetting of the per-service baseline
    baseline_guard_s: float = 120.0  # normal buckets are learned this late (dropped if an incident opens)
    warmup_s: float = 60.0  # a service is watched this long before it may page
    warmup_min_events: int = 30
    prior_error_rate: float = 0.01  # what a service with little history is assumed to have
    prior_warning_rate: float = 0.02
    prior_events: float = 200.0  # weight of that prior, in events
    # --- anomaly tests (each run on several trailing windows) ------------------------------
    windows_buckets: tuple[int, ...] = (1, 2, 10, 30)  # the newest bucket alone sees an onset undiluted
    open_score: float = 6.0  # significance (in noise units) needed to open
    hold_score: float = 3.0  # hysteresis: an open incident stays "active" above this
    min_errors: int = 5  # fewest errors in a window that can open an error-rate incident
    error_rate_ratio: float = 3.0  # the window's error rate must be this many times the baseline...
    error_rate_min_delta: float = 0.02  # ...and this much above it, absolute
    hold_error_rate_ratio: float = 1.5
    min_warnings: int = 10  # the same test on warning lines (a service that logs trouble as WARN)
    warning_rate_ratio: float = 3.0
    warning_rate_min_delta: float = 0.03  # a warning surge in a busy service is diluted by its other lines
    latency_quantile: float = 0.95
    latency_min_samples: int = 20
    latency_ratio: float = 2.0  # "slow" = this many times the baseline p95...
    latency_min_delta_ms: float = 10.0  # ...and at least this much above it
    hold_latency_ratio: float = 1.3
    min_slow_requests: int = 5
    # --- absolute floors (floors.py; the limits themselves are per tier in the catalog) -------
    floor_confidence_z: float = 2.0  # a window breaches a floor when it is this sure (binomial score) to be beyond it
    default_tier: int = 2  # tier of a service that is neither in the catalog nor tiered by its events
    # --- silence: a service whose volume drops to near zero against its own usual volume -----
    silence_ratio: float = 0.1  # at most this share of the expected events arrived: silent (open level)...
    silence_hold_ratio: float = 0.5  # ...at most this share: still silent enough to hold an open silence
    silence_min_expected: float = 50.0  # a window in which fewer events were due cannot tell silence
    silence_min_window_s: float = 10.0  # only windows this long or longer judge volume (bursty traffic)
    silence_environment_share: float = 0.5  # this share of the judged services silent at once (and 2+):
    # the environment's logs stopped coming (a pipeline problem), not an incident per service
    # --- lifecycle -------------------------------------------------------------------------
    confirm_buckets: int = 2  # consecutive anomalous buckets before an incident opens...
    fast_open_ratio: float = 3.0  # ...unless one scores this many times open_score: it opens at once
    quiet_period_s: float = 60.0  # resolve after this long without an active bucket
    update_interval_s: float = 30.0  # an open incident reports at least this often while it changes
    flap_window_s: float = 1800.0  # flap detection looks back this far...
    flap_min_episodes: int = 3  # ...and calls a service flapping after this many short episodes
    flap_episode_max_s: float = 120.0  # episodes shorter than this count as flaps
    flap_sustain_s: float = 180.0  # a flapping service opens only when an anomaly lasts this long
    # (services marked `flapping: true` in the catalog are treated as flapping from the start)
    link_slack_s: float = 60.0  # incidents this close in time can be linked
    # --- output ----------------------------------------------------------------------------
    max_signatures: int = 5
    max_samples: int = 5
    max_hosts: int = 20
    slowest_kept: int = 5
    message_max_chars: int = 300

    def __post_init__(self) -> None:
        problems = []
        if self.bucket_s <= 0:
            problems.append("bucket_s must be > 0")
        if self.allowed_lateness_s < 0:
            problems.append("allowed_lateness_s must be >= 0")
        if self.late_horizon_s < 0:
            problems.append("late_horizon_s must be >= 0")
        if self.arrival_tolerance_s < 0:
            problems.append("arrival_tolerance_s must be >= 0")
        if not self.windows_buckets or min(self.windows_buckets) < 1:
            problems.append("windows_buckets needs at least one window of >= 1 bucket")
        if self.hold_score > self.open_score:
            problems.append("hold_score must not exceed open_score (hysteresis)")
        if self.fast_open_ratio < 1:
            problems.append("fast_open_ratio must be at least 1")
        if self.confirm_buckets < 1:
            problems.append("confirm_buckets must be >= 1")
        if self.default_tier not in (1, 2, 3):
            problems.append("default_tier must be 1, 2 or 3")
        if not 0 < self.latency_quantile < 1:
            problems.append("latency_quantile must be between 0 and 1")
        if problems:
            raise ValueError("invalid DetectionParams: " + "; ".join(problems))

    # --- derived, in buckets/milliseconds ------------------------------------------------------
    @property
    def bucket_ms(self) -> int:
        return round(self.bucket_s * 1000)

    @property
    def fast_open_score(self) -> float:
        """A bucket scoring this much opens an incident without waiting for confirmation."""
        return self.fast_open_ratio * self.open_score

    @property
    def lateness_ms(self) -> int:
        return round(self.allowed_lateness_s * 1000)

    @property
    def late_horizon_ms(self) -> int:
        return round(self.late_horizon_s * 1000)

    @property
    def arrival_tolerance_ms(self) -> int:
        return round(self.arrival_tolerance_s * 1000)

    @property
    def watermark_delay_ms(self) -> int:
        """Spark's watermark delay on the partial buckets. Spark drops no row behind it (stream.py leaves it
        no column to judge them by: the detector decides what is too late, and counts it), so it is only
        the clock of an environment that sends nothing: the newest event time less the allowed lateness."""
        return self.lateness_ms

    @property
    def watermark_shift_ms(self) -> int:
        """Spark's watermark plus this = the newest event time seen minus the allowed lateness: the clock
        that closes the buckets of an environment that sends nothing (processor.py)."""
        return self.watermark_delay_ms - self.lateness_ms

    def buckets(self, seconds: float) -> int:
        """A duration in whole buckets (at least one)."""
        return max(1, round(seconds / self.bucket_s))

    @property
    def max_window(self) -> int:
        return max(self.windows_buckets)

    def with_overrides(self, **overrides: object) -> DetectionParams:
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown DetectionParams fields: {sorted(unknown)}")
        return replace(self, **overrides)
