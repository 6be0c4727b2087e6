"""The run summary: what a pipeline run produced, processed and found, for the task log and the run's note."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SEVERITIES = ("P1", "P2", "P3", "P4")


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    what: str  # the request in words ("scenario 'mixed' at 200 events/s for 30s (seed 7)")
    produced: int  # records the run's offset ranges hold
    delivered: int | None  # what the generator reports
    producer_seconds: float | None
    producer_rate: float | None
    events: int
    dead_letters: int
    missing: int
    duplicates: int
    reconciled: bool
    incidents_by_severity: dict[str, int]
    incidents_open: int
    incidents_resolved: int
    stream_seconds: float | None
    stream_submissions: int | None
    spark_rows_per_second: float | None = None  # the job's own figure: input rows over busy batch time

    @property
    def incidents(self) -> int:
        return sum(self.incidents_by_severity.values())

    @property
    def throughput(self) -> float | None:
        """Records per second through Spark (events + dead letters over the streaming job's wall time)."""
        if not self.stream_seconds:
            return None
        return (self.events + self.dead_letters) / self.stream_seconds

    def severity_text(self) -> str:
        if not self.incidents:
            return "none"
        return ", ".join(f"{sev} {self.incidents_by_severity[sev]}" for sev in
                         sorted(self.incidents_by_severity, key=lambda s: (s not in SEVERITIES, s))
                         if self.incidents_by_severity[sev])

    def lines(self) -> list[str]:
        verdict = ("reconciled: nothing lost, nothing duplicated" if self.reconciled else
                   f"NOT reconciled: {self.missing} missing, {self.duplicates} duplicated")
        producer = f"{self.produced} records produced"
        if self.producer_rate is not None and self.producer_seconds is not None:
            producer += f" in {self.producer_seconds:.1f}s ({self.producer_rate:,.0f}/s)"
        stream = "Spark: "
        if self.throughput is not None:
            stream += f"{self.events + self.dead_letters} records in {self.stream_seconds:.1f}s " \
                      f"({self.throughput:,.0f}/s incl. start-up)"
        else:
            stream += "no timing"
        if self.spark_rows_per_second:
            stream += f"; {self.spark_rows_per_second:,.0f} rows/s while processing"
        if self.stream_submissions and self.stream_submissions > 1:
            stream += f", {self.stream_submissions} submissions"
        return [
            f"Run {self.run_id}: {self.what}",
            f"Events: {producer}; {self.events} in events, {self.dead_letters} in dead_letter; {verdict}.",
            f"Incidents touched: {self.incidents} ({self.severity_text()}); {self.incidents_open} open, "
            f"{self.incidents_resolved} resolved.",
            f"Throughput: {stream}.",
        ]

    def text(self) -> str:
        return "\n".join(self.lines())

    def note(self) -> str:
        """Markdown for the run's note in the Airflow UI."""
        head, *rest = self.lines()
        return "**" + head + "**\n\n" + "\n".join(f"- {line}" for line in rest)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "incidents": self.incidents, "throughput": self.throughput}


def spark_rate(jobs: list[dict[str, Any]]) -> float | None:
    """Rows per second of busy processing time over all submissions of the job."""
    rows = busy = 0.0
    for job in jobs:
        rate, count = job.get("rows_per_second") or 0.0, job.get("input_rows") or 0
        if rate > 0 and count > 0:
            rows += count
            busy += count / rate
    return rows / busy if busy else None


def build_summary(run_id: str, what: str, produced: dict[str, Any], reconciliation: dict[str, Any],
                  incidents: dict[str, Any], stream: dict[str, Any] | None) -> RunSummary:
    """Assemble the summary from the XCom results of the produce, stream, reconcile and publish tasks."""
    generator = produced.get("generator") or {}
    stream = stream or {}
    return RunSummary(
        run_id=run_id,
        what=what,
        produced=int(reconciliation.get("expected", 0)),
        delivered=generator.get("delivered"),
        producer_seconds=generator.get("duration_s"),
        producer_rate=generator.get("actual_rate"),
        events=int(reconciliation.get("events", 0)),
        dead_letters=int(reconciliation.get("dead_letters", 0)),
        missing=int(reconciliation.get("missing", 0)),
        duplicates=int(reconciliation.get("duplicates", 0)),
        reconciled=bool(reconciliation.get("ok")),
        incidents_by_severity=dict(incidents.get("by_severity") or {}),
        incidents_open=int(incidents.get("open", 0)),
        incidents_resolved=int(incidents.get("resolved", 0)),
        stream_seconds=stream.get("seconds"),
        stream_submissions=stream.get("submissions"),
        spark_rows_per_second=spark_rate(stream.get("jobs") or []),
    )
