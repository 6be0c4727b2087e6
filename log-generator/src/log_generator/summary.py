"""What a run reports at the end (printed, returned by the API, and saved as summary.json)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class ReplayStats:
    source: str
    format: str
    lines_read: int = 0
    parsed: int = 0
    unparsed: int = 0
    blank: int = 0
    continuation: int = 0  # lines joined to the entry before them (stack traces)
    unparsed_samples: list[str] = field(default_factory=list)  # "line N: <text> (reason)"
    unparsed_file: str | None = None
    unparsed_reasons: dict[str, int] = field(default_factory=dict)  # reason -> lines
    detected: str | None = None  # with --format auto: which format was chosen, and why


@dataclass
class RunSummary:
    run_id: str
    mode: str  # generate | replay
    scenario: str
    topic: str
    bootstrap_servers: str
    events_sent: int
    delivered: int
    failed: int
    duration_s: float  # wall-clock seconds from the first send to the end of the flush
    actual_rate: float  # delivered events per second, from the delivered messages' Kafka timestamps
    target_rate: float | None
    speedup: float | None
    seed: int | None
    partitions: dict[int, int]
    first_event_ms: int | None  # event-time range of what was sent
    last_event_ms: int | None
    manifest_path: str | None
    run_dir: str
    interrupted: bool = False
    undelivered: int = 0  # still queued when the flush timed out (included in failed)
    errors: dict[str, int] = field(default_factory=dict)
    incidents: int = 0
    replay: ReplayStats | None = None

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.delivered == self.events_sent

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["partitions"] = {str(k): v for k, v in sorted(self.partitions.items())}
        data["first_event_time"] = _iso(self.first_event_ms)
        data["last_event_time"] = _iso(self.last_event_ms)
        return data

    def render(self) -> str:
        """Human-readable summary for the terminal."""
        lines = [
            f"run {self.run_id} ({self.mode}{', interrupted' if self.interrupted else ''})",
            f"  topic            {self.topic} @ {self.bootstrap_servers}",
            f"  events sent      {self.events_sent:,}",
            f"  delivered        {self.delivered:,}",
            f"  failed           {self.failed:,}" + (f" ({self.undelivered:,} undelivered at exit)"
                                                       if self.undelivered else ""),
            f"  actual rate      {self.actual_rate:,.1f} events/s"
            + (f" (target {self.target_rate * (self.speedup or 1):,.1f}/s wall clock)"
               if self.target_rate and self.speedup else ""),
            f"  wall time        {self.duration_s:,.1f} s",
            f"  event time       {_iso(self.first_event_ms)} .. {_iso(self.last_event_ms)}",
            "  partitions       " + (", ".join(f"{p}: {n:,}" for p, n in sorted(self.partitions.items())) or "-"),
        ]
        if self.mode == "generate":
            lines.append(f"  scenario         {self.scenario} (seed {self.seed}), {self.incidents} incident(s) "
                         "in the ground truth")
        if self.manifest_path:
            lines.append(f"  ground truth     {self.manifest_path}")
        if self.replay is not None:
            r = self.replay
            lines.append(f"  replay           {r.source} as {r.format}: {r.lines_read:,} lines, {r.parsed:,} parsed, "
                         f"{r.unparsed:,} unparsed, {r.blank:,} blank, {r.continuation:,} joined to the entry above")
            if r.unparsed_file:
                lines.append(f"  unparsed lines   {r.unparsed_file}")
            for sample in r.unparsed_samples[:5]:
                lines.append(f"    {sample[:160]}")
        for error, count in sorted(self.errors.items(), key=lambda kv: -kv[1])[:5]:
            lines.append(f"  delivery error   {count:,} x {error}")
        lines.append(f"  run folder       {self.run_dir}")
        return "\n".join(lines)
