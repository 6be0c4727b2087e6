"""Unit tests of the detector's building blocks: histograms, buckets, statistics, severity, linking."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from detection_synthetic import T0_MS, Profile, Scenario, aggregate, events
from hypothesis import given, settings
from hypothesis import strategies as st

from incident_contracts.settings import Settings
from incident_stream.detection import histogram
from incident_stream.detection.anomaly import (
    ANOMALOUS,
    ELEVATED,
    NORMAL,
    binomial_score,
    poisson_score,
    silence_test,
    window_sums,
)
from incident_stream.detection.baseline import Baseline
from incident_stream.detection.buckets import BucketAgg
from incident_stream.detection.incident import shorten
from incident_stream.detection.linking import DependencyGraph, Span, link
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.severity import SeverityInput, assess, parse_tier
from incident_stream.detection.stream import params_from_settings


# --- histogram -------------------------------------------------------------------------------------
def test_histogram_quantile_is_within_a_bin_of_the_exact_value():
    rng = np.random.default_rng(7)
    values = 20 * np.exp(rng.normal(0, 1.0, 50_000))
    hist = np.bincount(histogram.bin_index(values), minlength=histogram.NUM_BINS)
    for q in (0.5, 0.95, 0.99):
        exact = float(np.quantile(values, q))
        assert abs(math.log(histogram.quantile(hist, q) / exact)) < math.log(2) / 4


def test_histogram_edges_and_empty():
    assert histogram.quantile(histogram.empty(), 0.95) is None
    idx = histogram.bin_index(np.array([0.0, 0.1, 1e12]))
    assert idx.tolist() == [0, 0, histogram.NUM_BINS - 1]
    hist = histogram.empty()
    hist[[3, 40]] = [2, 5]
    assert np.array_equal(histogram.from_sparse(histogram.to_sparse(hist)), hist)


# --- buckets -----------------------------------------------------------------------------------------
def _small_stream(seed: int = 1) -> pd.DataFrame:
    scenario = Scenario({"a": Profile(40, 0.2, hosts=("h1", "h2", "h3")), "b": Profile(10, 0.05)}, 12)
    return events(scenario, seed=seed)


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=599), max_size=6), shuffle_seed=st.integers(0, 1000))
def test_buckets_do_not_depend_on_how_events_are_split(cuts, shuffle_seed):
    frame = _small_stream()
    frame = frame.sample(frac=1.0, random_state=shuffle_seed).reset_index(drop=True)  # any order
    whole = aggregate(frame, 1000, 5)
    merged: dict = {}
    bounds = [0, *sorted(set(cuts)), len(frame)]
    for lo, hi in itertools.pairwise(bounds):
        for key, agg in aggregate(frame.iloc[lo:hi], 1000, 5).items():
            if key in merged:
                merged[key].merge(agg, 5)
            else:
                merged[key] = agg
    assert sorted(whole) == sorted(merged)
    for key in whole:
        assert whole[key].finalize().to_json() == merged[key].finalize().to_json()


def test_bucket_contents():
    frame = _small_stream()
    aggs = aggregate(frame, 1000, 3)
    a0 = aggs[("a", T0_MS // 1000)]
    sel = frame[(frame.service == "a") & (frame.t_ms < T0_MS + 1000)]
    assert a0.n == len(sel) and a0.errors == int(sel.is_error.sum())
    assert a0.lat_n == len(sel)
    assert sum(v[4] for v in a0.sigs.values()) == a0.errors and sum(v[1] for v in a0.sigs.values()) == a0.errors
    assert sum(a0.hosts.values()) == a0.errors
    assert len(a0.slow) == 3 and a0.slow[0][0] == pytest.approx(sel.latency_ms.max())
    assert a0.first_err == int(sel[sel.is_error].t_ms.min())
    assert BucketAgg.from_json(a0.to_json()).to_json() == a0.to_json()


# --- statistics --------------------------------------------------------------------------------------
def test_poisson_shortfall_score_and_silence_levels():
    assert poisson_score(100, 100) == pytest.approx(0.0, abs=1e-9)
    assert poisson_score(0, 100) > poisson_score(10, 100) > poisson_score(50, 100) > 0 > poisson_score(150, 100)
    params = DetectionParams()
    usual = [BucketAgg(n=30)] * 20
    assert silence_test(usual + [BucketAgg(n=0)] * 10, 30.0, params).level == ANOMALOUS  # 10 s of nothing
    assert silence_test(usual + [BucketAgg(n=12)] * 10, 30.0, params).level == ELEVATED  # 40% of usual
    assert silence_test(usual + [BucketAgg(n=25)] * 10, 30.0, params).level == NORMAL
    assert silence_test([BucketAgg(n=0)] * 30, 1.0, params).level == NORMAL  # too few events due to tell


def test_binomial_score_sign_and_monotonicity():
    assert binomial_score(10, 1000, 0.01) == pytest.approx(0.0, abs=1e-9)
    assert binomial_score(5, 1000, 0.01) < 0 < binomial_score(15, 1000, 0.01)
    scores = [binomial_score(e, 1000, 0.01) for e in range(10, 100, 10)]
    assert scores == sorted(scores)
    assert binomial_score(0, 0, 0.01) == 0.0
    # five errors where 0.05 were expected is about a six-sigma event
    assert 5.5 < binomial_score(5, 50, 0.001) < 6.5


def test_noise_is_learned_per_event_so_it_scales_with_the_traffic():
    params = DetectionParams()
    baseline = Baseline(params)
    assert baseline.error_noise(0, 1000) == 1.0  # nothing learned: chance alone
    no_latency = histogram.empty()
    windows = len(params.windows_buckets)
    for _ in range(3000):  # normal windows of 1,000 events whose squared deviation is 3: excess 2 / 1,000 events
        baseline.learn_now(1000, 10, 0, no_latency,
                           [[(math.sqrt(3.0), 1000)] * windows, [None] * windows, [None] * windows])
    assert baseline.error_noise(0, 1000) == pytest.approx(3.0, rel=0.02)
    assert baseline.error_noise(0, 5000) == pytest.approx(11.0, rel=0.02)  # five times the traffic
    assert baseline.error_noise(0, 10) == pytest.approx(1.02, rel=0.01)
    assert baseline.warning_noise(0, 1000) == 1.0  # other tests keep their own estimates
    restored = Baseline.from_json(baseline.to_json(), params)
    assert restored.error_noise(2, 5000) == baseline.error_noise(2, 5000)
    older = {k: v for k, v in baseline.to_json().items() if k != "nm"}  # state of the previous noise model
    assert Baseline.from_json(older, params).error_noise(0, 5000) == 1.0  # its estimates restart
    fewer = DetectionParams(windows_buckets=params.windows_buckets[1:])  # state saved with other windows
    assert Baseline.from_json(baseline.to_json(), fewer).error_noise(0, 5000) == 1.0


def test_window_sums_take_the_newest_buckets():
    ring = [BucketAgg(n=10, errors=i) for i in range(5)]
    w2, w4, w9 = window_sums(ring, (2, 4, 9))
    assert (w2.n, w2.errors) == (20, 3 + 4)
    assert (w4.n, w4.errors) == (40, 1 + 2 + 3 + 4)
    assert (w9.n, w9.errors) == (50, 10)  # a window longer than the ring holds all of it


# --- severity ----------------------------------------------------------------------------------------
def _facts(**kw) -> SeverityInput:
    base = dict(tier=3, error_rate=0.01, baseline_error_rate=0.005, latency_p95_ms=None,
                baseline_latency_p95_ms=None, dependents_in_incident=(), duration_s=60)
    base.update(kw)
    return SeverityInput(**base)


def test_severity_levels_and_reasons():
    level, reasons = assess(_facts())
    assert level == "P4" and reasons
    level, reasons = assess(_facts(tier=1, error_rate=0.4, dependents_in_incident=("a", "b")))
    assert level == "P1"
    assert any("tier 1" in r for r in reasons) and any("40%" in r for r in reasons)
    assert any("2 dependent" in r for r in reasons)
    level, reasons = assess(_facts(tier=2, latency_p95_ms=900, baseline_latency_p95_ms=100))
    assert level == "P3" and any("9.0x" in r for r in reasons)
    level, _ = assess(_facts(tier=1, error_rate=0.06, duration_s=600))
    assert level == "P2"


def test_severity_escalates_with_the_size_share_and_duration_of_the_failure():
    # a service missing from the catalog (default tier 2) at 22% errors, 21x its 1.04% baseline
    discovered = dict(tier=2, discovered=True, error_rate=0.22, baseline_error_rate=0.0104)
    level, reasons = assess(_facts(**discovered, duration_s=300))
    assert level == "P3"  # 1 (tier) + 1 (share >= 5%) + 1 (>= 10x baseline): not the lowest, P4
    assert reasons[0] == "discovered service (not in the catalog): treated as tier 2"
    assert "error rate 22% = 21x baseline 1.0% for 5 min" in reasons
    level, reasons = assess(_facts(**discovered, duration_s=900))
    assert level == "P2" and "error rate 22% = 21x baseline 1.0% for 15 min" in reasons  # duration: one more
    assert "anomalous for 15 min" in reasons
    # the size of the departure: the same rate only 4x its baseline misses the departure point
    assert assess(_facts(tier=2, error_rate=0.22, baseline_error_rate=0.055, duration_s=900))[0] == "P3"
    # the share of traffic failing: half of the requests instead of a fifth
    assert assess(_facts(**{**discovered, "error_rate": 0.55}, duration_s=300))[0] == "P2"
    # the blast radius: one dependent service failing with it
    level, reasons = assess(_facts(**discovered, duration_s=300, dependents_in_incident=("gateway",)))
    assert level == "P2" and "1 dependent service(s) failing with it: gateway" in reasons
    # an hour counts twice: a tier-3 service at 6% (12x) is P3 after 15 minutes, P2 after an hour
    assert assess(_facts(tier=3, error_rate=0.06, baseline_error_rate=0.005, duration_s=900))[0] == "P3"
    level, reasons = assess(_facts(tier=3, error_rate=0.06, baseline_error_rate=0.005, duration_s=3600))
    assert level == "P2" and "anomalous for 60 min" in reasons


def test_parse_tier():
    assert [parse_tier(v) for v in (1, "2", "tier-3", "T1", None, "gold")] == [1, 2, 3, 1, None, None]


# --- linking -----------------------------------------------------------------------------------------
GRAPH = DependencyGraph({"edge": ["orders", "search"], "orders": ["db"], "search": ["cache"], "db": [],
                         "cache": [], "lonely": []})


def test_link_points_to_the_deepest_dependency_in_incident():
    spans = [Span("i-edge", "edge", 10_000, 90_000), Span("i-orders", "orders", 5_000, 90_000),
             Span("i-db", "db", 0, 80_000), Span("i-lonely", "lonely", 0, 90_000)]
    links = link(spans, GRAPH, 60_000)
    assert links["i-edge"].origin_incident_id == "i-db"
    assert links["i-orders"].origin_service == "db"
    assert links["i-db"].origin_service == "db"  # the root of a group names itself
    assert links["i-db"].linked_incident_ids == ("i-edge", "i-orders")
    assert links["i-db"].dependents_in_incident == ("edge", "orders")
    assert links["i-edge"].linked_incident_ids == ("i-db", "i-orders")
    assert links["i-lonely"].origin_service is None and links["i-lonely"].linked_incident_ids == ()


def test_link_needs_overlap_in_time_and_a_dependency_path():
    spans = [Span("i-edge", "edge", 0, 10_000), Span("i-db", "db", 500_000, 600_000),
             Span("i-cache", "cache", 0, 10_000), Span("i-orders", "orders", 0, 10_000)]
    links = link(spans, GRAPH, 60_000)
    assert links["i-db"].linked_incident_ids == ()  # too late to be related
    assert links["i-orders"].linked_incident_ids == ("i-edge",)  # cache is not below orders
    assert links["i-edge"].origin_service == "cache"  # two roots: earliest, then by name
    assert set(links["i-edge"].linked_incident_ids) == {"i-cache", "i-orders"}


# --- params ------------------------------------------------------------------------------------------
def test_params_validation():
    with pytest.raises(ValueError, match="hysteresis"):
        DetectionParams(open_score=2, hold_score=3)
    with pytest.raises(ValueError, match="unknown"):
        DetectionParams().with_overrides(nope=1)
    assert DetectionParams().with_overrides(quiet_period_s=10).buckets(10) == 10
    with pytest.raises(ValueError, match="fast_open_ratio"):
        DetectionParams(fast_open_ratio=0.5)
    assert DetectionParams(open_score=5, fast_open_ratio=2).fast_open_score == 10


def test_params_from_settings_take_the_detection_settings():
    assert params_from_settings(Settings(_env_file=None)) == DetectionParams()  # type: ignore[call-arg]
    tuned = params_from_settings(Settings(_env_file=None, detection_allowed_lateness_seconds=0.5,  # type: ignore[call-arg]
                                          detection_open_score=8, detection_quiet_period_seconds=30))
    assert (tuned.allowed_lateness_s, tuned.open_score, tuned.quiet_period_s) == (0.5, 8, 30)
    assert tuned.lateness_ms == 500 and tuned.fast_open_score == 24


def test_shorten_cuts_on_a_word_boundary():
    text = "connection refused by <ip>:<num> while calling payments-db for order <id>"
    assert shorten(text, 200) == text
    assert shorten(text, 40) == "connection refused by <ip>:<num> while\u2026"
    assert shorten("x" * 50, 10) == "x" * 9 + "\u2026"  # one long word: cut inside it


@given(st.text(alphabet=st.sampled_from("ab <>:/-"), max_size=300), st.integers(min_value=2, max_value=200))
def test_shorten_never_exceeds_the_limit_and_keeps_a_prefix(text, limit):
    short = shorten(text, limit)
    assert len(short) <= limit
    if short == text:
        assert len(text) <= limit
    else:
        assert short.endswith("\u2026") and text.startswith(short[:-1])
