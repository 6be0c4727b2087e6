"""An evaluation set of failure shapes the detector was not built on, run through the offline detector.

The generator's scenarios are what the detector was designed and measured with; these shapes are a
separate check, each a synthetic event stream (detection_synthetic) of a small fleet with a catalog:

| shape                  | what happens                                                    | must page (band)        |
|------------------------|-----------------------------------------------------------------|-------------------------|
| slow_burn              | orders' errors ramp 0.4% -> 15% over 10 min                      | orders (P1-P2)          |
| new_service_failing    | checkout (tier 1) fails 60% from its very first request          | checkout (P1)           |
| traffic_surge          | gateway traffic x5 for 5 min, same error rate and latency        | nothing                 |
| chronic_errors         | search (tier 2) fails 35% from the start, constantly             | search, once (P2-P3)    |
| one_host_failing       | one of search's four hosts fails every request for 5 min         | search (P2-P3)          |
| latency_only           | orders 6x slower for 5 min, no errors                            | orders (P1-P2)          |
| service_silent         | db's traffic drops to 2% for 5 min                               | db (P1-P2)              |
| environment_silent     | every service's traffic drops to 2% for 5 min (logs stopped)     | nothing (a pipeline     |
|                        |                                                                 | problem, not incidents) |
| cascade_three_hops     | db fails, then orders, then gateway (db <- orders <- gateway)    | db as origin (P1)       |
| deploy_during_surge    | gateway traffic x4; orders' deploy fails 30% in the middle       | orders (P1-P2)          |
| discovered_service     | ledger (not in the catalog) climbs from 1% to 22% errors         | ledger (P2-P3)          |
| quiet_by_schedule      | db stops in its catalog quiet window (daily 14:20-14:25 UTC) and | nothing (silence was    |
|                        | comes back at its end; export (`silence: false`) stops for good  | expected)               |

Services not named under "must page" must not page. Severity is judged on the most severe row of the
incidents matching the expected page on its service. Detection latency is the event time from the
injected start to the `opened` row (the end of the micro-batch that wrote it).

Both tests/spark/detection/test_detection_shapes.py and bench/detection_bench.py import this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from detection_synthetic import T0_MS, Episode, Profile, Scenario, events

from incident_contracts.catalog import Catalog, ServiceSpec
from incident_stream.detection import scoring
from incident_stream.detection.offline import replay
from incident_stream.detection.severity import RANK

DURATION_S = 900.0
ONSET_S = 400.0  # every baseline is warm and settled by then
END_S = 700.0


def fleet() -> dict[str, Profile]:
    return {
        "gateway": Profile(100, 0.004, 18, 90, hosts=("gw-1", "gw-2", "gw-3"), tier="1"),
        "orders": Profile(40, 0.004, 35, 140, tier="1"),
        "db": Profile(30, 0.001, 3, 15, hosts=("pg-1",), tier="1"),
        "search": Profile(40, 0.003, 28, 110, hosts=("s-1", "s-2", "s-3", "s-4"), tier="2"),
        "reports": Profile(10, 0.004, 60, 240, tier="3"),
    }


DEPENDS_ON = {"gateway": ["orders", "search"], "orders": ["db"], "db": [], "search": [], "reports": []}


@dataclass(frozen=True)
class Expect:
    service: str
    start_s: float
    end_s: float
    band: tuple[str, ...]  # acceptable severities
    affected: tuple[str, ...] = ()  # services an incident may be on and still be this page (a cascade)


@dataclass
class Shape:
    name: str
    description: str
    scenario: Scenario
    expect: list[Expect] = field(default_factory=list)
    catalog_services: tuple[str, ...] | None = None  # None: every profile is in the catalog
    catalog_fields: dict[str, dict] = field(default_factory=dict)  # service -> more catalog fields of it
    depends_on: dict[str, list[str]] = field(default_factory=lambda: dict(DEPENDS_ON))


def shapes() -> list[Shape]:
    p1p2, p2p3 = ("P1", "P2"), ("P2", "P3")
    surge_fleet = fleet()
    new_fleet = {**fleet(), "checkout": Profile(30, 0.6, 40, 160, tier="1", start_s=120)}
    discovered_fleet = {**fleet(), "ledger": Profile(30, 0.01, 20, 80, tier=None)}
    quiet_fleet = {**fleet(), "export": Profile(20, 0.004, 50, 200, tier="2")}
    chronic_fleet = {**fleet(), "search": Profile(40, 0.35, 28, 110, hosts=("s-1", "s-2", "s-3", "s-4"),
                                                      tier="2")}
    return [
        Shape("slow_burn", "orders' error rate ramps from 0.4% to 15% over 10 minutes",
              Scenario(fleet(), DURATION_S, [Episode("orders", 300, DURATION_S, error_rate=0.004,
                                                     error_rate_end=0.15)]),
              [Expect("orders", 300, DURATION_S, p1p2)]),
        Shape("new_service_failing", "a new tier-1 service fails 60% of its requests from its first second",
              Scenario(new_fleet, 300.0), [Expect("checkout", 120, 300, ("P1",))],
              depends_on={**DEPENDS_ON, "checkout": []}),
        Shape("traffic_surge", "gateway traffic x5 for 5 minutes with its usual error rate and latency",
              Scenario(surge_fleet, DURATION_S, [Episode("gateway", ONSET_S, END_S, rate_factor=5.0)]), []),
        Shape("chronic_errors", "search (tier 2) fails 35% of its requests from the start, constantly",
              Scenario(chronic_fleet, 600.0), [Expect("search", 0, 600, p2p3)]),
        Shape("one_host_failing", "one of search's four hosts fails every request for 5 minutes",
              Scenario(fleet(), DURATION_S, [Episode("search", ONSET_S, END_S, error_rate=1.0, hosts=("s-3",))]),
              [Expect("search", ONSET_S, END_S, p2p3)]),
        Shape("latency_only", "orders is 6x slower for 5 minutes, without errors",
              Scenario(fleet(), DURATION_S, [Episode("orders", ONSET_S, END_S, latency_factor=6.0)]),
              [Expect("orders", ONSET_S, END_S, p1p2)]),
        Shape("service_silent", "db's traffic drops to 2% of its usual volume for 5 minutes",
              Scenario(fleet(), DURATION_S, [Episode("db", ONSET_S, END_S, rate_factor=0.02)]),
              [Expect("db", ONSET_S, END_S, p1p2)]),
        Shape("environment_silent", "every service's traffic drops to 2% for 5 minutes: the logs stopped coming",
              Scenario(fleet(), DURATION_S, [Episode(n, ONSET_S, END_S, rate_factor=0.02) for n in fleet()]), []),
        Shape("cascade_three_hops", "db fails 40%, orders 20% three seconds later, gateway 8% three more later",
              Scenario(fleet(), DURATION_S, [Episode("db", ONSET_S, END_S, error_rate=0.4),
                                             Episode("orders", ONSET_S + 3, END_S, error_rate=0.2),
                                             Episode("gateway", ONSET_S + 6, END_S, error_rate=0.08)]),
              [Expect("db", ONSET_S, END_S, ("P1",), affected=("orders", "gateway"))]),
        Shape("deploy_during_surge", "gateway traffic x4 for 5 minutes; orders' deploy fails 30% in the middle",
              Scenario(fleet(), DURATION_S, [Episode("gateway", ONSET_S, END_S, rate_factor=4.0),
                                             Episode("orders", 500, 600, error_rate=0.3)]),
              [Expect("orders", 500, 600, p1p2)]),
        Shape("discovered_service", "ledger, not in the catalog, climbs from 1% to 22% errors",
              Scenario(discovered_fleet, DURATION_S, [Episode("ledger", ONSET_S, END_S, error_rate=0.22)]),
              [Expect("ledger", ONSET_S, END_S, p2p3)],
              catalog_services=tuple(fleet())),
        Shape("quiet_by_schedule", "db stops sending in its scheduled quiet window (T0 is a Monday, 14:13:20 UTC) "
              "and resumes at its end; export, a batch job whose volume is no health signal, finishes its run",
              Scenario(quiet_fleet, DURATION_S, [Episode("db", ONSET_S, END_S, rate_factor=0.0),
                                                 Episode("export", ONSET_S, DURATION_S, rate_factor=0.0)]), [],
              depends_on={**DEPENDS_ON, "export": []},
              catalog_fields={"db": {"quiet": [{"days": "mon-fri", "from": "14:20", "to": "14:25"}],
                                     "timezone": "UTC"},
                              "export": {"silence": False}}),
    ]


def catalog_of(shape: Shape) -> Catalog:
    names = shape.catalog_services or tuple(shape.scenario.profiles)
    return Catalog(environment=shape.scenario.environment, services=[
        ServiceSpec(name=n, tier=int(shape.scenario.profiles[n].tier or 3), owner="team",
                    hosts=list(shape.scenario.profiles[n].hosts),
                    depends_on=[d for d in shape.depends_on.get(n, []) if d in names],
                    **shape.catalog_fields.get(n, {}))
        for n in names])


@dataclass
class ShapeResult:
    name: str
    expected: int
    found: int
    detected: int  # incidents opened
    true_positives: int
    unexpected: list[str]  # "service@seconds" of incidents matching no expected page
    band_right: int  # expected pages whose severity is in the band
    severities: dict[str, str]  # expected service -> most severe row of its matching incidents
    latency_s: dict[str, float]  # expected service -> injected start -> opened row
    rows: list[dict] = field(repr=False, default_factory=list)

    @property
    def precision(self) -> float:
        return self.true_positives / self.detected if self.detected else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.expected if self.expected else 1.0


def run_shape(shape: Shape, seed: int = 0) -> ShapeResult:
    frame = events(shape.scenario, seed=seed)
    catalog = catalog_of(shape)
    in_catalog = set(catalog.names)
    frame.loc[~frame["service"].isin(in_catalog), ["tier", "owner"]] = None  # as the enrichment leaves them
    rows = replay(frame, catalog)
    truths = [scoring.Truth(id=f"{shape.name}:{e.service}", scenario=shape.name, origin_service=e.service,
                            affected_services=e.affected, start_ms=T0_MS + int(e.start_s * 1000),
                            end_ms=T0_MS + int(e.end_s * 1000)) for e in shape.expect]
    detected = scoring.detected_from_updates(rows)
    score = scoring.score(detected, truths)
    frame_rows = pd.DataFrame(rows)
    severities: dict[str, str] = {}
    latency: dict[str, float] = {}
    band_right = 0
    for e, t in zip(shape.expect, truths, strict=True):
        ids = score.matches.get(t.id, [])
        own = [d.incident_id for d in detected if d.incident_id in ids and d.service == e.service] or ids
        if not own:
            continue
        mine = frame_rows[frame_rows["incident_id"].isin(own)]
        worst = min(mine["severity"], key=lambda s: RANK[s])
        severities[e.service] = worst
        band_right += worst in e.band
        opened = mine[mine["update_type"] == "opened"]
        latency[e.service] = (int(opened["update_time"].min()) - t.start_ms) / 1000
    by_id = {d.incident_id: d for d in detected}
    unexpected = [f"{by_id[i].service}@{(by_id[i].opened_at_ms - T0_MS) / 1000:.0f}s"
                  for i in score.false_positives_normal + score.false_positives_flapping]
    return ShapeResult(shape.name, score.expected, score.found, score.detected, score.true_positives, unexpected,
                       band_right, severities, latency, rows)


def run_all(seed: int = 0) -> list[ShapeResult]:
    return [run_shape(s, seed) for s in shapes()]


if __name__ == "__main__":
    for r in run_all():
        print(f"{r.name:22s} found {r.found}/{r.expected} true {r.true_positives}/{r.detected} "
              f"unexpected {r.unexpected} severity {r.severities} band right {r.band_right} latency {r.latency_s}")
