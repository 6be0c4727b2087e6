"""Incident scenarios: what goes wrong, where it starts, how it spreads, and the lines it writes.

A scenario is declarative: an :class:`Effect` for the origin service, one for its direct callers
(``dependents``) and one for services further upstream, plus optional ``related`` services (the
database behind a cache stampede). Effects scale with the incident's intensity, which ramps up, holds
on a plateau and recovers; callers follow the origin after a short lag. Each effect may raise the
share of failed requests, stretch latency, change traffic volume and inject scenario lines (message
templates from templates.yaml, ``{runtime}`` picking the variant for the service's language).

Every scenario but one plays a failure family (incident_contracts.failures), whose id is its name and
whose category it reports in the ground truth. The ``flapping`` scenario is noise on purpose: short
health-check bursts on a service flagged ``flapping`` in the catalog. It is recorded in the ground truth
with ``expect_incident: false``.
"""

from __future__ import annotations

from dataclasses import dataclass

from incident_contracts.failures import FailureFamily

# When a scenario line is written, relative to the incident's phases.
WHEN = ("active", "ramp", "plateau", "recovery", "down")
# Special timing patterns on top of ramp / plateau / recovery.
PATTERNS = ("smooth", "bursts", "restarts", "rollout")


@dataclass(frozen=True)
class Line:
    """A scenario line: template key, share of the service's lines at full intensity, and timing."""

    key: str
    share: float
    when: str = "active"
    latency: tuple[float, float] | None = None  # latency_ms range of the line (None: service latency)
    only_styles: tuple[str, ...] = ()  # restrict to services whose access style is one of these
    focus: bool = False  # only from the incident's focus hosts


@dataclass(frozen=True)
class Effect:
    """How one service behaves at full intensity."""

    error: float = 0.0  # extra share of failed requests (access lines with an error status)
    statuses: tuple[tuple[int, float], ...] = ((503, 1.0),)
    error_latency: tuple[float, float] | None = None  # latency of failed requests (timeouts)
    latency: float = 1.0  # multiplier of request latency
    volume: float = 1.0  # multiplier of the service's traffic share
    lines: tuple[Line, ...] = ()
    focus: bool = False  # failures only from the incident's focus hosts
    down_error: float = 0.0  # extra failed requests while an origin host is down (restarts)


@dataclass(frozen=True)
class OneShot:
    """A single line at a phase boundary: start, plateau, recovery, end; or per pattern step."""

    at: str  # start | plateau | recovery | end | rollout | restart | restarted | burst_end
    key: str
    role: str = "origin"
    offset_s: float = 0.0


@dataclass(frozen=True)
class Scenario:
    name: str
    category: str
    description: str
    origins: tuple[str, ...]  # preferred origin services, by name
    origin_kind: tuple[str, ...]  # fallback: any service of these kinds
    phases: tuple[float, float, float]  # ramp, plateau, recovery as fractions of the incident window
    origin: Effect
    dependents: Effect | None = None
    upstream: Effect | None = None
    related: tuple[tuple[str, Effect], ...] = ()  # (kind of a dependency of the origin, effect)
    one_shots: tuple[OneShot, ...] = ()
    pattern: str = "smooth"
    focus_hosts: int | None = None  # how many origin hosts are hit (None: all)
    expect_incident: bool = True

    @property
    def family(self) -> FailureFamily | None:
        """The failure family this scenario plays (None for noise: flapping)."""
        return FailureFamily(self.name) if self.expect_incident else None


_UPSTREAM_5XX = Effect(
    error=0.06, statuses=((502, 0.45), (504, 0.55)), error_latency=(2000, 10000), latency=1.6,
    lines=(Line("upstream_timeout", 0.02, only_styles=("gateway",)),
           Line("upstream_error", 0.015, only_styles=("jvm", "python", "go", "node"))),
)

SCENARIOS: dict[str, Scenario] = {}


def _register(scenario: Scenario) -> Scenario:
    SCENARIOS[scenario.name] = scenario
    return scenario


def _family_scenario(family: FailureFamily, **fields) -> Scenario:
    """A scenario of a failure family: its name and category are the family's (incident_contracts.failures)."""
    return Scenario(name=family.value, category=family.category, **fields)


