"""One simulated run, wired together: catalog -> topology, schedule, engine, ground truth.

Shared by the in-memory API (`generate`) and the Kafka runner, so both produce the same events for
the same arguments.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

from incident_contracts.catalog import Catalog, default_catalog, default_catalog_path, load_catalog
from log_generator import wire
from log_generator.engine import Block, Engine, event_id_prefix
from log_generator.ground_truth import GroundTruth
from log_generator.scenarios import resolve
from log_generator.schedule import Schedule
from log_generator.templates import TemplateSet, default_templates, load_templates
from log_generator.topology import Topology


def resolve_catalog(catalog: Catalog | str | None) -> tuple[Catalog, str]:
    """A Catalog from an object, a file path, or the default catalog; and where it came from."""
    if isinstance(catalog, Catalog):
        return catalog, "(in memory)"
    if catalog is None:
        return default_catalog(), str(default_catalog_path())
    return load_catalog(catalog), str(catalog)


def total_events(rate: float, duration_s: float | None, count: int | None) -> int | None:
    """Events in a run: `count`, or every grid slot inside `duration_s`; the smaller when both are given."""
    totals = []
    if duration_s is not None:
        if duration_s <= 0 or not math.isfinite(duration_s):
            raise ValueError(f"duration must be a positive number of seconds, got {duration_s!r}")
        totals.append(math.ceil(duration_s * rate - 1e-9))
    if count is not None:
        if count <= 0:
            raise ValueError(f"count must be a positive number of events, got {count!r}")
        totals.append(int(count))
    return min(totals) if totals else None


@dataclass
class Simulation:
    scenario: str
    rate: float
    seed: int
    start_ms: int
    total: int | None
    topology: Topology
    schedule: Schedule
    engine: Engine
    truth: GroundTruth
    prefix: str

    @property
    def environment(self) -> str:
        return self.topology.environment

    def blocks(self) -> Iterator[Block]:
        return self.engine.blocks()

    def records(self) -> Iterator[dict]:
        for block in self.engine.blocks():
            yield from wire.records(block, self.prefix, self.environment)

    def sync_truth(self) -> GroundTruth:
        """Bring the ground truth up to date with the schedule (endless runs plan as they go)."""
        known = {i.id for i in self.truth.incidents}
        for incident in self.schedule.incidents:
            if incident.truth.id not in known:
                self.truth.incidents.append(incident.truth)
        self.truth.incidents.sort(key=lambda i: i.start_ms)
        return self.truth


def build_simulation(scenario: str = "mixed", *, rate: float, duration_s: float | None = None,
                     count: int | None = None, seed: int = 0, start_ms: int | None = None,
                     catalog: Catalog | str | None = None, templates: TemplateSet | str | None = None,
                     origin: str | None = None, run_id: str | None = None) -> Simulation:
    if not isinstance(rate, int | float) or not rate > 0 or not math.isfinite(rate):
        raise ValueError(f"rate must be a positive number of events per second, got {rate!r}")
    mode = resolve(scenario)
    start_ms = int(time.time() * 1000) if start_ms is None else int(start_ms)
    total = total_events(rate, duration_s, count)
    cat, catalog_file = resolve_catalog(catalog)
    tpl = templates if isinstance(templates, TemplateSet) else (load_templates(templates) if templates
                                                                 else default_templates())
    topology = Topology(cat)
    span_ms = None if total is None else max(1, math.ceil(total * 1000 / rate))
    schedule = Schedule(mode, topology, start_ms, span_ms, seed, origin=origin)
    engine = Engine(topology, schedule, tpl, rate=rate, start_ms=start_ms, seed=seed, total=total)
    truth = GroundTruth(
        run_id=run_id or f"gen-{start_ms}-{mode}-s{seed}", seed=seed, scenario=mode, rate=float(rate),
        start_ms=start_ms, end_ms=None if span_ms is None else start_ms + span_ms,
        incidents=[i.truth for i in schedule.incidents], catalog_file=catalog_file,
    )
    return Simulation(scenario=mode, rate=float(rate), seed=seed, start_ms=start_ms, total=total,
                      topology=topology, schedule=schedule, engine=engine, truth=truth,
                      prefix=event_id_prefix(seed, start_ms, mode, float(rate)))
