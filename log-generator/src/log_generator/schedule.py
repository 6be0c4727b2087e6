"""When incidents happen: planning the schedule of a run and the timeline of each incident.

A single scenario runs once in the middle of a finite run (20% normal traffic before, 20% after), or
once per 10-minute cycle in an endless run. ``mixed`` spreads the real scenarios over the run in a
shuffled rotation (one every ~5 minutes, at least one), with the flapping service's noise on top.
``none`` plans nothing. All draws come from a generator seeded by the run's seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from log_generator.ground_truth import IncidentTruth, Phases
from log_generator.placeholders import camel
from log_generator.scenarios import REAL_SCENARIOS, SCENARIOS, Effect, Scenario
from log_generator.topology import ServiceModel, Topology

SINGLE_CYCLE_MS = 600_000
MIXED_CYCLE_MS = 300_000


@dataclass
class Role:
    """One service's part in an incident."""

    service: ServiceModel
    role: str  # origin | dependent | upstream | related
    effect: Effect
    lag_ms: int
    target: str


@dataclass
class OneShotEvent:
    ts_ms: int
    service: str
    host: str
    key: str
    constants: dict[str, str] = field(default_factory=dict)


@dataclass
class Incident:
    truth: IncidentTruth
    scenario: Scenario
    origin: ServiceModel
    start_ms: int
    plateau_ms: int
    recovery_ms: int
    end_ms: int
    roles: list[Role]
    focus_hosts: tuple[str, ...]
    constants: dict[str, str]
    one_shots: list[OneShotEvent] = field(default_factory=list)
    down: list[tuple[int, int, str]] = field(default_factory=list)  # (from, to, host) restarts
    bursts: list[tuple[int, int]] = field(default_factory=list)

    @property
    def tag(self) -> dict[str, str]:
        return {"scenario": self.scenario.name, "incident_id": self.truth.id}

    @property
    def last_ms(self) -> int:
        """End of the last effect, callers' lag included."""
        return self.end_ms + max((r.lag_ms for r in self.roles), default=0)

    def intensity(self, t_ms: float, lag_ms: int = 0) -> float:
        t = t_ms - lag_ms
        if t < self.start_ms or t >= self.end_ms:
            return 0.0
        if self.scenario.pattern == "bursts":
            return 1.0 if any(a <= t < b for a, b in self.bursts) else 0.0
        if t < self.plateau_ms:
            return (t - self.start_ms) / max(1, self.plateau_ms - self.start_ms)
        if t < self.recovery_ms:
            return 1.0
        return 1.0 - (t - self.recovery_ms) / max(1, self.end_ms - self.recovery_ms)

    def weight(self, when: str, t_ms: float, lag_ms: int = 0) -> float:
        """How strongly a line with timing `when` is written at t."""
        t = t_ms - lag_ms
        if when == "active":
            return self.intensity(t_ms, lag_ms)
        if when == "ramp":
            return self.intensity(t_ms, lag_ms) if self.start_ms <= t < self.plateau_ms else 0.0
        if when == "plateau":
            return 1.0 if self.plateau_ms <= t < self.recovery_ms else 0.0
        if when == "recovery":
            return self.intensity(t_ms, lag_ms) if self.recovery_ms <= t < self.end_ms else 0.0
        if when == "down":
            return 1.0 if self.down_hosts(t) else 0.0
        raise ValueError(f"unknown line timing {when!r}")

    def down_hosts(self, t_ms: float) -> set[str]:
        return {host for a, b, host in self.down if a <= t_ms < b}

    def tick_constants(self, t_ms: float) -> dict[str, str]:
        """Constants that move with the incident's progress (disk filling up)."""
        if self.scenario.name != "disk_full":
            return {}
        pct = min(99, 86 + int(13 * self.intensity(t_ms)))
        return {"pct_rising": str(pct), "free_gb": f"{(100 - pct) * 4.1:.1f}", "free_pct": f"{100 - pct:.1f}"}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bump(version: str) -> str:
    parts = version.lstrip("v").split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return version + "-rc1"
    return f"v{major}.{minor + 1}.0"


