"""The evaluation shapes (detection_shapes.py) through the offline detector: what pages, how severe, how soon.

One run of every shape (about 20 s of CPU in all), shared by the tests of this module.
"""

from __future__ import annotations

import pytest
from detection_shapes import ShapeResult, run_all, shapes
from detection_synthetic import T0_MS, Episode, Profile, Scenario, events
from engine_input import ingest

from incident_stream.detection.engine import EnvironmentDetector
from incident_stream.detection.linking import DependencyGraph
from incident_stream.detection.params import DetectionParams

# sharp onsets page within this much event time of their start (confirmation, lateness, micro-batch)
SHARP_S = 15.0
SLOW_BURN_S = 240.0  # the ramp reaches ~3x the baseline (1.4%) after about 1.5 minutes
NOT_YET: set[str] = set()  # shapes expected to page that the detector does not page yet (none)


@pytest.fixture(scope="module")
def results() -> dict[str, ShapeResult]:
    return {r.name: r for r in run_all(seed=0)}


@pytest.mark.parametrize("name", [s.name for s in shapes() if s.name not in NOT_YET])
def test_shape_pages_what_it_must_and_nothing_else(results, name):
    r = results[name]
    assert r.found == r.expected, f"{name}: missed an expected page"
    assert r.unexpected == [], f"{name}: paged where nothing was expected: {r.unexpected}"
    assert r.precision == 1.0
    assert r.band_right == r.expected, f"{name}: severity {r.severities} outside its band"
    bound = SLOW_BURN_S if name == "slow_burn" else SHARP_S
    assert all(0 <= s <= bound for s in r.latency_s.values()), f"{name}: detection latency {r.latency_s}"


def test_a_service_going_silent_opens_a_silence_incident_and_a_silent_environment_none(results):
    rows = [r for r in results["service_silent"].rows if r["service"] == "db"]
    assert rows and rows[0]["trigger"] == "silence" and rows[0]["update_type"] == "opened"
    assert any(reason.startswith("traffic ") and "of its usual volume" in reason
               for reason in rows[-1]["severity_reasons"])
    assert results["environment_silent"].detected == 0  # the pipeline stopped: not one incident per service


def test_a_service_quiet_by_schedule_and_a_batch_job_that_stops_page_nothing(results):
    assert results["quiet_by_schedule"].rows == []


def test_surges_alone_page_nothing(results):
    assert results["traffic_surge"].detected == 0
    assert [r["service"] for r in results["deploy_during_surge"].rows if r["update_type"] == "opened"] == ["orders"]


def test_chronic_failure_is_one_incident_not_a_new_normal(results):
    opened = [r for r in results["chronic_errors"].rows if r["update_type"] == "opened"]
    assert [r["service"] for r in opened] == ["search"]
    assert opened[0]["opened_at"] - T0_MS <= 10_000  # from its first seconds: a floor, not a baseline, paged
    last = [r for r in results["chronic_errors"].rows if r["service"] == "search"][-1]
    assert last["status"] == "open"  # still failing at the end: the incident held, it did not become normal


def test_new_service_failing_from_its_start_pages_on_the_floor(results):
    rows = [r for r in results["new_service_failing"].rows if r["service"] == "checkout"]
    assert rows[0]["update_type"] == "opened" and rows[0]["severity"] == "P1"
    assert (rows[0]["opened_at"] - T0_MS) / 1000 <= 120 + 5
    assert any("floor" in reason and "no healthy baseline" in reason for reason in rows[0]["severity_reasons"])


def test_one_failing_host_is_named(results):
    last = [r for r in results["one_host_failing"].rows if r["service"] == "search"][-1]
    assert last["affected_hosts"] == ["s-3"]


def test_discovered_service_gets_the_default_tier_and_says_so(results):
    rows = [r for r in results["discovered_service"].rows if r["service"] == "ledger"]
    assert rows and all(r["tier"] is None for r in rows)  # null tier: the service is not in the catalog
    assert rows[-1]["severity"] in ("P2", "P3")  # tier 2 by default, not P4
    assert any(reason.startswith("discovered service") for reason in rows[-1]["severity_reasons"])


def test_cascade_names_the_deepest_origin(results):
    latest = {}
    for r in results["cascade_three_hops"].rows:
        latest[r["service"]] = r
    assert set(latest) == {"db", "orders", "gateway"}
    assert latest["gateway"]["origin_service"] == "db" and latest["orders"]["origin_service"] == "db"


def test_severity_reasons_speak_in_rates_ratios_and_minutes(results):
    reasons = [r for r in results["cascade_three_hops"].rows if r["service"] == "db"][-1]["severity_reasons"]
    assert any(reason.startswith("error rate ") and "x baseline" in reason and reason.endswith(" min")
               for reason in reasons), reasons
    assert any("dependent service(s) failing with it: gateway, orders" in reason for reason in reasons)


def test_fresh_detector_pages_a_gross_failure_in_twenty_seconds_of_traffic():
    scenario = Scenario({"api": Profile(50, 0.004, tier="1")}, 20.0, [Episode("api", 3, 20, error_rate=0.6)])
    det = EnvironmentDetector("prod", DetectionParams(), DependencyGraph({}))
    ingest(det, events(scenario))
    rows = det.advance(now_ms=T0_MS + 20_000)
    assert [r["update_type"] for r in rows][:1] == ["opened"]
    assert (rows[0]["opened_at"] - T0_MS) / 1000 <= 8


def test_baseline_never_learns_a_window_beyond_the_floor():
    scenario = Scenario({"api": Profile(50, 0.35, tier="2")}, 150.0)
    det = EnvironmentDetector("prod", DetectionParams(), DependencyGraph({}))
    ingest(det, events(scenario))
    det.advance(now_ms=T0_MS + 150_000)
    assert det.services["api"].baseline.error_rate() < 0.05  # still the prior, not the 35% it saw
