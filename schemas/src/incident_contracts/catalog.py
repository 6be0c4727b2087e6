"""The service catalog: which services exist, their tier, owner, hosts and dependencies.

One YAML file (`schemas/catalog/services.yaml`, or CATALOG_FILE) that a user edits. The log generator
reads the traffic profile of each service from it; the Spark job enriches events with tier and owner
and links incidents along dependencies; the dashboard and the analysis show the topology.
Validation happens on load and names the service and field at fault.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from incident_contracts.quiet import QuietSchedule, check_timezone, parse_clock, parse_days, window_spans

Kind = Literal["http", "database", "cache", "queue", "worker"]
Runtime = Literal["jvm", "python", "go", "node", "native"]
_ENDPOINT = re.compile(r"^((GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) )?/\S*$")


class CatalogError(ValueError):
    """The catalog file is missing or invalid; the message says where."""


class LatencyProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p50_ms: float = Field(gt=0)
    p95_ms: float = Field(gt=0)
    p99_ms: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> LatencyProfile:
        if not self.p50_ms <= self.p95_ms <= self.p99_ms:
            raise ValueError("latency percentiles must satisfy p50_ms <= p95_ms <= p99_ms")
        return self


class Floor(BaseModel):
    """Absolute health limits: a service beyond them is unhealthy whatever its own history says.

    The detector pages a window of at least `min_events` events whose error rate is (with confidence)
    at or above `error_rate`, or whose 95th-percentile latency is (with confidence) at or above
    `p95_latency_ms`, even during a service's warm-up; its baseline never learns such a window.
    """

    model_config = ConfigDict(extra="forbid")
    error_rate: float = Field(gt=0, le=1, description="share of lines that are errors")
    p95_latency_ms: float = Field(gt=0, description="95th percentile of request latency, milliseconds")
    min_events: int = Field(default=20, ge=1, description="fewest events in a window that can breach a floor")


# Per tier: gross failures only. Well above any healthy service's normal (a chatty service logging one
# error in seven stays under the tier-2 floor); a service whose normal is worse sets its own `floor`.
DEFAULT_FLOORS: dict[int, Floor] = {
    1: Floor(error_rate=0.10, p95_latency_ms=2_000, min_events=20),
    2: Floor(error_rate=0.20, p95_latency_ms=4_000, min_events=20),
    3: Floor(error_rate=0.30, p95_latency_ms=8_000, min_events=20),
}


class QuietWindow(BaseModel):
    """A weekly window in which a service is expected to be silent (incident_contracts.quiet): on each of
    `days` from `from` to `to`, local time; a `to` at or before `from` ends on the next day."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    days: tuple[int, ...] = Field(default=tuple(range(7)), description="'mon-fri', 'sat,sun', 'daily'; 0 = Monday")
    start: int = Field(default=0, alias="from", description="minutes after midnight ('HH:MM' in the file)")
    end: int = Field(default=24 * 60, alias="to", description="minutes after midnight ('HH:MM', up to '24:00')")

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: object) -> tuple[int, ...]:
        return parse_days(value)  # type: ignore[arg-type]

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: object) -> int:
        return parse_clock(value)

    @field_validator("end", mode="before")
    @classmethod
    def _end(cls, value: object) -> int:
        return parse_clock(value, end=True)

    @model_validator(mode="after")
    def _not_empty(self) -> QuietWindow:
        if self.start == self.end:
            clock = f"{self.start // 60:02d}:{self.start % 60:02d}"
            raise ValueError(f"window from {clock} to {clock} is empty; leave out `from` and `to` for whole days")
        return self

    def spans(self) -> tuple[tuple[int, int], ...]:
        return window_spans(self.days, self.start, self.end)