def choose_origin(scenario: Scenario, topology: Topology, rng: np.random.Generator) -> ServiceModel:
    """A service the scenario can start in: a preferred one present in the catalog, else one of the kind."""
    if scenario.pattern == "bursts":
        candidates = [s for s in topology.services if s.flapping]
        if not candidates:
            candidates = [s for s in topology.services if s.spec.tier == 3 and s.has_access] or \
                         [s for s in topology.services if s.has_access] or topology.services
    else:
        candidates = [topology[n] for n in scenario.origins if n in topology.by_name]
        if not candidates:
            candidates = [s for s in topology.services if s.kind in scenario.origin_kind and not s.flapping]
        if not candidates:
            raise ValueError(f"scenario {scenario.name!r} needs a service of kind "
                             f"{'/'.join(scenario.origin_kind)} in the catalog, and there is none")
    return candidates[int(rng.integers(len(candidates)))]


def _constants(origin: ServiceModel, start_ms: int, rng: np.random.Generator) -> dict[str, str]:
    mount = {"search-service": "/var/lib/search", "postgres-primary": "/var/lib/postgresql/data"}.get(
        origin.name, f"/var/lib/{origin.name}")
    return {
        "origin": origin.name,
        "good_version": origin.version,
        "bad_version": _bump(origin.version),
        "expiry": _iso(start_ms),
        "renewed_until": _iso(start_ms + 90 * 86_400_000),
        "mount": mount,
        "pct": str(int(rng.integers(55, 95))),
        "pool_size": "20",
        "timeout_ms": "30000",
        "timeout_s": "30.00",
    }


def build_incident(index: int, scenario: Scenario, origin: ServiceModel, topology: Topology, start_ms: int,
                   window_ms: int, rng: np.random.Generator) -> Incident:
    """The full timeline of one incident: phases, roles with lags, one-shot lines, restarts, bursts."""
    window_ms = max(window_ms, 1000)
    ramp, plateau, _ = scenario.phases
    plateau_ms = start_ms + int(window_ms * ramp)
    recovery_ms = plateau_ms + int(window_ms * plateau)
    end_ms = start_ms + window_ms
    lag = int(min(0.05 * window_ms, 15_000))

    roles = [Role(origin, "origin", scenario.origin, 0, origin.name)]
    affected = {origin.name}
    if scenario.dependents is not None:
        for name in origin.dependents:
            roles.append(Role(topology[name], "dependent", scenario.dependents, lag, origin.name))
            affected.add(name)
    if scenario.upstream is not None:
        for name in topology.upstream_of(origin.name):
            if name in affected:
                continue
            affected.add(name)
            roles.append(Role(topology[name], "upstream", scenario.upstream, 2 * lag,
                              topology.path_target(name, affected)))
    for kind, effect in scenario.related:
        related = {dep for r in roles if r.role == "dependent" for dep in r.service.dependencies
                   if topology[dep].kind == kind and dep not in affected}
        for name in sorted(related):
            affected.add(name)
            roles.append(Role(topology[name], "related", effect, lag, origin.name))

    n_focus = scenario.focus_hosts or len(origin.hosts)
    first = int(rng.integers(len(origin.hosts)))
    focus = tuple(origin.hosts[(first + i) % len(origin.hosts)] for i in range(min(n_focus, len(origin.hosts))))
    constants = _constants(origin, start_ms, rng)
    incident_id = f"inc-{index:03d}-{scenario.name}"
    incident = Incident(
        truth=IncidentTruth(
            id=incident_id, scenario=scenario.name, root_cause_category=scenario.category,
            origin_service=origin.name, affected_services=[r.service.name for r in roles],
            start_ms=start_ms, end_ms=end_ms + max(r.lag_ms for r in roles),
            expect_incident=scenario.expect_incident,
            phases=Phases(plateau_ms=plateau_ms, recovery_ms=recovery_ms),
            origin_hosts=list(focus), description=scenario.description,
        ),
        scenario=scenario, origin=origin, start_ms=start_ms, plateau_ms=plateau_ms, recovery_ms=recovery_ms,
        end_ms=end_ms, roles=roles, focus_hosts=focus, constants=constants,
    )
    _plan_pattern(incident, rng)
    _plan_one_shots(incident)
    return incident