_register(_family_scenario(
    FailureFamily.DB_POOL_EXHAUSTION,
    description="Slow, lock-waiting queries hold connections until the database refuses new ones; every "
                "service using it times out waiting for a pooled connection.",
    origins=("postgres-primary",), origin_kind=("database",),
    phases=(0.25, 0.55, 0.20),
    origin=Effect(latency=12.0, lines=(
        Line("db_slow_query", 0.20, latency=(400, 15000)),
        Line("db_lock_wait", 0.06),
        Line("db_too_many_clients", 0.12, when="plateau"),
    )),
    dependents=Effect(error=0.22, statuses=((503, 0.7), (500, 0.3)), error_latency=(29000, 30500), latency=4.0,
                      lines=(Line("pool_timeout_{runtime}", 0.10),)),
    upstream=_UPSTREAM_5XX,
))

_register(_family_scenario(
    FailureFamily.MEMORY_LEAK,
    description="Heap grows with every request; garbage collection pauses lengthen until the instance is "
                "killed for exceeding its memory limit and restarts, over and over.",
    origins=("order-service", "recommendation-service", "search-service", "payment-service"),
    origin_kind=("http", "worker"),
    phases=(0.45, 0.40, 0.15),
    origin=Effect(error=0.04, statuses=((500, 0.5), (503, 0.5)), latency=3.5, down_error=0.0, lines=(
        Line("gc_pressure_{runtime}", 0.08, latency=(300, 4000)),
    )),
    dependents=Effect(error=0.02, statuses=((502, 0.5), (503, 0.5)), latency=1.8, down_error=0.25, lines=(
        Line("connection_refused", 0.08, when="down"),
        Line("retry_call", 0.05, when="down"),
    )),
    upstream=Effect(error=0.01, statuses=((502, 1.0),), latency=1.3, down_error=0.06),
    one_shots=(OneShot("restart", "oom_{runtime}"), OneShot("restart", "oom_killed"),
               OneShot("restarted", "service_started")),
    pattern="restarts",
))

_register(_family_scenario(
    FailureFamily.SLOW_DEPENDENCY,
    description="A downstream service slows down (lock contention); its callers hit their timeouts, retry, "
                "and open circuit breakers; the edge returns 504s.",
    origins=("inventory-service", "payment-service", "user-service", "search-service"),
    origin_kind=("http",),
    phases=(0.20, 0.60, 0.20),
    origin=Effect(error=0.02, statuses=((503, 1.0),), latency=14.0, lines=(
        Line("slow_handler", 0.10, latency=(1500, 9000)),
    )),
    dependents=Effect(error=0.20, statuses=((504, 0.7), (503, 0.3)), error_latency=(2000, 2100), latency=3.0,
                      lines=(Line("dependency_timeout_{runtime}", 0.10),
                             Line("retry_call", 0.05),
                             Line("circuit_open", 0.004, when="plateau"))),
    upstream=_UPSTREAM_5XX,
))

_register(_family_scenario(
    FailureFamily.BAD_DEPLOY,
    description="A release with a null-handling bug rolls out pod by pod; failed requests climb until the "
                "release is rolled back.",
    origins=("payment-service", "order-service", "user-service", "search-service", "inventory-service"),
    origin_kind=("http",),
    phases=(0.15, 0.60, 0.25),
    origin=Effect(error=0.30, statuses=((500, 1.0),), latency=1.2, lines=(
        Line("deploy_error_{runtime}", 0.12),
    )),
    dependents=Effect(error=0.12, statuses=((502, 0.6), (500, 0.4)), latency=1.1,
                      lines=(Line("upstream_error", 0.04),)),
    upstream=Effect(error=0.05, statuses=((502, 1.0),), latency=1.05),
    one_shots=(OneShot("start", "deploy_started"), OneShot("rollout", "deploy_pod_ready"),
               OneShot("recovery", "rollback_started")),
    pattern="rollout",
))

