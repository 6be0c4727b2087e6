"""Reconciliation of one run: every Kafka record the run produced is in `events` or `dead_letter`, once.

Plain functions over offsets, so they can be tested without Kafka or Spark. A run's records are the
offsets ``[start, end)`` of each partition, where ``start`` is the true end offset just before the
generator ran and ``end`` the true end offset after it finished. Each offset in that range must
appear exactly once across the two tables: an absent offset is a lost record, an offset seen twice
(in one table or in both) is a duplicate. The producer side is checked too: the records the topic
gained must match what the generator reports as delivered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

SHOWN_RANGES = 5  # offset ranges named per partition in a message


@dataclass(frozen=True)
class ProducerReport:
    """What the generator says it did: events delivered and failed, optionally per partition."""

    delivered: int
    failed: int = 0
    per_partition: Mapping[int, int] | None = None


@dataclass(frozen=True)
class PartitionCheck:
    partition: int
    start: int
    end: int
    in_events: int
    in_dead_letter: int
    unique: int
    missing: int
    missing_ranges: tuple[tuple[int, int], ...]  # inclusive (first, last) offsets, the first few
    duplicates: int
    duplicate_offsets: tuple[int, ...]  # the first few offsets seen more than once

    @property
    def expected(self) -> int:
        return self.end - self.start

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.duplicates == 0


@dataclass(frozen=True)
class Reconciliation:
    topic: str
    partitions: tuple[PartitionCheck, ...]
    producer: ProducerReport | None
    problems: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def expected(self) -> int:
        return sum(p.expected for p in self.partitions)

    @property
    def events(self) -> int:
        return sum(p.in_events for p in self.partitions)

    @property
    def dead_letters(self) -> int:
        return sum(p.in_dead_letter for p in self.partitions)

    @property
    def missing(self) -> int:
        return sum(p.missing for p in self.partitions)

    @property
    def duplicates(self) -> int:
        return sum(p.duplicates for p in self.partitions)

    def describe(self) -> str:
        """Plain-words account of the reconciliation, one line per partition."""
        verdict = "PASSED: nothing lost, nothing duplicated" if self.ok else "FAILED"
        produced = (f"generator delivered {self.producer.delivered}" + (
            f", failed {self.producer.failed}" if self.producer.failed else "")) if self.producer else \
            "no generator summary"
        lines = [
            f"Reconciliation {verdict}.",
            f"  topic {self.topic}: {self.expected} records in this run's offset ranges ({produced}); "
            f"{self.events} in events + {self.dead_letters} in dead_letter = {self.events + self.dead_letters} "
            f"rows; {self.missing} missing, {self.duplicates} duplicated.",
        ]
        for p in self.partitions:
            lines.append(f"  partition {p.partition}: offsets [{p.start}, {p.end}) = {p.expected} records, "
                         f"{p.in_events} events + {p.in_dead_letter} dead letters, "
                         f"{p.missing} missing, {p.duplicates} duplicated")
        lines += [f"  problem: {text}" for text in self.problems]
        lines += [f"  note: {text}" for text in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "topic": self.topic, "expected": self.expected, "events": self.events,
            "dead_letters": self.dead_letters, "missing": self.missing, "duplicates": self.duplicates,
            "problems": list(self.problems), "notes": list(self.notes),
            "partitions": {str(p.partition): {"start": p.start, "end": p.end, "events": p.in_events,
                                              "dead_letters": p.in_dead_letter, "missing": p.missing,
                                              "duplicates": p.duplicates} for p in self.partitions},
        }


def _gaps(unique_sorted: np.ndarray, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """Inclusive ranges of [start, end) not covered by `unique_sorted` (the first `limit` of them)."""
    if unique_sorted.size == 0:
        return [(start, end - 1)] if end > start else []
    gaps: list[tuple[int, int]] = []
    if unique_sorted[0] > start:
        gaps.append((start, int(unique_sorted[0]) - 1))
    jumps = np.nonzero(np.diff(unique_sorted) > 1)[0]
    for i in jumps[:limit]:
        gaps.append((int(unique_sorted[i]) + 1, int(unique_sorted[i + 1]) - 1))
    if unique_sorted[-1] < end - 1:
        gaps.append((int(unique_sorted[-1]) + 1, end - 1))
    gaps.sort()
    return gaps[:limit]


def _in_range(offsets: Iterable[int] | np.ndarray, start: int, end: int) -> np.ndarray:
    array = np.asarray(offsets if isinstance(offsets, np.ndarray) else list(offsets), dtype=np.int64)
    return array[(array >= start) & (array < end)]


def check_partition(partition: int, start: int, end: int, event_offsets: Iterable[int] | np.ndarray,
                    dead_letter_offsets: Iterable[int] | np.ndarray) -> PartitionCheck:
    """Compare the offsets found in the two tables with the range [start, end) of one partition."""
    if end < start:
        raise ValueError(f"partition {partition}: end offset {end} is before start offset {start}")
    events = _in_range(event_offsets, start, end)
    dead = _in_range(dead_letter_offsets, start, end)
    both = np.concatenate([events, dead])
    unique, counts = np.unique(both, return_counts=True)
    repeated = unique[counts > 1]
    return PartitionCheck(
        partition=partition, start=start, end=end, in_events=int(events.size), in_dead_letter=int(dead.size),
        unique=int(unique.size), missing=(end - start) - int(unique.size),
        missing_ranges=tuple(_gaps(unique, start, end, SHOWN_RANGES)),
        duplicates=int(both.size - unique.size), duplicate_offsets=tuple(int(o) for o in repeated[:SHOWN_RANGES]),
    )


def _ranges_text(ranges: Iterable[tuple[int, int]]) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)


def _partition_problems(check: PartitionCheck) -> list[str]:
    problems = []
    if check.missing:
        more = " and more" if len(check.missing_ranges) == SHOWN_RANGES else ""
        problems.append(f"partition {check.partition}: {check.missing} of {check.expected} records are in "
                        f"neither events nor dead_letter (offsets {_ranges_text(check.missing_ranges)}{more})")
    if check.duplicates:
        more = " and more" if len(check.duplicate_offsets) == SHOWN_RANGES else ""
        shown = ", ".join(str(o) for o in check.duplicate_offsets)
        problems.append(f"partition {check.partition}: {check.duplicates} extra rows for offsets already "
                        f"present (duplicated offsets {shown}{more})")
    return problems


def _producer_findings(ranges: Mapping[int, tuple[int, int]],
                       producer: ProducerReport) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    notes: list[str] = []
    if producer.failed:
        problems.append(f"the generator could not deliver {producer.failed} events to Kafka (delivery "
                        "failures; see the produce_logs log)")
    grown = sum(end - start for start, end in ranges.values())
    if producer.per_partition is not None:
        for partition in sorted(set(ranges) | set(producer.per_partition)):
            start, end = ranges.get(partition, (0, 0))
            sent = int(producer.per_partition.get(partition, 0))
            if sent > end - start:
                problems.append(f"partition {partition}: the generator delivered {sent} records but the topic "
                                f"grew by only {end - start} (offsets [{start}, {end})): "
                                f"{sent - (end - start)} records missing from the topic")
            elif sent < end - start:
                notes.append(f"partition {partition}: the topic grew by {end - start} records, {end - start - sent} "
                             "more than this run produced (another producer wrote to the topic meanwhile); "
                             "they are reconciled too")
    elif producer.delivered > grown:
        problems.append(f"the generator delivered {producer.delivered} records but the topic grew by only "
                        f"{grown}: {producer.delivered - grown} records missing from the topic")
    elif producer.delivered < grown:
        notes.append(f"the topic grew by {grown} records, {grown - producer.delivered} more than this run "
                     "produced (another producer wrote to the topic meanwhile); they are reconciled too")
    return problems, notes


def reconcile(topic: str, ranges: Mapping[int, tuple[int, int]],
              event_offsets: Mapping[int, Iterable[int] | np.ndarray],
              dead_letter_offsets: Mapping[int, Iterable[int] | np.ndarray],
              producer: ProducerReport | None = None) -> Reconciliation:
    """Reconcile one run: `ranges` {partition: (start, end)}; offsets found per partition in each table."""
    checks = tuple(
        check_partition(p, start, end, event_offsets.get(p, ()), dead_letter_offsets.get(p, ()))
        for p, (start, end) in sorted(ranges.items())
    )
    problems: list[str] = []
    notes: list[str] = []
    if producer is not None:
        problems, notes = _producer_findings(ranges, producer)
    for check in checks:
        problems += _partition_problems(check)
    return Reconciliation(topic=topic, partitions=checks, producer=producer, problems=tuple(problems),
                          notes=tuple(notes))
