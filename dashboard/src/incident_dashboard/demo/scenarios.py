"""Failure scenarios of the demo data: what each failure type looks like in the logs.

One per failure family (incident_contracts.failures), as the log generator's scenarios, close enough to
exercise the dashboard and the offline analyzer; the generator remains the authority on real traffic.
Signatures are computed as the job computes them (incident_contracts.signature).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from incident_contracts.failures import FailureFamily


@dataclass(frozen=True)
class Scenario:
    family: FailureFamily  # the failure family: also the generator's scenario and the runbook it calls for
    title: str
    origin: str  # service where it starts
    callers: tuple[str, ...]  # services that feel it
    trigger: str
    reasons: tuple[str, ...]
    origin_messages: tuple[str, ...]
    caller_messages: tuple[str, ...] = ()
    error_type: str = ""
    http_status: int = 500
    latency_factor: float = 1.0
    error_share: float = 0.5  # share of the origin's events that are errors during the incident
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def category(self) -> str:
        """Root-cause category (the family's), as in the log generator's ground truth."""
        return self.family.category


SCENARIOS: dict[FailureFamily, Scenario] = {s.family: s for s in (
    Scenario(
        family=FailureFamily.DB_POOL_EXHAUSTION, origin="order-service", callers=("api-gateway",),
        title="order-service: database connection pool exhausted",
        trigger="error_rate", error_type="SQLTransientConnectionException", http_status=503,
        latency_factor=25.0, error_share=0.6,
        reasons=("error rate 38% vs baseline 0.4%", "tier-1 service", "customer-facing endpoint /orders"),
        origin_messages=(
            "HikariPool-{small} - Connection is not available, request timed out after {timeout}ms.",
            "java.sql.SQLTransientConnectionException: HikariPool-{small} - Connection is not available, "
            "request timed out after {timeout}ms.",
            "Failed to obtain JDBC Connection; nested exception is java.sql.SQLTransientConnectionException",
            "HikariPool-{small} - Pool stats (total={pool}, active={pool}, idle=0, waiting={waiting})",
        ),
        caller_messages=("upstream order-service returned 503 Service Unavailable for POST /api/v1/orders "
                         "after {timeout}ms",),
    ),
    Scenario(
        family=FailureFamily.MEMORY_LEAK, origin="search-service", callers=("api-gateway",),
        title="search-service: out-of-memory kills and restarts",
        trigger="error_rate", error_type="OutOfMemoryError", http_status=502, latency_factor=4.0,
        error_share=0.35,
        reasons=("error rate 21% vs baseline 0.3%", "container restarts on 2 hosts"),
        origin_messages=(
            "java.lang.OutOfMemoryError: Java heap space",
            "Container search-{small} was OOMKilled (exit code 137); restarting (restart count {small})",
            "GC overhead limit exceeded: {pct}% of time spent in GC, heap {heap}MB of 2048MB used",
            "Back-off restarting failed container search in pod search-{hex}",
        ),
        caller_messages=("upstream search-service connection reset by peer during GET /api/v1/search",),
    ),
    Scenario(
        family=FailureFamily.SLOW_DEPENDENCY, origin="auth-service", callers=("api-gateway",),
        title="auth-service: slow responses, thread pool saturated",
        trigger="latency", error_type="TimeoutException", http_status=504, latency_factor=40.0,
        error_share=0.25,
        reasons=("p95 latency 3900 ms vs baseline 90 ms", "dependency auth-service degraded"),
        origin_messages=(
            "Slow request: POST /token/refresh took {slow}ms (threshold 500ms)",
            "Thread pool saturated: {waiting} requests queued, all {pool} workers busy",
        ),
        caller_messages=(
            "Upstream request timeout after {timeout}ms calling auth-service POST /token/refresh",
            "Circuit breaker 'auth-service' is OPEN; failing fast for GET /api/v1/login",
            "Read timed out after {timeout} ms to http://auth-service:8080/login",
        ),
    ),
    Scenario(
        family=FailureFamily.BAD_DEPLOY, origin="order-service", callers=("api-gateway",),
        title="order-service: 5xx after deploy v2.{small}.0",
        trigger="new_signature", error_type="NullPointerException", http_status=500, latency_factor=1.3,
        error_share=0.45,
        reasons=("new error signature after deploy", "error rate 30% vs baseline 0.4%"),
        origin_messages=(
            "Deployment order-service v2.{small}.0 rolled out (revision {num})",
            "java.lang.NullPointerException: Cannot invoke \"Currency.getCode()\" because \"price.currency\" is "
            "null at com.shop.orders.PriceCalculator.apply(PriceCalculator.java:{small})",
            "HTTP 500 Internal Server Error for POST /orders (handler OrderController.create)",
            "Unhandled exception in request handler: KeyError 'currency' (release v2.{small}.0)",
        ),
        caller_messages=("upstream order-service returned 500 Internal Server Error for POST /api/v1/orders",),
    ),
    Scenario(
        family=FailureFamily.DISK_FULL, origin="postgres-primary", callers=("order-service", "auth-service"),
        title="postgres-primary: no space left on device",
        trigger="error_rate", error_type="DiskFullError", http_status=500, latency_factor=2.0,
        error_share=0.5,
        reasons=("error rate 45% vs baseline 0.1%", "writes failing on the primary database"),
        origin_messages=(
            "ERROR: could not extend file \"base/{num}/{num}\": No space left on device",
            "PANIC: could not write to file \"pg_wal/xlogtemp.{num}\": No space left on device",
            "disk usage on /var/lib/postgresql/data at {pct_high}% ({num} MB free)",
            "ENOSPC: no space left on device, write",
        ),
        caller_messages=("org.postgresql.util.PSQLException: ERROR: could not extend file: No space left on device",),
    ),
    Scenario(
        family=FailureFamily.TLS_EXPIRED, origin="auth-service", callers=("api-gateway",),
        title="auth-service: TLS handshakes failing (certificate expired)",
        trigger="error_rate", error_type="SSLHandshakeException", http_status=502, latency_factor=1.1,
        error_share=0.7,
        reasons=("error rate 70% vs baseline 0.2%", "every call to auth-service fails"),
        origin_messages=(
            "x509: certificate has expired or is not yet valid: current time {iso} is after 2026-11-20T23:59:59Z",
            "TLS handshake error from {ip}: remote error: tls: bad certificate",
        ),
        caller_messages=(
            "javax.net.ssl.SSLHandshakeException: PKIX path validation failed: "
            "java.security.cert.CertificateExpiredException: NotAfter: Fri Nov 20 23:59:59 UTC 2026",
            "SSL handshake failed with auth-service:8443: certificate has expired (CERTIFICATE_VERIFY_FAILED)",
        ),
    ),
    Scenario(
        family=FailureFamily.CACHE_STAMPEDE, origin="redis-cache", callers=("search-service", "auth-service"),
        title="redis-cache: cache stampede after mass expiry",
        trigger="latency", error_type="RedisTimeoutException", http_status=503, latency_factor=12.0,
        error_share=0.3,
        reasons=("p95 latency 1300 ms vs baseline 110 ms", "cache hit ratio dropped to 12%"),
        origin_messages=(
            "Cache miss storm: {num} misses in 10s for key prefix product:*",
            "Redis command GET timed out after {slow}ms (connected clients {num})",
            "ERR max number of clients reached",
            "Lock wait for cache rebuild of key product:{num} timed out after {timeout}ms",
        ),
        caller_messages=("Cache unavailable, falling back to database for key product:{num} (hit ratio {pct}%)",),
    ),
)}

FLAPPING_MESSAGES = (
    "Health check to {ip} flapped: 1 failure in the last 5 checks",
    "Retrying connection to metrics sink (attempt {small})",
)

NORMAL_MESSAGES = {
    "http": (
        "{method} {path} {status} in {ms}ms",
        "Request completed {method} {path} status={status} duration={ms}ms",
        "Served {path} for user session {hex} in {ms}ms",
    ),
    "database": (
        "Query executed in {ms}ms rows={small}",
        "checkpoint complete: wrote {num} buffers ({pct}%)",
        "autovacuum: processing table orders",
    ),
    "cache": (
        "GET product:{num} hit in {ms}ms",
        "SET session:{hex} ttl=3600 in {ms}ms",
    ),
}

BASELINE_ERRORS = (
    "Request validation failed: missing field 'sku' in POST {path}",
    "Client closed request before response was sent ({ms}ms)",
    "Upstream returned 502 Bad Gateway for {path}",
    "Rate limit exceeded for client {ip}",
)


def render(template: str, rng: random.Random, *, path: str = "/health", method: str = "GET",
           status: int = 200) -> str:
    """Fill a template's placeholders with plausible random values."""
    values = {
        "small": rng.randint(1, 20), "num": rng.randint(100, 99999), "timeout": rng.choice((3000, 5000, 30000)),
        "pool": rng.choice((20, 50)), "waiting": rng.randint(10, 300), "pct": rng.randint(10, 99),
        "pct_high": rng.randint(97, 100), "heap": rng.randint(1900, 2048), "slow": rng.randint(800, 9000),
        "ms": rng.randint(2, 400), "hex": f"{rng.getrandbits(48):012x}",
        "ip": f"10.0.{rng.randint(0, 9)}.{rng.randint(2, 250)}",
        "iso": "2026-11-23T10:00:00Z", "path": path, "method": method, "status": status,
    }
    return template.format(**values)
