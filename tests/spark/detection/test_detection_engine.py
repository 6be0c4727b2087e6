"""Behaviour of the detector on synthetic streams, in plain Python (the same code Spark runs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from detection_synthetic import T0_MS, Episode, Profile, Scenario, events
from engine_input import ingest

from incident_stream.detection.engine import EnvironmentDetector
from incident_stream.detection.linking import DependencyGraph
from incident_stream.detection.params import DetectionParams

PARAMS = DetectionParams()


def run(scenario: Scenario, *, deps: dict | None = None, flapping: frozenset[str] = frozenset(),
        batch_s: float = 2.0, roundtrip: bool = False, seed: int = 0, frame: pd.DataFrame | None = None,
        tiers: dict | None = None) -> list[dict]:
    """Feed the events in micro-batches of `batch_s` seconds; optionally reload the state every batch."""
    frame = events(scenario, seed=seed) if frame is None else frame
    frame = frame.sort_values("t_ms", kind="stable").reset_index(drop=True)
    times = frame["t_ms"].to_numpy()
    graph = DependencyGraph(deps or {})
    det = EnvironmentDetector("prod", PARAMS, graph, tiers, flapping)
    rows: list[dict] = []
    edges = np.arange(T0_MS, T0_MS + int(scenario.duration_s * 1000) + 1, int(batch_s * 1000))
    for lo, hi in zip(edges, [*edges[1:], np.iinfo(np.int64).max], strict=False):
        ingest(det, frame.iloc[np.searchsorted(times, lo):np.searchsorted(times, hi)])
        rows += det.advance(now_ms=int(hi))
        if roundtrip:
            det = EnvironmentDetector.from_bytes(det.to_bytes(), PARAMS, graph, tiers, flapping)
    return rows


def opened(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["update_type"] == "opened"]


def by_incident(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["incident_id"], []).append(r)
    return out


def rel_s(ms: int) -> float:
    return (ms - T0_MS) / 1000


FLEET = {
    "gateway": Profile(200, 0.004, 18, 90, hosts=("gw-1", "gw-2", "gw-3")),
    "orders": Profile(80, 0.004, 35, 140),
    "db": Profile(50, 0.001, 3, 15, hosts=("pg-1",)),
    "chatty": Profile(150, 0.15, 30, 120),  # one error in seven requests is its normal
    "quiet": Profile(2, 0.0, 10, 40),  # two lines a second, never an error
}
DEPS = {"gateway": ["orders"], "orders": ["db"], "db": [], "chatty": [], "quiet": []}


def test_normal_traffic_opens_nothing():
    assert run(Scenario(FLEET, 900), deps=DEPS) == []


def test_baselines_are_per_service_chatty_stays_quiet_and_quiet_pages():
    episodes = [Episode("chatty", 300, 480, error_rate=0.22),  # 15% -> 22%: its own noise level
                Episode("quiet", 300, 480, error_rate=0.3)]  # 0% -> 30%: a handful of errors
    rows = run(Scenario(FLEET, 600, episodes), deps=DEPS)
    assert {r["service"] for r in opened(rows)} == {"quiet"}
    inc = opened(rows)[0]
    assert 300 <= rel_s(inc["opened_at"]) <= 360


def test_a_small_absolute_rise_pages_a_quiet_service():
    episodes = [Episode("db", 300, 480, error_rate=0.04)]  # 0.1% -> 4%: far below chatty's normal 15%
    rows = run(Scenario(FLEET, 600, episodes), deps=DEPS)
    assert [r["service"] for r in opened(rows)] == ["db"]
    assert rel_s(opened(rows)[0]["opened_at"]) - 300 < 10


def test_lifecycle_opened_updated_resolved():
    episodes = [Episode("orders", 200, 400, error_rate=0.35, hosts=("h1",))]
    rows = run(Scenario(FLEET, 600, episodes), deps=DEPS)
    incidents = by_incident(rows)
    assert len(incidents) == 1
    (incident_id, updates), = incidents.items()
    kinds = [r["update_type"] for r in updates]
    assert kinds[0] == "opened" and kinds[-1] == "resolved" and "updated" in kinds[1:-1]
    assert [r["update_seq"] for r in updates] == list(range(len(updates)))
    assert all(r["status"] == "open" for r in updates[:-1]) and updates[-1]["status"] == "resolved"
    first, last = updates[0], updates[-1]
    assert first["service"] == "orders" and first["trigger"] == "error_rate"
    assert 200 <= rel_s(first["opened_at"]) <= 204 and rel_s(first["first_seen"]) <= rel_s(first["opened_at"]) + 1
    assert 0 <= rel_s(last["resolved_at"]) - 400 <= PARAMS.max_window * PARAMS.bucket_s + 5
    assert last["error_count"] > first["error_count"] and last["event_count"] > first["event_count"]
    assert last["affected_hosts"] == ["h1"]  # errors only came from h1
    assert last["top_signatures"][0]["signature"].startswith("ConnectionPoolTimeout")
    assert last["sample_messages"] and last["title"].startswith("orders: error rate")
    assert 0.1 < last["error_rate"] < 0.25 and last["baseline_error_rate"] < 0.01  # one host of two failed
    assert last["severity"] in {"P1", "P2", "P3", "P4"} and last["severity_reasons"]
    assert incident_id.startswith("inc-")


def test_latency_departure_opens_a_latency_incident():
    episodes = [Episode("db", 250, 400, latency_factor=12.0)]
    rows = run(Scenario(FLEET, 500, episodes), deps=DEPS)
    (inc,) = opened(rows)
    assert inc["service"] == "db" and "latency" in inc["trigger"]
    assert inc["latency_p95_ms"] > 5 * inc["baseline_latency_p95_ms"]
    assert 250 <= rel_s(inc["opened_at"]) <= 256
    assert any("p95 latency" in r for r in inc["severity_reasons"])


def test_a_surge_of_warnings_opens_a_warning_incident():
    episodes = [Episode("orders", 250, 400, warn_rate=0.4)]  # a server logging failed handshakes as WARN
    rows = run(Scenario(FLEET, 450, episodes), deps=DEPS)
    (inc,) = opened(rows)
    assert inc["service"] == "orders" and inc["trigger"] == "warning_rate"
    assert inc["top_signatures"][0]["signature"].startswith("TLS handshake error")
    assert 250 <= rel_s(inc["first_seen"]) <= rel_s(inc["opened_at"]) + 1 <= 256


def test_dependent_incidents_link_to_the_deepest_origin():
    episodes = [Episode("db", 200, 400, error_rate=0.4), Episode("orders", 203, 400, error_rate=0.2),
                Episode("gateway", 206, 400, error_rate=0.08)]
    rows = run(Scenario(FLEET, 500, episodes), deps=DEPS, tiers={"db": 1, "orders": 1, "gateway": 1})
    incidents = by_incident(rows)
    latest = {updates[0]["service"]: updates[-1] for updates in incidents.values()}
    assert set(latest) == {"db", "orders", "gateway"}
    db_id = latest["db"]["incident_id"]
    assert latest["gateway"]["origin_incident_id"] == db_id and latest["orders"]["origin_service"] == "db"
    assert latest["db"]["origin_service"] == "db"
    assert set(latest["db"]["linked_incident_ids"]) == {latest["orders"]["incident_id"],
                                                        latest["gateway"]["incident_id"]}
    assert any("dependent service" in r for r in latest["db"]["severity_reasons"])
    assert latest["db"]["severity"] == "P1"


def test_flapping_service_marked_in_the_catalog_does_not_page_for_bursts():
    bursts = [Episode("chatty", s, s + 7, error_rate=0.5) for s in range(120, 900, 45)]
    rows = run(Scenario(FLEET, 900, bursts), deps=DEPS, flapping=frozenset({"chatty"}))
    assert rows == []


def test_flapping_service_still_pages_for_a_lasting_failure():
    episodes = [Episode("chatty", 200, 600, error_rate=0.6)]
    rows = run(Scenario(FLEET, 700, episodes), deps=DEPS, flapping=frozenset({"chatty"}))
    (inc,) = opened(rows)
    assert inc["service"] == "chatty"
    assert rel_s(inc["opened_at"]) >= 200 and rel_s(inc["opened_at"]) + PARAMS.flap_sustain_s <= 600


def test_repeated_short_bursts_are_learned_as_flapping():
    bursts = [Episode("orders", s, s + 3, error_rate=0.6) for s in range(120, 1500, 130)]
    rows = run(Scenario(FLEET, 1500, bursts), deps=DEPS)
    # without a catalog hint the first bursts page; once the service is seen flapping, bursts stop paging
    assert 1 <= len(opened(rows)) <= PARAMS.flap_min_episodes
    assert max(rel_s(r["opened_at"]) for r in opened(rows)) < 120 + 130 * PARAMS.flap_min_episodes


def test_reprocessing_gives_the_same_rows_whatever_the_batching():
    episodes = [Episode("db", 200, 330, error_rate=0.4), Episode("orders", 204, 330, error_rate=0.2)]
    scenario = Scenario(FLEET, 450, episodes)
    frame = events(scenario, seed=3)
    a = run(scenario, deps=DEPS, frame=frame, batch_s=1.0)
    b = run(scenario, deps=DEPS, frame=frame, batch_s=7.0, roundtrip=True)
    shuffled = frame.sample(frac=1.0, random_state=1)  # one batch, in any order
    det = EnvironmentDetector("prod", PARAMS, DependencyGraph(DEPS))
    ingest(det, shuffled)
    c = det.advance(now_ms=0)
    strip = [{k: v for k, v in r.items() if k != "update_time"} for r in a]
    assert a and strip == [{k: v for k, v in r.items() if k != "update_time"} for r in b]
    assert strip == [{k: v for k, v in r.items() if k != "update_time"} for r in c]


def test_events_later_than_the_horizon_are_counted_and_left_out():
    scenario = Scenario({"db": FLEET["db"]}, 120)
    frame = events(scenario)
    det = EnvironmentDetector("prod", PARAMS.with_overrides(late_horizon_s=30), DependencyGraph({}))
    ingest(det, frame[frame.t_ms < T0_MS + 60_000])
    det.advance(now_ms=0)
    late = frame[frame.t_ms < T0_MS + 10_000]  # about 50 s behind the clock: beyond the 30 s horizon
    ingest(det, late)
    assert det.advance(now_ms=0) == []
    assert det.late_events == len(late)
    assert det.late_counts == {"db": [0, len(late)]}
    assert not any(b < det.next_bucket for _, b in det.pending)


def test_during_warm_up_only_a_floor_breach_pages():
    # 8% errors is 20x this service's normal but under its tier's 20% floor: no baseline yet, no page
    moderate = run(Scenario(FLEET, 200, [Episode("orders", 5, 40, error_rate=0.08)]), deps=DEPS)
    assert opened(moderate) == []
    # half of the requests failing is beyond the floor: paged within seconds, baseline or not
    gross = run(Scenario(FLEET, 200, [Episode("orders", 5, 40, error_rate=0.5)]), deps=DEPS)
    (inc,) = opened(gross)
    assert inc["service"] == "orders" and rel_s(inc["opened_at"]) <= 8
    assert any("floor" in r for r in inc["severity_reasons"])


def test_state_version_mismatch_is_a_clear_error():
    det = EnvironmentDetector("prod", PARAMS, DependencyGraph({}))
    data = det.to_json()
    data["v"] = 999
    with pytest.raises(ValueError, match="fresh checkpoint"):
        EnvironmentDetector.from_json(data, PARAMS, DependencyGraph({}))


def opened_when(scenario: Scenario, params: DetectionParams) -> tuple[float, dict]:
    """(end of the 1-second micro-batch that emitted the first opened row, in scenario seconds; the row)."""
    frame = events(scenario).sort_values("t_ms", kind="stable").reset_index(drop=True)
    times = frame["t_ms"].to_numpy()
    det = EnvironmentDetector("prod", params, DependencyGraph(DEPS))
    for end_ms in range(T0_MS + 1000, T0_MS + int(scenario.duration_s * 1000) + 1, 1000):
        ingest(det, frame.iloc[np.searchsorted(times, end_ms - 1000):np.searchsorted(times, end_ms)])
        rows = opened(det.advance(now_ms=end_ms))
        if rows:
            return rel_s(end_ms), rows[0]
    raise AssertionError("no incident opened")


def test_a_severe_failure_opens_a_bucket_sooner_a_moderate_one_waits_for_confirmation():
    confirm_only = PARAMS.with_overrides(fast_open_ratio=float("inf"))
    severe = Scenario(FLEET, 400, [Episode("orders", 300.2, 400, error_rate=0.9)])
    fast_s, fast = opened_when(severe, PARAMS)
    slow_s, slow = opened_when(severe, confirm_only)
    assert fast["anomaly_score"] >= PARAMS.fast_open_score
    assert fast_s == slow_s - PARAMS.bucket_s  # one bucket sooner...
    assert (fast["incident_id"], fast["opened_at"]) == (slow["incident_id"], slow["opened_at"])  # ...same incident
    moderate = Scenario(FLEET, 400, [Episode("db", 300.2, 400, error_rate=0.04)])
    moderate_s, row = opened_when(moderate, PARAMS)
    assert row["anomaly_score"] < PARAMS.fast_open_score
    assert (moderate_s, row["incident_id"]) == (opened_when(moderate, confirm_only)[0], row["incident_id"])


def test_a_bucket_at_the_fast_score_does_not_bypass_a_flapping_service_sustain_time():
    episodes = [Episode("chatty", 200, 210, error_rate=0.95)]
    rows = run(Scenario(FLEET, 400, episodes), deps=DEPS, flapping=frozenset({"chatty"}))
    assert rows == []
