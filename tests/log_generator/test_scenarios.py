"""Every scenario produces its signature inside its window, cascades where it should, and recovers."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from incident_contracts.failures import FailureFamily
from log_generator.ground_truth import ROOT_CAUSE_CATEGORIES
from log_generator.scenarios import SCENARIOS, resolve
from log_generator.simulation import build_simulation

ERROR_LEVELS = {"ERROR", "FATAL"}

# scenario -> (category, regex a line of the origin must match in the window,
#              regex a line of some other affected service must match, or None)
SIGNATURES = {
    "db_pool_exhaustion": ("database", r"remaining connection slots are reserved",
                           r"Connection is not available|QueuePool limit|acquire connection from pool"),
    "memory_leak": ("memory", r"OutOfMemoryError|MemoryError|out of memory|heap out of memory",
                    r"ECONNREFUSED"),
    "slow_dependency": ("dependency", r"Slow request: .* lock_wait=\d+ms",
                        r"Read timed out|timed out|deadline exceeded"),
    "bad_deploy": ("deployment", r"release v\d+\.\d+\.0", r"upstream .* returned 50\d"),
    "disk_full": ("disk", r"No space left on device", r"upstream .* returned 50\d"),
    "tls_expired": ("certificate", r"TLS handshake error .* expired",
                    r"PKIX path validation failed|certificate has expired|CERTIFICATE_VERIFY_FAILED"),
    "cache_stampede": ("cache", r"keys in active expire cycle .* hot keyspace",
                       r"Cache miss for .* recomputing|Timed out waiting for redis-cache"),
    "flapping": ("flapping", r"Health check failed", None),
}


def window(events, service: str, t0: int, t1: int) -> list[dict]:
    return [e for e in events if e["service"] == service and t0 <= e["timestamp"] < t1]


def error_share(events: list[dict]) -> float:
    return sum(e["level"] in ERROR_LEVELS for e in events) / max(1, len(events))


def test_every_scenario_has_a_signature_and_a_known_category() -> None:
    assert set(SIGNATURES) == set(SCENARIOS)
    assert {s.category for s in SCENARIOS.values()} <= set(ROOT_CAUSE_CATEGORIES)
    assert resolve("db-pool-exhaustion") == "db_pool_exhaustion" and resolve(" Memory_Leak") == "memory_leak"
    with pytest.raises(ValueError, match="choose one of: db_pool_exhaustion"):
        resolve("oom")  # no second names: a scenario is called by its failure family's id


def test_every_scenario_but_flapping_plays_its_failure_family() -> None:
    assert [s.family for s in SCENARIOS.values() if s.expect_incident] == list(FailureFamily)
    for scenario in SCENARIOS.values():
        if scenario.family is not None:
            assert (scenario.name, scenario.category) == (scenario.family.value, scenario.family.category)
    assert SCENARIOS["flapping"].family is None and "flapping" not in set(FailureFamily)


@pytest.mark.parametrize("name", list(SIGNATURES))
def test_scenario_signature_within_its_window(name: str, generated) -> None:
    events, truth = generated(name)
    category, origin_pattern, other_pattern = SIGNATURES[name]
    assert len(truth.incidents) == 1
    incident = truth.incidents[0]
    assert incident.scenario == name and incident.root_cause_category == category
    assert incident.expect_incident is (name != "flapping")
    assert incident.affected_services[0] == incident.origin_service
    # one fifth of normal traffic before, the incident, normal traffic after
    assert truth.start_ms < incident.start_ms <= incident.phases.plateau_ms < incident.phases.recovery_ms \
        <= incident.end_ms <= truth.end_ms

    tagged = [e for e in events if e["attributes"].get("incident_id") == incident.id]
    assert tagged, "incident events carry attributes naming the incident"
    assert all(incident.start_ms <= e["timestamp"] < incident.end_ms for e in tagged)
    assert {e["service"] for e in tagged} <= set(incident.affected_services)
    assert {e["attributes"]["scenario"] for e in tagged} == {name}

    origin_lines = window(events, incident.origin_service, incident.start_ms, incident.end_ms)
    assert any(re.search(origin_pattern, e["message"]) for e in origin_lines), f"{name}: origin signature"
    before = [e for e in events if e["timestamp"] < incident.start_ms]
    assert not any(re.search(origin_pattern, e["message"]) for e in before), "signature only once it starts"
    if other_pattern:
        others = [e for e in tagged if e["service"] != incident.origin_service]
        assert any(re.search(other_pattern, e["message"]) for e in others), f"{name}: cascade signature"
        assert len(incident.affected_services) >= 2
    else:
        assert incident.affected_services == [incident.origin_service]

    after = [e for e in events if e["timestamp"] >= incident.end_ms]
    assert error_share(after) < 0.01, "traffic recovers after the incident"


def _plateau(events, incident, service: str) -> list[dict]:
    return window(events, service, incident.phases.plateau_ms, incident.phases.recovery_ms)


def _before(events, incident, service: str) -> list[dict]:
    return window(events, service, incident.start_ms - 30_000, incident.start_ms)


@pytest.mark.parametrize("name", ["db_pool_exhaustion", "bad_deploy", "disk_full", "tls_expired",
                                  "slow_dependency", "cache_stampede"])
def test_failures_rise_far_above_baseline_where_the_scenario_says(name: str, generated) -> None:
    events, truth = generated(name)
    incident = truth.incidents[0]
    # the service whose users see failures: the origin, or its callers when the origin only slows down
    hit = incident.origin_service if name in ("bad_deploy", "disk_full") else incident.affected_services[1]
    base = error_share(_before(events, incident, hit))
    during = error_share(_plateau(events, incident, hit))
    assert during > 0.1 and during > 10 * max(base, 0.002), (hit, base, during)


def test_slow_dependency_multiplies_latency_at_origin_and_callers(generated) -> None:
    events, truth = generated("slow_dependency")
    incident = truth.incidents[0]

    def p95(lines: list[dict]) -> float:
        return float(np.percentile([e["latency_ms"] for e in lines if e["http_status"] is not None], 95))

    origin = incident.origin_service
    assert p95(_plateau(events, incident, origin)) > 5 * p95(_before(events, incident, origin))
    caller = incident.affected_services[1]
    assert p95(_plateau(events, incident, caller)) > 3 * p95(_before(events, incident, caller))


def test_memory_leak_ramps_gc_pressure_then_restarts(generated) -> None:
    events, truth = generated("memory_leak")
    incident = truth.incidents[0]
    origin = incident.origin_service
    ramp = window(events, origin, incident.start_ms, incident.phases.plateau_ms)
    assert sum("Pause Full" in e["message"] or "memory usage" in e["message"] or "Mark-sweep" in e["message"]
               for e in ramp) >= 5
    plateau = _plateau(events, incident, origin)
    kills = [e for e in plateau if e["error_type"] == "OOMKilled"]
    starts = [e for e in plateau if e["message"].startswith("Started ")]
    assert kills and len(starts) == len(kills), "every OOM kill is followed by a restart"
    assert [int(re.search(r"restart count (\d+)", e["message"]).group(1)) for e in kills] == \
        list(range(1, len(kills) + 1))


def test_bad_deploy_announces_release_and_rollback(generated) -> None:
    events, truth = generated("bad_deploy")
    incident = truth.incidents[0]
    lines = window(events, incident.origin_service, incident.start_ms, incident.end_ms)
    started = [e for e in lines if e["message"].startswith("Deployment started")]
    rollback = [e for e in lines if e["message"].startswith("Rollback initiated")]
    assert len(started) == 1 and len(rollback) == 1
    assert started[0]["timestamp"] - incident.start_ms < 1000
    assert abs(rollback[0]["timestamp"] - incident.phases.recovery_ms) < 1000


def test_disk_full_hits_only_the_focus_host(generated) -> None:
    events, truth = generated("disk_full")
    incident = truth.incidents[0]
    failures = [e for e in events if "No space left on device" in e["message"]]
    assert failures and {e["host"] for e in failures} == set(incident.origin_hosts)
    assert len(incident.origin_hosts) == 1


def test_cache_stampede_spills_onto_the_database(generated) -> None:
    events, truth = generated("cache_stampede")
    incident = truth.incidents[0]
    assert "postgres-primary" in incident.affected_services
    slow = [e for e in _plateau(events, incident, "postgres-primary") if "slow query log" in e["message"]]
    assert len(slow) >= 20


def test_flapping_is_short_bursts_and_not_an_incident(generated) -> None:
    events, truth = generated("flapping")
    incident = truth.incidents[0]
    assert not incident.expect_incident and truth.expected == []
    origin = incident.origin_service
    failures = sorted(e["timestamp"] for e in events if e["service"] == origin
                      and e["message"].startswith("Health check failed"))
    assert failures
    bursts = np.split(np.array(failures), np.nonzero(np.diff(failures) > 2_000)[0] + 1)
    assert len(bursts) >= 3, "it flaps several times"
    assert max(b[-1] - b[0] for b in bursts) <= 8_000, "each flap is short"
    others = [e for e in events if e["service"] != origin and e["attributes"].get("scenario")]
    assert not others, "nothing else is affected"


def test_mixed_schedule_rotates_scenarios_with_flapping_on_top(start_ms: int) -> None:
    sim = build_simulation("mixed", rate=10, duration_s=2400, seed=5, start_ms=start_ms)
    real = [i for i in sim.truth.incidents if i.expect_incident]
    assert len(real) == 7, "one incident per ~5 minutes after the lead-in"
    assert {i.scenario for i in real} == {n for n in SCENARIOS if n != "flapping"}, "each scenario once"
    assert any(not i.expect_incident for i in sim.truth.incidents)
    for a, b in itertools.pairwise(real):
        assert a.end_ms <= b.start_ms, "real incidents do not overlap, so each can be scored on its own"
    other = build_simulation("mixed", rate=10, duration_s=2400, seed=6, start_ms=start_ms)
    assert [i.scenario for i in other.truth.incidents] != [i.scenario for i in sim.truth.incidents]


def test_mixed_events_are_tagged_with_their_incidents(generated) -> None:
    events, truth = generated("mixed")
    tagged = {e["attributes"]["incident_id"] for e in events if e["attributes"].get("incident_id")}
    assert tagged == {i.id for i in truth.incidents}
    assert {"scenario", "incident_id", "incident_role"} <= set(
        next(e for e in events if e["attributes"]).get("attributes"))
