"""The failure families: one id per kind of incident, shared by everything that names one.

The id is the log generator's scenario name (``log-generator --scenario bad_deploy``, the ground truth's
``scenario``), the key of the dashboard's demo scenario and the id (and file name) of the runbook in
``rca/runbooks/<id>.md``. The category is the root-cause category the generator's ground truth files the
incident under and the offline analysis reports (incident_rca.models.Category); the title is the
runbook's title. What each consumer adds stays with it: the generator's traffic effects, the demo's log
lines, the runbook's diagnosis and remediation.

Not failure families: the generator's ``flapping`` scenario (noise, never an incident) and the runbook
``generic`` (the fallback for an incident that matches no family).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FailureFamily(StrEnum):
    DB_POOL_EXHAUSTION = "db_pool_exhaustion"
    MEMORY_LEAK = "memory_leak"
    SLOW_DEPENDENCY = "slow_dependency"
    BAD_DEPLOY = "bad_deploy"
    DISK_FULL = "disk_full"
    TLS_EXPIRED = "tls_expired"
    CACHE_STAMPEDE = "cache_stampede"

    @property
    def category(self) -> str:
        """Root-cause category: database, memory, dependency, deployment, disk, certificate or cache."""
        return _DETAILS[self].category

    @property
    def title(self) -> str:
        return _DETAILS[self].title


@dataclass(frozen=True)
class _Details:
    category: str
    title: str


_DETAILS = {
    FailureFamily.DB_POOL_EXHAUSTION: _Details("database", "Database connection pool exhaustion"),
    FailureFamily.MEMORY_LEAK: _Details("memory", "Memory leak ending in out-of-memory kills and restarts"),
    FailureFamily.SLOW_DEPENDENCY: _Details("dependency", "Latency from a slow downstream dependency"),
    FailureFamily.BAD_DEPLOY: _Details("deployment", "Bad deploy causing 5xx errors"),
    FailureFamily.DISK_FULL: _Details("disk", "Disk full (no space left on device)"),
    FailureFamily.TLS_EXPIRED: _Details("certificate", "Expired TLS certificate"),
    FailureFamily.CACHE_STAMPEDE: _Details("cache", "Cache stampede after mass expiry"),
}