_register(_family_scenario(
    FailureFamily.DISK_FULL,
    description="A data volume on one instance fills up; writes fail with 'No space left on device' and the "
                "index goes read-only until space is freed.",
    origins=("search-service", "shipping-service"),
    origin_kind=("http",),
    phases=(0.35, 0.45, 0.20),
    origin=Effect(error=0.25, statuses=((500, 0.6), (503, 0.4)), latency=1.5, focus=True, lines=(
        Line("disk_usage_warn", 0.03, when="ramp", focus=True),
        Line("disk_watermark", 0.02, when="plateau", focus=True),
        Line("disk_write_failed_{runtime}", 0.10, when="plateau", focus=True),
        Line("disk_read_only", 0.05, when="plateau", focus=True),
    )),
    dependents=Effect(error=0.08, statuses=((502, 0.5), (500, 0.5)), latency=1.2,
                      lines=(Line("upstream_error", 0.03),)),
    upstream=Effect(error=0.03, statuses=((502, 1.0),), latency=1.05),
    one_shots=(OneShot("end", "disk_cleaned"),),
    focus_hosts=1,
))

_register(_family_scenario(
    FailureFamily.TLS_EXPIRED,
    description="The server certificate of a service expires at a fixed instant; every caller's TLS "
                "handshake fails until the certificate is renewed.",
    origins=("payment-service", "inventory-service", "user-service"),
    origin_kind=("http",),
    phases=(0.02, 0.78, 0.20),
    origin=Effect(volume=0.35, lines=(Line("tls_handshake_error", 0.45),)),
    dependents=Effect(error=0.45, statuses=((502, 0.5), (503, 0.5)), error_latency=(3, 40), latency=1.0,
                      lines=(Line("tls_client_error_{runtime}", 0.20),)),
    upstream=Effect(error=0.10, statuses=((502, 1.0),), error_latency=(5, 80)),
    one_shots=(OneShot("recovery", "tls_renewed"),),
))

_register(_family_scenario(
    FailureFamily.CACHE_STAMPEDE,
    description="A hot keyspace expires at once; every caller misses and recomputes from the database at the "
                "same time, overloading the cache connections and the database.",
    origins=("redis-cache",), origin_kind=("cache",),
    phases=(0.10, 0.65, 0.25),
    origin=Effect(latency=6.0, lines=(
        Line("cache_mass_expiry", 0.06, when="ramp"),
        Line("cache_clients_high", 0.10),
    )),
    dependents=Effect(error=0.07, statuses=((504, 0.5), (503, 0.5)), error_latency=(500, 3000), latency=3.5,
                      lines=(Line("cache_miss_recompute", 0.15), Line("cache_backend_overload", 0.05))),
    upstream=Effect(error=0.02, statuses=((504, 1.0),), error_latency=(2000, 8000), latency=1.8),
    related=(("database", Effect(latency=5.0, lines=(Line("db_slow_query", 0.12, latency=(300, 6000)),))),),
    one_shots=(OneShot("start", "cache_mass_expiry"),),
))

_register(Scenario(
    name="flapping",
    category="flapping",
    description="A non-critical service's health check flaps for a few seconds at a time during config "
                "reloads. Noisy, harmless, and not an incident.",
    origins=(), origin_kind=(),
    phases=(0.0, 1.0, 0.0),
    origin=Effect(error=0.10, statuses=((503, 1.0),), lines=(
        Line("flap_health_failed", 0.25),
        Line("flap_reload", 0.06),
    )),
    one_shots=(OneShot("burst_end", "flap_recovered"),),
    pattern="bursts",
    expect_incident=False,
))

# Scenarios a `mixed` run draws from (flapping is added on top as background noise).
REAL_SCENARIOS = tuple(name for name, s in SCENARIOS.items() if s.expect_incident)
MODES = ("mixed", "none")


def resolve(name: str) -> str:
    """Canonical scenario name (case, and ``-`` for ``_``, do not matter); `mixed` and `none` are modes.

    Raises ValueError naming the choices."""
    key = name.strip().lower().replace("-", "_")
    if key in MODES or key in SCENARIOS:
        return key
    raise ValueError(f"unknown scenario {name!r}; choose one of: {', '.join([*SCENARIOS, *MODES])}")
