"""The fleet as the generator simulates it: one ServiceModel per catalog service.

Derived once from the catalog: traffic share, latency distribution, endpoints (with the gateway's
upstream routes), dependency edges in both directions and the template context of each service.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cache, cached_property
from statistics import NormalDist

from incident_contracts.catalog import Catalog, ServiceSpec
from log_generator.placeholders import Context, Endpoint, camel

Z95 = NormalDist().inv_cdf(0.95)
Z99 = NormalDist().inv_cdf(0.99)
_inv_cdf = NormalDist().inv_cdf
QUANTILES = 8192

# Kinds that write HTTP access lines.
ACCESS_KINDS = frozenset({"http", "worker"})


def _version(name: str) -> str:
    digest = hashlib.sha256(name.encode()).digest()
    return f"v{digest[0] % 4 + 1}.{digest[1] % 30}.{digest[2] % 12}"


def _package(name: str) -> str:
    return name.split("-")[0] + ("s" if name.split("-")[0] in ("order", "payment", "user", "notification") else "")


@cache
def _z_table() -> tuple[float, ...]:
    """Standard normal quantiles at the midpoints of QUANTILES equal cells (shared by every service)."""
    return tuple(_inv_cdf((i + 0.5) / QUANTILES) for i in range(QUANTILES))


@dataclass(frozen=True)
class LatencyModel:
    """Piecewise log-normal through the catalog's p50, p95 and p99 (all three are met exactly)."""

    p50: float
    p95: float
    sigma_body: float
    sigma_tail: float

    @classmethod
    def from_percentiles(cls, p50: float, p95: float, p99: float) -> LatencyModel:
        body = math.log(p95 / p50) / Z95 if p95 > p50 else 1e-6
        tail = math.log(p99 / p95) / (Z99 - Z95) if p99 > p95 else 1e-6
        return cls(p50, p95, body, tail)

    def at(self, z: float) -> float:
        if z <= Z95:
            return self.p50 * math.exp(self.sigma_body * z)
        return self.p95 * math.exp(self.sigma_tail * (z - Z95))

    def sample(self, u: float) -> float:
        """Latency at quantile u in (0, 1) (exact; `quick` is the table-driven version)."""
        return self.at(_inv_cdf(min(max(u, 1e-9), 1 - 1e-9)))

    @cached_property
    def table(self) -> tuple[float, ...]:
        """Latency at QUANTILES evenly spaced quantiles (cell midpoints)."""
        return tuple(self.at(z) for z in _z_table())

    def quick(self, u: float) -> float:
        return self.table[int(u * QUANTILES)]


@dataclass
class ServiceModel:
    index: int
    spec: ServiceSpec
    name: str
    kind: str
    runtime: str
    hosts: tuple[str, ...]
    weight: float
    error_rate: float
    latency: LatencyModel
    endpoints: tuple[Endpoint, ...]
    dependencies: tuple[str, ...]
    dependents: tuple[str, ...]
    logger: str
    version: str
    flapping: bool
    context: Context

    @property
    def has_access(self) -> bool:
        return self.kind in ACCESS_KINDS

    @property
    def access_style(self) -> str:
        if self.spec.extra.get("routes"):
            return "gateway"
        return self.runtime


def _upstream_for(path: str, routes: dict[str, str], default: str) -> str:
    best = ""
    for prefix in routes:
        if path.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return routes[best] if best else default


class Topology:
    """Services indexed by position and by name, with the dependency graph."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.environment = catalog.environment
        self.services: list[ServiceModel] = []
        for index, spec in enumerate(catalog.services):
            routes = spec.extra.get("routes") or {}
            if not isinstance(routes, dict):
                routes = {}
            endpoints = tuple(
                Endpoint.parse(text, _upstream_for(text.partition(" ")[2] or text, routes, spec.name))
                for text in spec.endpoints
            )
            version = str(spec.extra.get("version") or _version(spec.name))
            context = Context(service=spec.name, app=camel(spec.name), pkg=_package(spec.name), version=version,
                              dependencies=tuple(spec.depends_on), endpoints=endpoints)
            self.services.append(ServiceModel(
                index=index, spec=spec, name=spec.name, kind=spec.kind, runtime=spec.runtime,
                hosts=tuple(spec.hosts), weight=spec.weight, error_rate=spec.baseline_error_rate,
                latency=LatencyModel.from_percentiles(spec.latency.p50_ms, spec.latency.p95_ms,
                                                      spec.latency.p99_ms),
                endpoints=endpoints, dependencies=tuple(spec.depends_on),
                dependents=tuple(catalog.dependents_of(spec.name)),
                logger=spec.logger or spec.name, version=version, flapping=spec.flapping, context=context,
            ))
        self.by_name = {s.name: s for s in self.services}

    def __len__(self) -> int:
        return len(self.services)

    def __getitem__(self, name: str) -> ServiceModel:
        return self.by_name[name]

    def upstream_of(self, name: str) -> list[str]:
        """Services that call `name` indirectly (dependents of dependents), nearest first."""
        direct = set(self.by_name[name].dependents)
        seen: list[str] = []
        frontier = list(self.by_name[name].dependents)
        while frontier:
            nxt = []
            for svc in frontier:
                for up in self.by_name[svc].dependents:
                    if up not in direct and up not in seen and up != name:
                        seen.append(up)
                        nxt.append(up)
            frontier = nxt
        return seen

    def path_target(self, caller: str, affected: set[str]) -> str:
        """Which dependency of `caller` it sees failing: the first one that is affected."""
        for dep in self.by_name[caller].dependencies:
            if dep in affected:
                return dep
        deps = self.by_name[caller].dependencies
        return deps[0] if deps else caller
