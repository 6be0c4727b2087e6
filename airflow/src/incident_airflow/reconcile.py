"""Reconciliation of one run: every Kafka record the run produced is in `events` or `dead_letter`, once.

Plain functions over offsets, so they can be tested without Kafka or Spark. A run's records lie in
the offsets ``[start, end)`` of each partition, where ``start`` is the end offset (high watermark)
just before the generator ran and ``end`` the end offset after it finished. Each record must appear
exactly once across the two tables: an offset seen twice (in one table or in both) is a duplicate.

Not every offset is a record: a transaction marker, a record of an aborted transaction or a record
removed by compaction leaves an offset no read_committed consumer receives. So an offset absent from
both tables is a lost record only if Kafka holds a committed record there. The caller asks Kafka about
just those offsets (:func:`missing_ranges`, then :func:`incident_contracts.kafka.offsets_without_records`)
and passes the offsets without a record back as `gaps`: they are counted and named in the notes, not
reported as lost. Without `gaps` every absent offset counts as lost. The producer side is checked too:
the records the topic gained must match what the generator reports as delivered.
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
    gaps: int = 0  # offsets in neither table where Kafka holds no committed record
    gap_ranges: tuple[tuple[int, int], ...] = ()  # inclusive, the first few

    @property
    def expected(self) -> int:
        """Records expected in the tables: the range's offsets less its gaps."""
        return self.end - self.start - self.gaps

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

    @property
    def gaps(self) -> int:
        return sum(p.gaps for p in self.partitions)

    def describe(self) -> str:
        """Plain-words account of the reconciliation, one line per partition."""
        verdict = "PASSED: nothing lost, nothing duplicated" if self.ok else "FAILED"
        produced = (f"generator delivered {self.producer.delivered}" + (
            f", failed {self.producer.failed}" if self.producer.failed else "")) if self.producer else \
            "no generator summary"
        gaps = f" (and {self.gaps} offsets without a committed record)" if self.gaps else ""
        lines = [
            f"Reconciliation {verdict}.",
            f"  topic {self.topic}: {self.expected} records in this run's offset ranges{gaps} ({produced}); "
            f"{self.events} in events + {self.dead_letters} in dead_letter = {self.events + self.dead_letters} "
            f"rows; {self.missing} missing, {self.duplicates} duplicated.",
        ]
        for p in self.partitions:
            lines.append(f"  partition {p.partition}: offsets [{p.start}, {p.end}) = {p.expected} records"
                         + (f" + {p.gaps} gaps" if p.gaps else "") + f", {p.in_events} events + "
                         f"{p.in_dead_letter} dead letters, {p.missing} missing, {p.duplicates} duplicated")
        lines += [f"  problem: {text}" for text in self.problems]
        lines += [f"  note: {text}" for text in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "topic": self.topic, "expected": self.expected, "events": self.events,
            "dead_letters": self.dead_letters, "missing": self.missing, "duplicates": self.duplicates,
            "gaps": self.gaps, "problems": list(self.problems), "notes": list(self.notes),
            "partitions": {str(p.partition): {"start": p.start, "end": p.end, "events": p.in_events,
                                              "dead_letters": p.in_dead_letter, "missing": p.missing,
                                              "duplicates": p.duplicates, "gaps": p.gaps}
                           for p in self.partitions},
        }


def _uncovered(unique_sorted: np.ndarray, start: int, end: int, limit: int | None) -> list[tuple[int, int]]:
    """Inclusive ranges of [start, end) not covered by `unique_sorted` (the first `limit` of them, or all)."""
    if unique_sorted.size == 0:
        return [(start, end - 1)] if end > start else []
    holes: list[tuple[int, int]] = []
    if unique_sorted[0] > start:
        holes.append((start, int(unique_sorted[0]) - 1))
    jumps = np.nonzero(np.diff(unique_sorted) > 1)[0]
    for i in jumps[:limit].tolist():
        holes.append((int(unique_sorted[i]) + 1, int(unique_sorted[i + 1]) - 1))
    if unique_sorted[-1] < end - 1:
        holes.append((int(unique_sorted[-1]) + 1, end - 1))
    holes.sort()
    return holes[:limit]


