"""Severity P1..P4 of an incident, with the reasons that set it, in a responder's words.

Severity follows both what the service is (its tier) and what the failure does: how much of the
service's traffic it hits, how far it departs from normal, how long it has lasted and how many other
services are failing with it. Points add up from independent facts; each fact that adds points is
written as a reason ("error rate 22% = 21x baseline 1.0% for 15 min"):

| fact                                                                  | points    |
|-----------------------------------------------------------------------|-----------|
| tier 1 / tier 2 / tier 3 service                                      | 2 / 1 / 0 |
| (a service not in the catalog counts as DEFAULT_SERVICE_TIER)          |           |
| share of requests failing (error rate) >= 50% / >= 25% / >= 5%         | 3 / 2 / 1 |
| error rate >= 10x its baseline (>= 2x the floor when no baseline yet)  | 1         |
| warning rate >= 25% (warning incidents)                                | 1         |
| silence: traffic <= 10% / <= 50% of the service's usual volume         | 3 / 2     |
| p95 latency >= 5x / >= 2x its baseline (or >= its floor, no baseline)  | 2 / 1     |
| dependent services in incident (blast radius) >= 2 / 1                 | 2 / 1     |
| anomalous for >= 60 min / >= 15 min                                    | 2 / 1     |

P1 at 6 points or more, P2 at 4-5, P3 at 2-3, P4 below. An incident never drops severity while open
(so a long incident escalates and stays escalated).

Examples: a tier-1 service with every request failing (2 + 3 + 1 = 6) is P1 at once; an unknown
service (default tier 2) at 22% errors, 21x its baseline (1 + 1 + 1 = 3) is P3, and P2 once it has
lasted 15 minutes; a tier-3 service 3x slower than usual (0 + 1) stays P4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from incident_contracts.tables import Severity

P1_POINTS, P2_POINTS, P3_POINTS = 6, 4, 2
LONG_INCIDENT_S, VERY_LONG_INCIDENT_S = 15 * 60, 60 * 60
ERROR_SHARE_POINTS = ((0.50, 3), (0.25, 2), (0.05, 1))
DEPARTURE_RATIO = 10.0  # error rate this many times the baseline: one more point
FLOOR_DEPARTURE_RATIO = 2.0  # without a baseline: this many times the floor
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
    discovered: bool = False  # not in the catalog: `tier` is the default tier
    baselined: bool = True  # False: opened on an absolute floor before the service had a baseline
    floor_error_rate: float | None = None
    floor_p95_ms: float | None = None
    volume_share: float | None = None  # silence incidents: events received / events usually sent
    usual_rate_per_s: float | None = None


def parse_tier(value: object) -> int | None:
    """Tier as an int from the catalog's int or an enriched string such as '1', 'tier-1' or 'T1'."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    match = re.search(r"\d+", str(value))
    return int(match.group()) if match else None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s"
    return f"{seconds / 60:.0f} min"


def _percent(rate: float) -> str:
    """22%, 4.5%, 0.31%: as many digits as a responder needs."""
    value = rate * 100
    if value >= 10:
        return f"{value:.0f}%"
    if value >= 1:
        return f"{value:.1f}%"
    return f"{value:.2f}%"


def _tier(facts: SeverityInput) -> tuple[int, str | None]:
    names = {1: "tier 1 service (customer-facing critical)", 2: "tier 2 service", 3: "tier 3 service"}
    points = {1: 2, 2: 1}.get(facts.tier or 0, 0)
    if facts.discovered:
        return points, (f"discovered service (not in the catalog): treated as tier {facts.tier}"
                        if facts.tier else "discovered service (not in the catalog)")
    return points, names.get(facts.tier or 0) if points else None


def _errors(facts: SeverityInput, lasting: str) -> tuple[int, str | None]:
    rate = facts.error_rate
    if rate is None or rate < ERROR_SHARE_POINTS[-1][0]:
        return 0, None
    points = next(p for share, p in ERROR_SHARE_POINTS if rate >= share)
    words = f"error rate {_percent(rate)}"
    if rate >= 0.5:
        words += " (most requests failing)"
    base = facts.baseline_error_rate
    if facts.baselined and base:
        ratio = rate / base
        words += f" = {ratio:.0f}x baseline {_percent(base)}" if ratio >= 2 else f" vs baseline {_percent(base)}"
        points += 1 if ratio >= DEPARTURE_RATIO else 0
    elif facts.floor_error_rate:
        words += f", above the {_percent(facts.floor_error_rate)} floor of its tier (no healthy baseline yet)"
        points += 1 if rate >= FLOOR_DEPARTURE_RATIO * facts.floor_error_rate else 0
    return points, f"{words} for {lasting}"


def _latency(facts: SeverityInput, lasting: str) -> tuple[int, str | None]:
    lat = facts.latency_p95_ms
    if lat is None:
        return 0, None
    base = facts.baseline_latency_p95_ms
    if facts.baselined and base:
        ratio = lat / base
        if ratio < 2:
            return 0, None
        return (2 if ratio >= 5 else 1,
                f"p95 latency {lat:,.0f} ms = {ratio:.1f}x baseline {base:,.0f} ms for {lasting}")
    if facts.floor_p95_ms and lat >= facts.floor_p95_ms:
        return 1, (f"p95 latency {lat:,.0f} ms, above the {facts.floor_p95_ms:,.0f} ms floor of its tier "
                   f"(no healthy baseline yet) for {lasting}")
    return 0, None


def assess(facts: SeverityInput) -> tuple[str, list[str]]:
    points = 0
    reasons: list[str] = []
    lasting = _duration(facts.duration_s)

    def add(result: tuple[int, str | None]) -> None:
        nonlocal points
        points += result[0]
        if result[1]:
            reasons.append(result[1])

    add(_tier(facts))
    add(_errors(facts, lasting))
    warn, warn0 = facts.warning_rate, facts.baseline_warning_rate
    if warn is not None and warn >= 0.25:
        versus = f" vs baseline {_percent(warn0)}" if warn0 is not None else ""
        add((1, f"warning rate {_percent(warn)}{versus} for {lasting}"))
    add(_latency(facts, lasting))
    share = facts.volume_share
    if share is not None and share <= 0.5:
        usual = f" (usually {facts.usual_rate_per_s:,.1f} events/s)" if facts.usual_rate_per_s else ""
        add((3 if share <= 0.1 else 2, f"traffic {_percent(share)} of its usual volume{usual} for {lasting}"))
    dependents = facts.dependents_in_incident
    if dependents:
        add((2 if len(dependents) >= 2 else 1,
             f"{len(dependents)} dependent service(s) failing with it: {', '.join(dependents)}"))
    if facts.duration_s >= LONG_INCIDENT_S:
        add((2 if facts.duration_s >= VERY_LONG_INCIDENT_S else 1, f"anomalous for {lasting}"))
    if points >= P1_POINTS:
        level = Severity.P1
    elif points >= P2_POINTS:
        level = Severity.P2
    elif points >= P3_POINTS:
        level = Severity.P3
    else:
        level = Severity.P4
    if not reasons:
        reasons.append(f"departure from the service's own baseline for {lasting}, small in size and share "
                       "of traffic, on a low-tier service")
    return level.value, reasons


def more_severe(a: str, b: str) -> bool:
    """True when severity `a` is strictly more severe than `b`."""
    return RANK[a] < RANK[b]