def _plan_pattern(incident: Incident, rng: np.random.Generator) -> None:
    pattern = incident.scenario.pattern
    if pattern == "restarts":
        span = incident.recovery_ms - incident.plateau_ms
        period = int(min(max(span / 3, 6000), 120_000))
        down = int(min(0.3 * period, 20_000))
        t = incident.plateau_ms + int(rng.integers(0, max(1, period // 4)))
        k = 0
        hosts = incident.origin.hosts
        start_host = hosts.index(incident.focus_hosts[0])
        while t + down <= incident.recovery_ms:
            host = hosts[(start_host + k) % len(hosts)]
            incident.down.append((t, t + down, host))
            t += period
            k += 1
    elif pattern == "bursts":
        window = incident.end_ms - incident.start_ms
        period = int(min(max(window / 4, 4000), 45_000))
        length = int(min(max(0.15 * period, 1500), 8000))
        t = incident.start_ms + int(rng.integers(0, max(1, period // 3)))
        while t + length <= incident.end_ms:
            incident.bursts.append((t, t + length))
            t += period + int(rng.integers(-period // 5, period // 5 + 1))


def _plan_one_shots(incident: Incident) -> None:
    origin = incident.origin
    base = dict(incident.constants)
    for shot in incident.scenario.one_shots:
        key = shot.key.replace("{runtime}", origin.runtime)
        if shot.at in ("start", "plateau", "recovery", "end"):
            ts = {"start": incident.start_ms, "plateau": incident.plateau_ms, "recovery": incident.recovery_ms,
                  "end": incident.end_ms - 1}[shot.at] + int(shot.offset_s * 1000)
            incident.one_shots.append(OneShotEvent(ts, origin.name, incident.focus_hosts[0], key, base))
        elif shot.at == "rollout":
            n = len(origin.hosts)
            span = incident.plateau_ms - incident.start_ms
            for i, host in enumerate(origin.hosts):
                ts = incident.start_ms + int((i + 0.5) / n * span)
                incident.one_shots.append(OneShotEvent(ts, origin.name, host, key, base))
        elif shot.at in ("restart", "restarted"):
            for k, (a, b, host) in enumerate(incident.down):
                ts = a if shot.at == "restart" else b
                incident.one_shots.append(OneShotEvent(ts, origin.name, host, key, {**base, "restarts": str(k + 1)}))
        elif shot.at == "burst_end":
            for _, b in incident.bursts:
                incident.one_shots.append(OneShotEvent(b, origin.name, incident.focus_hosts[0], key, base))
        else:
            raise ValueError(f"unknown one-shot timing {shot.at!r} in scenario {incident.scenario.name}")
    incident.one_shots.sort(key=lambda s: s.ts_ms)


class Schedule:
    """The incidents of a run. Finite runs are planned up front; endless runs extend cycle by cycle."""

    def __init__(self, mode: str, topology: Topology, start_ms: int, duration_ms: int | None, seed: int,
                 origin: str | None = None):
        self.mode = mode
        self.topology = topology
        self.start_ms = start_ms
        self.duration_ms = duration_ms
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0x5CED])))
        self.origin = origin
        if origin is not None and origin not in topology.by_name:
            raise ValueError(f"origin service {origin!r} is not in the catalog; services: "
                             f"{', '.join(topology.by_name)}")
        self.incidents: list[Incident] = []
        self._planned_until = start_ms
        self._cycle = 0
        self._rotation: list[str] = []
        if duration_ms is not None:
            self._plan_finite(duration_ms)
            self._planned_until = start_ms + duration_ms

    # --- helpers -------------------------------------------------------------------------------
    def _origin_for(self, scenario: Scenario) -> ServiceModel:
        if self.origin is not None and self.mode == scenario.name:
            return self.topology[self.origin]
        return choose_origin(scenario, self.topology, self.rng)

    def _add(self, name: str, start_ms: int, window_ms: int) -> Incident:
        scenario = SCENARIOS[name]
        incident = build_incident(len(self.incidents) + 1, scenario, self._origin_for(scenario), self.topology,
                                  start_ms, window_ms, self.rng)
        self.incidents.append(incident)
        return incident

    def _next_real(self) -> str:
        if not self._rotation:
            self._rotation = [REAL_SCENARIOS[i] for i in self.rng.permutation(len(REAL_SCENARIOS))]
        return self._rotation.pop(0)

    # --- planning ------------------------------------------------------------------------------
    def _plan_finite(self, duration_ms: int) -> None:
        if self.mode == "none":
            return
        s0 = self.start_ms
        if self.mode != "mixed":
            self._add(self.mode, s0 + int(0.2 * duration_ms), int(0.6 * duration_ms))
            return
        lead = int(min(0.12 * duration_ms, 300_000))
        usable = max(duration_ms - lead, 1000)
        count = max(1, round(usable / MIXED_CYCLE_MS))
        slot = usable / count
        for j in range(count):
            window = int(min(slot * self.rng.uniform(0.55, 0.72), 1_200_000))
            tail = min(0.1 * slot, 60_000)
            room = max(0.0, slot - window - tail)
            start = s0 + lead + int(j * slot + self.rng.uniform(0, room) if room else j * slot)
            self._add(self._next_real(), start, window)
        flaps = max(1, count // 3)
        for _ in range(flaps):
            window = int(min(0.3 * duration_ms, 600_000))
            start = s0 + int(self.rng.uniform(0.05, 0.95) * max(1, duration_ms - window))
            self._add("flapping", start, window)
        self.incidents.sort(key=lambda i: i.start_ms)
        for number, incident in enumerate(self.incidents, start=1):  # ids in order of start
            incident.truth.id = f"inc-{number:03d}-{incident.scenario.name}"

    def extend_to(self, t_ms: int) -> None:
        """Plan endless runs up to t_ms (no-op for finite runs)."""
        if self.duration_ms is not None or self.mode == "none":
            return
        while self._planned_until <= t_ms:
            c0 = self._planned_until
            if self.mode == "mixed":
                self._add(self._next_real(), c0 + 40_000, 200_000)
                if self._cycle % 3 == 1:
                    self._add("flapping", c0 + 150_000, 120_000)
                self._planned_until = c0 + MIXED_CYCLE_MS
            else:
                self._add(self.mode, c0 + 120_000, 360_000)
                self._planned_until = c0 + SINGLE_CYCLE_MS
            self._cycle += 1

    def active(self, t0_ms: int, t1_ms: int) -> list[Incident]:
        """Incidents with any effect in [t0, t1)."""
        self.extend_to(t1_ms)
        return [i for i in self.incidents if i.start_ms < t1_ms and t0_ms < i.last_ms]

    def one_shots_between(self, t0_ms: int, t1_ms: int) -> list[tuple[Incident, OneShotEvent]]:
        found = [(i, s) for i in self.active(t0_ms, t1_ms) for s in i.one_shots if t0_ms <= s.ts_ms < t1_ms]
        return sorted(found, key=lambda pair: pair[1].ts_ms)


def target_constants(role: Role, incident: Incident) -> dict[str, str]:
    return {**incident.constants, "target": role.target, "target_app": camel(role.target)}