def _runs(unique_sorted: np.ndarray, limit: int) -> tuple[tuple[int, int], ...]:
    """The first `limit` inclusive runs of consecutive offsets in `unique_sorted`."""
    if unique_sorted.size == 0:
        return ()
    breaks = np.nonzero(np.diff(unique_sorted) > 1)[0][:limit].tolist()
    firsts = [int(unique_sorted[0])] + [int(unique_sorted[i + 1]) for i in breaks]
    lasts = [int(unique_sorted[i]) for i in breaks] + [int(unique_sorted[-1])]
    return tuple(zip(firsts, lasts, strict=False))[:limit]


def _offsets_of(ranges: Iterable[tuple[int, int]], start: int, end: int) -> np.ndarray:
    """Distinct offsets of inclusive `ranges`, clipped to [start, end)."""
    pieces = [np.arange(max(first, start), min(last + 1, end), dtype=np.int64) for first, last in ranges]
    pieces = [piece for piece in pieces if piece.size]
    return np.unique(np.concatenate(pieces)) if pieces else np.empty(0, dtype=np.int64)


def _in_range(offsets: Iterable[int] | np.ndarray, start: int, end: int) -> np.ndarray:
    array = np.asarray(offsets if isinstance(offsets, np.ndarray) else list(offsets), dtype=np.int64)
    return array[(array >= start) & (array < end)]


