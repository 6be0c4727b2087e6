"""Values of the {placeholders} in message templates.

Each placeholder is an f-string fragment over the per-line variables ``r`` (a 62-bit random integer
drawn for the line), ``lat`` (its latency in ms), ``host``, ``status`` (HTTP status of an access line,
else None) and ``path`` (the request path of an access line). Different placeholders read different
bits of ``r``, so one draw per line fills them all and a line is a pure function of the seed.
`templates.compile_text` splices the fragments into one f-string per template, so rendering a line
is a single f-string evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/128.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "okhttp/4.12.0",
    "shop-ios/6.14.2 (iPhone15,2; iOS 17.5)",
    "shop-android/6.14.0 (Pixel 8; Android 14)",
    "Go-http-client/1.1",
    "python-httpx/0.27.2",
)
QUERIES = (
    "SELECT id, status, total_cents FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 20",
    "SELECT quantity, reserved FROM stock WHERE sku = $1 FOR UPDATE",
    "UPDATE stock SET reserved = reserved + $1 WHERE sku = $2",
    "INSERT INTO payments (id, order_id, amount_cents, state) VALUES ($1, $2, $3, 'AUTHORIZED')",
    "SELECT * FROM users WHERE id = $1",
    "SELECT token_hash, expires_at FROM sessions WHERE user_id = $1 AND revoked = false",
    "UPDATE orders SET status = 'PAID', updated_at = now() WHERE id = $1",
    "SELECT s.id, s.carrier, s.state FROM shipments s JOIN orders o ON o.id = s.order_id WHERE o.id = $1",
)
TABLES = ("orders", "order_items", "payments", "stock", "reservations", "users", "sessions", "shipments")
QUEUES = ("order.created", "payment.captured", "shipment.dispatched", "notification.email", "notification.push")
CACHE_KEYS = ("product", "session", "profile", "stock", "price", "cart")
REASONS = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently", 304: "Not Modified",
           400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


def reason(status: Any) -> str:
    return REASONS.get(status, "")


@dataclass(frozen=True)
class Endpoint:
    """A request route of a service: method, path with an optional {id}, and the upstream serving it."""

    method: str
    head: str
    tail: str | None  # None: the path has no {id}
    upstream: str

    @classmethod
    def parse(cls, text: str, upstream: str) -> Endpoint:
        method, _, path = text.partition(" ") if " " in text else ("GET", "", text)
        head, found, tail = path.partition("{id}")
        return cls(method, head, tail if found else None, upstream)

    def path(self, r: int) -> str:
        if self.tail is None:
            return self.head
        return f"{self.head}{(r >> 13) % 900_000 + 10_000}{self.tail}"


@dataclass
class Context:
    """What placeholders may refer to for one service (and one incident)."""

    service: str
    app: str
    pkg: str
    version: str
    dependencies: tuple[str, ...]
    endpoints: tuple[Endpoint, ...]
    constants: dict[str, str] = field(default_factory=dict)


# Names every compiled template may use (bound in the namespace of the generated function).
GLOBALS: dict[str, Any] = {
    "UA": USER_AGENTS, "QUERIES": QUERIES, "TABLES": TABLES, "QUEUES": QUEUES, "CACHE_KEYS": CACHE_KEYS,
    "reason": reason,
}

# Per-line placeholders: f-string fragments (no quotes or backslashes inside the braces).
FRAGMENTS: dict[str, str] = {
    "user_id": "{(r >> 5) % 9000000 + 1000000}",
    "order_id": "ORD-{(r >> 11) % 100000000:08d}",
    "sku": "SKU-{(r >> 17) % 100000:05d}",
    "id": "{(r >> 13) % 900000 + 10000}",
    "n": "{(r >> 21) % 9000 + 100}",
    "count": "{(r >> 29) % 48 + 2}",
    "big_n": "{(r >> 9) % 90000 + 20000}",
    "attempt": "{(r >> 35) % 3 + 1}",
    "conns": "{(r >> 37) % 12 + 2}",
    "conns_high": "{(r >> 37) % 900 + 9000}",
    "backoff": "{100 << ((r >> 35) % 3)}",
    "db_ms": "{lat * 0.8:.0f}",
    "ms": "{lat:.0f}",
    "latency": "{lat:.3f}",
    "latency_s": "{lat / 1000:.3f}",
    "gc_ms": "{(r >> 41) % 3500 / 100 + 2:.3f}",
    "heap_mb": "{(r >> 43) % 1500 + 900}",
    "heap_hi": "{(r >> 43) % 180 + 3910}",
    "ip": "10.{(r >> 40) % 64}.{(r >> 32) % 256}.{(r >> 24) % 254 + 1}",
    "port": "{(r >> 15) % 30000 + 32768}",
    "pid": "{(r >> 19) % 60000 + 1200}",
    "txid": "{(r >> 4) % 90000000 + 10000000}",
    "hex8": "{(r >> 2) & 0xFFFFFFFF:08x}",
    "hex16": "{r & 0xFFFFFFFFFFFFFFF:015x}",
    "key": "{CACHE_KEYS[(r >> 45) % 6]}:{(r >> 13) % 900000 + 10000}",
    "bytes": "{(r >> 23) % 24000 + 180}",
    "ua": "{UA[(r >> 49) % 8]}",
    "query": "{QUERIES[(r >> 52) % 8]}",
    "table": "{TABLES[(r >> 55) % 8]}",
    "queue": "{QUEUES[(r >> 57) % 5]}",
    "thread": "http-nio-8080-exec-{(r >> 31) % 200 + 1}",
    "host": "{host}",
    "reason": "{reason(status)}",
}
# Depend on the service: filled from the Context when compiling.
CONTEXT_NAMES = ("service", "app", "pkg", "version", "dep", "method", "path", "path_tail", "upstream", "status")

# Filled per incident (Context.constants); listed so a template file can be validated up front.
INCIDENT_CONSTANTS = (
    "origin", "target", "target_app", "bad_version", "good_version", "expiry", "renewed_until", "mount",
    "pct", "pct_rising", "free_gb", "free_pct", "pool_size", "timeout_ms", "timeout_s", "restarts",
)
# Constants that make sense outside incidents get defaults, so background lines may use them.
CONSTANT_DEFAULTS = {"pct": "50", "pool_size": "20", "timeout_ms": "30000", "timeout_s": "30.00"}

KNOWN = frozenset(FRAGMENTS) | frozenset(CONTEXT_NAMES) | frozenset(INCIDENT_CONSTANTS)


def camel(name: str) -> str:
    """order-service -> Order (the class-name prefix used in stack traces)."""
    head = name.split("-")[0]
    return head[:1].upper() + head[1:]
