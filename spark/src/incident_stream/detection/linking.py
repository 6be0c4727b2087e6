"""Linking incidents along service dependencies to a likely origin.

Two incidents are linked when one service depends on the other (directly or through other services,
per the catalog) and their spans overlap, give or take `link_slack_s`. An incident's likely origin is
the deepest dependency that is itself in a linked incident: among the linked incidents on services it
depends on, the one whose own dependencies are not in incident (ties: the earliest to open, then the
name). The origin of a group carries its own id as origin; an incident linked to nothing has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Span:
    incident_id: str
    service: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Link:
    origin_service: str | None
    origin_incident_id: str | None
    linked_incident_ids: tuple[str, ...]
    dependents_in_incident: tuple[str, ...]


class DependencyGraph:
    """Transitive dependency queries over {service: [direct dependencies]}."""

    def __init__(self, depends_on: dict[str, list[str]]) -> None:
        self._deps = {k: tuple(v) for k, v in depends_on.items()}
        self.below = cache(self._below)
        self.above = cache(self._above)

    def _below(self, service: str) -> frozenset[str]:
        seen: set[str] = set()
        stack = list(self._deps.get(service, ()))
        while stack:
            dep = stack.pop()
            if dep not in seen:
                seen.add(dep)
                stack.extend(self._deps.get(dep, ()))
        return frozenset(seen)

    def _above(self, service: str) -> frozenset[str]:
        return frozenset(s for s in self._deps if service in self.below(s))


def link(spans: list[Span], graph: DependencyGraph, slack_ms: int) -> dict[str, Link]:
    """The link of every span, keyed by incident id."""
    result: dict[str, Link] = {}
    for x in spans:
        below = graph.below(x.service)
        above = graph.above(x.service)
        related = [y for y in spans if y.incident_id != x.incident_id and _overlap(x, y, slack_ms)
                   and (y.service in below or y.service in above)]
        causes = [y for y in related if y.service in below]
        dependents = sorted({y.service for y in related if y.service in above})
        if causes:
            roots = [y for y in causes if not any(z.service in graph.below(y.service) for z in causes)]
            origin = min(roots, key=lambda y: (y.start_ms, y.service, y.incident_id))
            origin_service, origin_id = origin.service, origin.incident_id
        elif related:
            origin_service, origin_id = x.service, x.incident_id
        else:
            origin_service = origin_id = None
        result[x.incident_id] = Link(origin_service, origin_id,
                                     tuple(sorted(y.incident_id for y in related)), tuple(dependents))
    return result


def _overlap(a: Span, b: Span, slack_ms: int) -> bool:
    return a.start_ms <= b.end_ms + slack_ms and b.start_ms <= a.end_ms + slack_ms
