"""Offsets of the Kafka source and the planning of one micro-batch (pure logic, no Kafka client).

A source offset is what Spark stores in the checkpoint for every micro-batch::

    {"topic": "logs.events", "topicId": "AaIIFq...", "offsets": {"0": 1200, "1": 1187},
     "from": {"1": 0}}

``offsets`` are the next offsets to read, per partition (the batch's end, exclusive). ``from`` is only
present when this batch does not continue where the previous one ended for some partitions: a
partition that appeared since (new partitions start at their earliest offset), or a reset after data
loss with ``failOnDataLoss=false``. Keeping it in the batch's own offset makes a replayed batch read
exactly the same records. ``topicId`` detects a topic deleted and recreated under a running query.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class DataLossError(RuntimeError):
    """Records the query should have read are gone (expired, deleted, or the topic was recreated)."""


@dataclass(frozen=True)
class SourceOffset:
    topic: str
    topic_id: str | None
    offsets: dict[int, int]
    starts: dict[int, int] = field(default_factory=dict)  # the "from" overrides

    def to_json(self) -> dict:
        data: dict = {"topic": self.topic, "topicId": self.topic_id or "",
                      "offsets": {str(p): int(o) for p, o in sorted(self.offsets.items())}}
        if self.starts:
            data["from"] = {str(p): int(o) for p, o in sorted(self.starts.items())}
        return data

    @classmethod
    def from_json(cls, data: dict) -> SourceOffset:
        if "offsets" not in data or "topic" not in data:
            raise ValueError(f"not an offset of this Kafka source: {data!r}; the checkpoint was written by "
                             "another source, so start the query with a fresh checkpoint folder")
        return cls(topic=data["topic"], topic_id=data.get("topicId") or None,
                   offsets={int(p): int(o) for p, o in data["offsets"].items()},
                   starts={int(p): int(o) for p, o in data.get("from", {}).items()})

    def start_of(self, previous: SourceOffset, partition: int) -> int | None:
        """Where this batch starts reading `partition` (None: the partition is not read)."""
        if partition in self.starts:
            return self.starts[partition]
        return previous.offsets.get(partition)


@dataclass(frozen=True)
class TopicState:
    """What the broker holds now: topic id and {partition: (earliest, end the readers can reach)}.

    The end is the last stable offset for read_committed readers (see kafka_source.py)."""

    topic_id: str | None
    ranges: dict[int, tuple[int, int]]


@dataclass
class Plan:
    end: SourceOffset
    warnings: list[str]


def _loss(message: str, fail: bool, warnings: list[str]) -> None:
    advice = ("Set failOnDataLoss=false (STREAM_FAIL_ON_DATA_LOSS=false) to continue from the earliest "
              "available offset, or start over with a fresh checkpoint folder.")
    if fail:
        raise DataLossError(f"{message} Records were lost. {advice}")
    warnings.append(f"{message} Records were lost; continuing from the earliest available offset "
                    "(failOnDataLoss=false).")


def plan_batch(start: SourceOffset, state: TopicState, max_records: int | None, fail_on_data_loss: bool,
               cap: dict[int, int] | None = None) -> Plan:
    """The end offset of the next micro-batch from `start`, at most `max_records` records.

    `cap` bounds each partition's end (Trigger.AvailableNow: the ends recorded when the run began;
    partitions missing from it are not read in that run).
    """
    warnings: list[str] = []
    topic = start.topic
    starts: dict[int, int] = {}
    recreated = bool(start.topic_id and state.topic_id and start.topic_id != state.topic_id)
    if recreated:
        _loss(f"Topic {topic!r} was deleted and recreated (topic id {start.topic_id} -> {state.topic_id}).",
              fail_on_data_loss, warnings)
        starts = {p: low for p, (low, _) in state.ranges.items()}
    else:
        for p, offset in sorted(start.offsets.items()):
            if p not in state.ranges:
                _loss(f"Partition {p} of topic {topic!r} no longer exists (the checkpoint was at offset "
                      f"{offset}).", fail_on_data_loss, warnings)
                continue
            low, high = state.ranges[p]
            if offset > high:
                _loss(f"Partition {p} of topic {topic!r} now ends at offset {high}, before the checkpointed "
                      f"offset {offset}: the topic was recreated or truncated.", fail_on_data_loss, warnings)
                starts[p] = low
            elif offset < low:
                _loss(f"Partition {p} of topic {topic!r}: offsets {offset}..{low - 1} expired or were deleted "
                      f"before they were read (earliest available is {low}).", fail_on_data_loss, warnings)
                starts[p] = low
        for p, (low, _) in sorted(state.ranges.items()):
            if p not in start.offsets:
                starts[p] = low  # a new partition: read it from its beginning
    begin = {p: starts.get(p, start.offsets.get(p, 0)) for p in state.ranges}
    highs = {p: high for p, (_, high) in state.ranges.items()}
    if cap is not None:
        highs = {p: min(high, cap[p]) if p in cap else begin[p] for p, high in highs.items()}
    available = {p: max(0, highs[p] - begin[p]) for p in begin}
    take = _limit(available, max_records)
    end = SourceOffset(topic, state.topic_id or start.topic_id,
                       {p: begin[p] + take[p] for p in sorted(begin)}, starts)
    if not starts and end.offsets == start.offsets:
        return Plan(start, warnings)  # nothing new: the same offset tells Spark there is no batch
    return Plan(end, warnings)


def _limit(available: dict[int, int], max_records: int | None) -> dict[int, int]:
    """Spread at most `max_records` over partitions in proportion to what each has available."""
    total = sum(available.values())
    if max_records is None or total <= max_records:
        return dict(available)
    take = {p: (n * max_records) // total for p, n in available.items()}
    spare = max_records - sum(take.values())
    for p in sorted(available, key=lambda q: available[q] - take[q], reverse=True):
        if spare <= 0:
            break
        if take[p] < available[p]:
            take[p] += 1
            spare -= 1
    return take


def lag(latest: SourceOffset | None, end: SourceOffset | None) -> int | None:
    """Records available on the broker beyond `end` (None when unknown)."""
    if latest is None or end is None:
        return None
    return sum(max(0, high - end.offsets.get(p, 0)) for p, high in latest.offsets.items())
