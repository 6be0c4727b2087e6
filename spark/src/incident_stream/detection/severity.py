"""Severity P1..P4 of an incident, with the reasons that set it.

Points add up from independent facts; each fact that adds points is written as a reason:

| fact                                   | points |
|----------------------------------------|--------|
| tier 1 service (customer-facing)       | 2      |
| tier 2 service                         | 1      |
| error rate >= 25% / >= 5%              | 2 / 1  |
| warning rate >= 25% (warning incidents)| 1      |
| p95 latency >= 5x / >= 2x baseline     | 2 / 1  |
| dependent services in incident >= 2 / 1| 2 / 1  |
| open for >= 30 minutes                 | 1      |

P1 at 6 points or more, P2 at 4-5, P3 at 2-3, P4 below. An incident never drops severity while open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from incident_contracts.tables import Severity

P1_POINTS, P2_POINTS, P3_POINTS = 6, 4, 2
LONG_INCIDENT_S = 30 * 60
RANK = {Severity.P1.value: 1, Severity.P2.value: 2, Severity.P3.value: 3, Severity.P4.value: 4}


@dataclass(frozen=True)
class SeverityInput:
    tier: int | None
    error_rate: float | None
    baseline_error_rate: float | None
    latency_p95_ms: float | None
    baseline_latency_p95_ms: float | None
    dependents_in_incident: tuple[str, ...]
    duration_s: float
    warning_rate: float | None = None  # set for incidents triggered by warnings
    baseline_warning_rate: float | None = None


def parse_tier(value: object) -> int | None:
    """Tier as an int from the catalog's int or an enriched string such as '1', 'tier-1' or 'T1'."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    match = re.search(r"\d+", str(value))
    return int(match.group()) if match else None


def assess(facts: SeverityInput) -> tuple[str, list[str]]:
    points = 0
    reasons: list[str] = []
    if facts.tier == 1:
        points += 2
        reasons.append("tier 1 service (customer-facing critical)")
    elif facts.tier == 2:
        points += 1
        reasons.append("tier 2 service")
    rate, base = facts.error_rate, facts.baseline_error_rate
    if rate is not None and rate >= 0.05:
        points += 2 if rate >= 0.25 else 1
        versus = f" vs baseline {base:.2%}" if base is not None else ""
        reasons.append(f"error rate {rate:.1%}{versus}")
    warn, warn0 = facts.warning_rate, facts.baseline_warning_rate
    if warn is not None and warn >= 0.25:
        points += 1
        versus = f" vs baseline {warn0:.2%}" if warn0 is not None else ""
        reasons.append(f"warning rate {warn:.1%}{versus}")
    lat, lat0 = facts.latency_p95_ms, facts.baseline_latency_p95_ms
    if lat is not None and lat0 and lat >= 2 * lat0:
        ratio = lat / lat0
        points += 2 if ratio >= 5 else 1
        reasons.append(f"p95 latency {lat:,.0f} ms vs baseline {lat0:,.0f} ms ({ratio:.1f}x)")
    dependents = facts.dependents_in_incident
    if dependents:
        points += 2 if len(dependents) >= 2 else 1
        reasons.append(f"{len(dependents)} dependent service(s) in incident: {', '.join(dependents)}")
    if facts.duration_s >= LONG_INCIDENT_S:
        points += 1
        reasons.append(f"open for {facts.duration_s / 60:.0f} min")
    if points >= P1_POINTS:
        level = Severity.P1
    elif points >= P2_POINTS:
        level = Severity.P2
    elif points >= P3_POINTS:
        level = Severity.P3
    else:
        level = Severity.P4
    if not reasons:
        reasons.append("departure from the service's baseline on a low-tier service")
    return level.value, reasons


def more_severe(a: str, b: str) -> bool:
    """True when severity `a` is strictly more severe than `b`."""
    return RANK[a] < RANK[b]
