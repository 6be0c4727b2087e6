"""When a service's silence is expected: its known quiet periods, or never judged at all.

The catalog says, per service and as a default for every service (incident_contracts.catalog): `silence:
false` for a service whose volume is no health signal (a batch job that logs only when it runs), and
`quiet` windows (a weekly schedule in a `timezone`, incident_contracts.quiet) in which it is expected to
be silent. In a bucket whose event time is in such a window (or always, with `silence: false`) the
engine does not judge the service's volume, and its tracker does not learn its usual volume from the
bucket (tracker.py). Services not in the catalog take the catalog's defaults.

Like floors.FloorPolicy, a plain value the Spark processor carries without the catalog's models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from incident_contracts.catalog import Catalog
from incident_contracts.quiet import QuietSchedule


@dataclass(frozen=True)
class SilencePolicy:
    """Each service's quiet schedule and whether its volume is judged at all; `default_*` for the others."""

    default_schedule: QuietSchedule = field(default_factory=QuietSchedule)
    default_judged: bool = True
    schedules: dict[str, QuietSchedule] = field(default_factory=dict)
    judged: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def of_catalog(cls, catalog: Catalog) -> SilencePolicy:
        names = [s.name for s in catalog.services]
        return cls(catalog.quiet_schedule(), catalog.silence, {n: catalog.quiet_schedule(n) for n in names},
                   {n: catalog.silence_judged(n) for n in names})

    def expected(self, service: str, t_ms: int) -> bool:
        """Whether silence is expected of `service` at event time `t_ms` (epoch ms): its volume is not
        judged then (`silence: false`, or inside one of its quiet windows)."""
        if not self.judged.get(service, self.default_judged):
            return True
        return self.schedules.get(service, self.default_schedule).contains(t_ms)
