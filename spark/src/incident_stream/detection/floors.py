"""Absolute floors: limits beyond which a service is unhealthy whatever its own history says.

A baseline learned from a service's own past cannot tell that the service was failing from its first
minute (a deployment that never worked), nor page before it has any history. Floors can: per tier
(the catalog's `floors`, defaults in incident_contracts.catalog.DEFAULT_FLOORS), or per service (its
own `floor` in the catalog). A service missing from the catalog gets the floors of the default tier
(DEFAULT_SERVICE_TIER).

The detector reads them as plain tuples (error rate, p95 latency in ms, fewest events), so the Spark
processor can carry them without the catalog's models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from incident_contracts.catalog import DEFAULT_FLOORS, Catalog


@dataclass(frozen=True)
class Floor:
    error_rate: float
    p95_latency_ms: float
    min_events: int


def _plain(floor) -> Floor:
    return Floor(float(floor.error_rate), float(floor.p95_latency_ms), int(floor.min_events))


@dataclass(frozen=True)
class FloorPolicy:
    """The floor of every service: its own, else its tier's; a service of unknown tier uses `default_tier`."""

    tiers: dict[int, Floor] = field(default_factory=lambda: {t: _plain(f) for t, f in DEFAULT_FLOORS.items()})
    services: dict[str, Floor] = field(default_factory=dict)

    @classmethod
    def of_catalog(cls, catalog: Catalog) -> FloorPolicy:
        tiers = {t: _plain(catalog.tier_floor(t)) for t in DEFAULT_FLOORS}
        services = {s.name: _plain(s.floor) for s in catalog.services if s.floor is not None}
        return cls(tiers, services)

    def floor(self, service: str, tier: int | None, default_tier: int) -> Floor:
        own = self.services.get(service)
        if own is not None:
            return own
        t = default_tier if tier is None else min(max(tier, 1), 3)
        return self.tiers.get(t) or self.tiers[min(self.tiers)]