class ServiceSpec(BaseModel):
    """One service. Traffic fields drive the generator; the rest is catalog metadata."""

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: Kind = "http"
    tier: int = Field(ge=1, le=3, description="1 = customer-facing critical, 3 = internal/best effort")
    owner: str
    description: str = ""
    depends_on: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(min_length=1)
    # traffic profile (used by the log generator)
    weight: float = Field(default=1.0, gt=0, description="share of the total event rate, relative")
    baseline_error_rate: float = Field(default=0.005, ge=0, le=1)
    latency: LatencyProfile = LatencyProfile(p50_ms=20, p95_ms=80, p99_ms=200)
    endpoints: list[str] = Field(default_factory=lambda: ["/health"])
    logger: str | None = None
    runtime: Runtime = Field(default="python", description="language runtime: shapes stack traces and GC lines")
    flapping: bool = Field(default=False, description="noisy but harmless: must never page")
    floor: Floor | None = Field(default=None, description="own absolute limits instead of its tier's floors")
    silence: bool | None = Field(default=None, description="false: its volume is no health signal, never "
                                 "judged for silence (a batch job that logs only when it runs); unset: the "
                                 "catalog's `silence`")
    quiet: list[QuietWindow] | None = Field(default=None, description="weekly windows in which silence is "
                                            "expected; unset: the catalog's `quiet`; [] for none")
    timezone: str | None = Field(default=None, description="IANA time zone of its quiet windows; unset: the "
                                 "catalog's `timezone`")
    extra: dict[str, Any] = Field(default_factory=dict, description="free-form data for generators/runbooks")

    @field_validator("endpoints")
    @classmethod
    def _check_endpoints(cls, value: list[str]) -> list[str]:
        for endpoint in value:
            if not _ENDPOINT.match(endpoint):
                raise ValueError(f"endpoint {endpoint!r} must be '/path' or 'METHOD /path' (GET, POST, PUT, "
                                 "PATCH, DELETE, HEAD or OPTIONS)")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = 1
    environment: str = "prod"
    services: list[ServiceSpec] = Field(min_length=1)
    # absolute limits per tier (1-3); a tier left out keeps its default (DEFAULT_FLOORS)
    floors: dict[int, Floor] = Field(default_factory=lambda: dict(DEFAULT_FLOORS))
    # when silence is expected, for every service that does not say otherwise (docs/detection.md)
    silence: bool = Field(default=True, description="false: no service is judged for silence")
    quiet: list[QuietWindow] = Field(default_factory=list, description="weekly quiet windows of every service")
    timezone: str = Field(default="UTC", description="IANA time zone of the quiet windows")

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("floors")
    @classmethod
    def _check_floors(cls, value: dict[int, Floor]) -> dict[int, Floor]:
        unknown = sorted(set(value) - set(DEFAULT_FLOORS))
        if unknown:
            raise ValueError(f"floors are set per tier 1, 2 or 3; unknown tiers {unknown}")
        return {**DEFAULT_FLOORS, **value}

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        names = [s.name for s in self.services]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"duplicate service names: {sorted(duplicates)}")
        known = set(names)
        for service in self.services:
            unknown = set(service.depends_on) - known
            if unknown:
                raise ValueError(f"service {service.name!r} depends on unknown services {sorted(unknown)}")
            if service.name in service.depends_on:
                raise ValueError(f"service {service.name!r} depends on itself")
        self._check_acyclic()
        return self

    def _check_acyclic(self) -> None:
        graph = {s.name: s.depends_on for s in self.services}
        state: dict[str, int] = {}

        def visit(node: str, path: list[str]) -> None:
            if state.get(node) == 2:
                return
            if state.get(node) == 1:
                raise ValueError(f"dependency cycle: {' -> '.join([*path, node])}")
            state[node] = 1
            for dep in graph[node]:
                visit(dep, [*path, node])
            state[node] = 2

        for name in graph:
            visit(name, [])

    # --- queries ---------------------------------------------------------------------------
    def get(self, name: str) -> ServiceSpec | None:
        return next((s for s in self.services if s.name == name), None)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.services]

    def tier_floor(self, tier: int) -> Floor:
        """The absolute limits of a tier (the catalog's, else the default)."""
        return self.floors.get(tier) or DEFAULT_FLOORS[min(max(tier, 1), 3)]

    def floor_of(self, name: str) -> Floor | None:
        """A catalog service's absolute limits: its own `floor`, else its tier's; None if not in the catalog."""
        spec = self.get(name)
        if spec is None:
            return None
        return spec.floor or self.tier_floor(spec.tier)

    def silence_judged(self, name: str) -> bool:
        """Whether a service's volume is a health signal (its own `silence`, else the catalog's); services
        not in the catalog take the catalog's."""
        spec = self.get(name)
        return self.silence if spec is None or spec.silence is None else spec.silence

    def quiet_schedule(self, name: str | None = None) -> QuietSchedule:
        """A service's quiet windows (its own `quiet`, else the catalog's) in its time zone (its own
        `timezone`, else the catalog's); services not in the catalog, and `name` None, take the catalog's."""
        spec = self.get(name) if name is not None else None
        windows = self.quiet if spec is None or spec.quiet is None else spec.quiet
        timezone = self.timezone if spec is None or spec.timezone is None else spec.timezone
        return QuietSchedule(tuple(span for w in windows for span in w.spans()), timezone)

    def dependencies_of(self, name: str, transitive: bool = False) -> list[str]:
        """Services `name` calls (directly, or all the way down)."""
        spec = self.get(name)
        if spec is None:
            return []
        if not transitive:
            return list(spec.depends_on)
        seen: list[str] = []
        stack = list(spec.depends_on)
        while stack:
            dep = stack.pop()
            if dep not in seen:
                seen.append(dep)
                stack.extend(self.get(dep).depends_on if self.get(dep) else [])
        return seen

    def dependents_of(self, name: str, transitive: bool = False) -> list[str]:
        """Services that call `name` (directly, or anywhere upstream)."""
        direct = [s.name for s in self.services if name in s.depends_on]
        if not transitive:
            return direct
        seen: list[str] = []
        stack = list(direct)
        while stack:
            up = stack.pop()
            if up not in seen:
                seen.append(up)
                stack.extend(s.name for s in self.services if up in s.depends_on)
        return seen


def default_catalog_path() -> Path:
    explicit = os.environ.get("CATALOG_FILE")
    if explicit:
        return Path(explicit)
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "catalog" / "services.yaml", here.parent / "catalog" / "services.yaml"):
        if candidate.is_file():
            return candidate
    return here.parents[2] / "catalog" / "services.yaml"


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate the catalog; raise CatalogError saying which file, service and field are wrong."""
    path = Path(path) if path else default_catalog_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"service catalog {path} not found; set CATALOG_FILE or restore "
                           "schemas/catalog/services.yaml") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"service catalog {path} is not valid YAML: {exc}") from None
    try:
        return Catalog.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = list(error["loc"])
            if len(loc) >= 2 and loc[0] == "services" and isinstance(loc[1], int):
                services = (raw or {}).get("services") or []
                name = services[loc[1]].get("name", f"#{loc[1]}") if loc[1] < len(services) else f"#{loc[1]}"
                loc = [f"services[{name}]", *loc[2:]]
            problems.append(f"  {'.'.join(map(str, loc)) or '(file)'}: {error['msg']}")
        raise CatalogError(f"service catalog {path} is invalid:\n" + "\n".join(problems)) from None


@cache
def default_catalog() -> Catalog:
    return load_catalog()