def _found(start: int, end: int, event_offsets: Iterable[int] | np.ndarray,
           dead_letter_offsets: Iterable[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Offsets of both tables within [start, end): events, dead letters, distinct offsets, their counts."""
    events = _in_range(event_offsets, start, end)
    dead = _in_range(dead_letter_offsets, start, end)
    unique, counts = np.unique(np.concatenate([events, dead]), return_counts=True)
    return events, dead, unique, counts


def check_partition(partition: int, start: int, end: int, event_offsets: Iterable[int] | np.ndarray,
                    dead_letter_offsets: Iterable[int] | np.ndarray,
                    gaps: Iterable[tuple[int, int]] = ()) -> PartitionCheck:
    """Compare the offsets found in the two tables with the range [start, end) of one partition.

    `gaps`: inclusive offset ranges where Kafka holds no committed record; those absent from both
    tables are gaps, not missing records.
    """
    if end < start:
        raise ValueError(f"partition {partition}: end offset {end} is before start offset {start}")
    events, dead, unique, counts = _found(start, end, event_offsets, dead_letter_offsets)
    repeated = unique[counts > 1]
    covered, gap_offsets = unique, np.empty(0, dtype=np.int64)
    given = _offsets_of(gaps, start, end)
    if given.size:
        gap_offsets = np.setdiff1d(given, unique, assume_unique=True)
        covered = np.sort(np.concatenate([unique, gap_offsets]))  # disjoint: no unique() (slow here)
    return PartitionCheck(
        partition=partition, start=start, end=end, in_events=int(events.size), in_dead_letter=int(dead.size),
        unique=int(unique.size), missing=(end - start) - int(covered.size),
        missing_ranges=tuple(_uncovered(covered, start, end, SHOWN_RANGES)),
        duplicates=int(events.size + dead.size - unique.size),
        duplicate_offsets=tuple(int(o) for o in repeated[:SHOWN_RANGES]),
        gaps=int(gap_offsets.size), gap_ranges=_runs(gap_offsets, SHOWN_RANGES),
    )


def missing_ranges(ranges: Mapping[int, tuple[int, int]],
                   event_offsets: Mapping[int, Iterable[int] | np.ndarray],
                   dead_letter_offsets: Mapping[int, Iterable[int] | np.ndarray]) -> dict[int, list[tuple[int, int]]]:
    """{partition: every inclusive offset range of [start, end) in neither table}: what to ask Kafka about."""
    result = {}
    for p, (start, end) in sorted(ranges.items()):
        _, _, unique, _ = _found(start, end, event_offsets.get(p, ()), dead_letter_offsets.get(p, ()))
        holes = _uncovered(unique, start, end, None)
        if holes:
            result[p] = holes
    return result


def _ranges_text(ranges: Iterable[tuple[int, int]]) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)


def _partition_problems(check: PartitionCheck, probed: bool) -> list[str]:
    problems = []
    if check.missing:
        more = " and more" if len(check.missing_ranges) == SHOWN_RANGES else ""
        held = "; Kafka shows no gap in its log there" if probed else ""
        problems.append(f"partition {check.partition}: {check.missing} of {check.expected} records are in "
                        f"neither events nor dead_letter (offsets {_ranges_text(check.missing_ranges)}{more}"
                        f"{held})")
    if check.duplicates:
        more = " and more" if len(check.duplicate_offsets) == SHOWN_RANGES else ""
        shown = ", ".join(str(o) for o in check.duplicate_offsets)
        problems.append(f"partition {check.partition}: {check.duplicates} extra rows for offsets already "
                        f"present (duplicated offsets {shown}{more})")
    return problems


def _producer_findings(ranges: Mapping[int, tuple[int, int]], producer: ProducerReport,
                       gaps: Mapping[int, int]) -> tuple[list[str], list[str]]:
    """Compare the records the topic gained (offsets less gaps) with what the generator delivered."""
    problems: list[str] = []
    notes: list[str] = []
    if producer.failed:
        problems.append(f"the generator could not deliver {producer.failed} events to Kafka (delivery "
                        "failures; see the produce_logs log)")

    def besides(count: int) -> str:
        return f" (besides {count} offsets without a committed record)" if count else ""

    grown = sum(end - start - gaps.get(p, 0) for p, (start, end) in ranges.items())
    total_gaps = sum(gaps.get(p, 0) for p in ranges)
    if producer.per_partition is not None:
        for partition in sorted(set(ranges) | set(producer.per_partition)):
            start, end = ranges.get(partition, (0, 0))
            sent = int(producer.per_partition.get(partition, 0))
            skipped = gaps.get(partition, 0)
            records = end - start - skipped
            where = f"offsets [{start}, {end})" + (f", {skipped} of them without a committed record" if skipped else "")
            if sent > records:
                problems.append(f"partition {partition}: the generator delivered {sent} records but the topic "
                                f"grew by only {records} ({where}): {sent - records} records missing from the topic")
            elif sent < records:
                notes.append(f"partition {partition}: the topic grew by {records} records{besides(skipped)}, "
                             f"{records - sent} more than this run produced (another producer wrote to the topic "
                             "meanwhile); they are reconciled too")
    elif producer.delivered > grown:
        problems.append(f"the generator delivered {producer.delivered} records but the topic grew by only "
                        f"{grown}{besides(total_gaps)}: {producer.delivered - grown} records missing from the topic")
    elif producer.delivered < grown:
        notes.append(f"the topic grew by {grown} records{besides(total_gaps)}, {grown - producer.delivered} more "
                     "than this run produced (another producer wrote to the topic meanwhile); they are reconciled "
                     "too")
    return problems, notes


def _gap_note(check: PartitionCheck) -> str:
    more = " and more" if len(check.gap_ranges) == SHOWN_RANGES else ""
    counted = f"{check.gaps} offsets hold" if check.gaps != 1 else "1 offset holds"
    return (f"partition {check.partition}: {counted} no committed record in Kafka (transaction "
            f"markers, records of aborted transactions or compacted records; offsets "
            f"{_ranges_text(check.gap_ranges)}{more}): gaps in the log, not lost records")


def reconcile(topic: str, ranges: Mapping[int, tuple[int, int]],
              event_offsets: Mapping[int, Iterable[int] | np.ndarray],
              dead_letter_offsets: Mapping[int, Iterable[int] | np.ndarray],
              producer: ProducerReport | None = None,
              gaps: Mapping[int, Iterable[tuple[int, int]]] | None = None) -> Reconciliation:
    """Reconcile one run: `ranges` {partition: (start, end)}; offsets found per partition in each table.

    `gaps` {partition: inclusive ranges}: offsets where Kafka holds no committed record (what
    :func:`incident_contracts.kafka.offsets_without_records` answers for :func:`missing_ranges`).
    """
    checks = tuple(
        check_partition(p, start, end, event_offsets.get(p, ()), dead_letter_offsets.get(p, ()),
                        (gaps or {}).get(p, ()))
        for p, (start, end) in sorted(ranges.items())
    )
    problems: list[str] = []
    notes: list[str] = []
    if producer is not None:
        problems, notes = _producer_findings(ranges, producer, {c.partition: c.gaps for c in checks})
    for check in checks:
        problems += _partition_problems(check, gaps is not None)
        if check.gaps:
            notes.append(_gap_note(check))
    return Reconciliation(topic=topic, partitions=checks, producer=producer, problems=tuple(problems),
                          notes=tuple(notes))
