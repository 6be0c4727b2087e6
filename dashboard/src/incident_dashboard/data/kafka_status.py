"""What the Pipeline page shows about Kafka: topics, partitions, end offsets and consumer lag.

Offsets come from ``incident_contracts.kafka`` (the broker's ListOffsets answer; the end offset is the
high watermark, so records of a transaction still open count as lag).
A broker that does not answer gives a snapshot with the error instead of an exception, and
snapshots are cached briefly so auto-refreshing pages do not hammer the broker.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pandas as pd

from incident_contracts import kafka
from incident_rca.data.ttl import TTLCache

TIMEOUT_SECONDS = 3.0
MAX_TOPICS_WITH_OFFSETS = 8  # each probe opens a consumer; other topics show their partition count only
_CACHE = TTLCache(ttl=5.0, maxsize=16)
_LOCK = threading.Lock()


@dataclass
class KafkaSnapshot:
    bootstrap: str
    reachable: bool
    error: str = ""
    topics: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["topic", "partitions"]))
    partitions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["topic", "partition", "earliest_offset", "end_offset", "records", "committed", "lag"]))
    group: str = ""
    taken_at: float = field(default_factory=time.time)

    @property
    def total_lag(self) -> int | None:
        lag = self.partitions["lag"].dropna() if not self.partitions.empty else pd.Series(dtype=float)
        return int(lag.sum()) if len(lag) else None


def snapshot(bootstrap: str, topic: str, group: str, ttl: float = 5.0) -> KafkaSnapshot:
    """Topics of the broker; offsets and the group's lag for ``topic`` (and every other user topic)."""
    _CACHE.ttl = ttl
    with _LOCK:  # one probe at a time; others get the cached result
        return _CACHE.get_or_compute((bootstrap, topic, group), lambda: _take(bootstrap, topic, group))


def _take(bootstrap: str, topic: str, group: str) -> KafkaSnapshot:
    try:
        topics = kafka.check_broker(bootstrap, timeout=TIMEOUT_SECONDS)
    except kafka.BrokerUnavailable as exc:
        return KafkaSnapshot(bootstrap, False, str(exc), group=group)
    user_topics = sorted(t for t in topics if not t.startswith("_"))
    frame = pd.DataFrame({"topic": user_topics, "partitions": [topics[t] for t in user_topics]})
    rows = []
    errors = []
    probed = ([topic] if topic in topics else []) + [t for t in user_topics if t != topic]
    for name in probed[:MAX_TOPICS_WITH_OFFSETS]:
        try:
            ranges = kafka.offset_range(bootstrap, name, timeout=TIMEOUT_SECONDS)
            committed = (kafka.committed_offsets(bootstrap, name, group, list(ranges), timeout=TIMEOUT_SECONDS)
                         if name == topic else {})
        except (kafka.BrokerUnavailable, kafka.TopicMissing, RuntimeError) as exc:
            errors.append(f"{name}: {exc}")
            continue
        for partition, (low, high) in sorted(ranges.items()):
            done = committed.get(partition)
            lag = (high - max(done, low)) if done is not None else (high - low if name == topic else None)
            rows.append({"topic": name, "partition": partition, "earliest_offset": low, "end_offset": high,
                         "records": high - low, "committed": done, "lag": lag})
    partitions = pd.DataFrame(rows, columns=["topic", "partition", "earliest_offset", "end_offset", "records",
                                             "committed", "lag"])
    return KafkaSnapshot(bootstrap, True, "; ".join(errors), frame, partitions, group)
