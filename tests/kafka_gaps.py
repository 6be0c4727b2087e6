"""Helpers of the tests that leave gaps in a topic's offsets on the real broker.

Gaps come from transactions (a marker after every commit or abort; the records of an aborted
transaction), from compaction and from deleted records. :class:`GapWriter` writes ordinary and
transactional records and remembers, from the delivery reports, which offsets hold records a
read_committed consumer receives.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from incident_contracts.kafka import READ_COMMITTED, offset_range


@dataclass
class GapWriter:
    """An idempotent producer and a transactional one on the same topic; remembers what it wrote."""

    bootstrap: str
    topic: str
    committed: dict[int, dict[int, bytes]] = field(default_factory=dict)  # partition -> offset -> value
    aborted: dict[int, dict[int, bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._plain = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5})
        self._tx = Producer({"bootstrap.servers": self.bootstrap, "transactional.id": f"gaps-{uuid.uuid4().hex[:8]}",
                             "linger.ms": 5})
        self._tx.init_transactions(30)
        self._open: list[tuple[int, int, bytes]] = []

    def _send(self, producer: Producer, values: Iterable[tuple[int, bytes]]) -> list[tuple[int, int, bytes]]:
        sent: list[tuple[int, int, bytes]] = []

        def on_delivery(err, msg):
            assert err is None, f"delivery to {self.topic} failed: {err}"
            sent.append((msg.partition(), msg.offset(), msg.value()))

        for partition, value in values:
            producer.produce(self.topic, value=value, key=value[:8], partition=partition, on_delivery=on_delivery)
        assert producer.flush(30) == 0, f"records to {self.topic} were not delivered within 30s"
        return sent

    def plain(self, values: Iterable[tuple[int, bytes]]) -> None:
        """Ordinary records, outside any transaction: (partition, value) pairs."""
        for partition, offset, value in self._send(self._plain, values):
            self.committed.setdefault(partition, {})[offset] = value

    def transaction(self, values: Iterable[tuple[int, bytes]], commit: bool) -> None:
        """One whole transaction over (partition, value) pairs, committed or aborted."""
        self.begin(values)
        self.end(commit)

    def begin(self, values: Iterable[tuple[int, bytes]]) -> None:
        """Begin a transaction and write (partition, value) pairs in it; it stays open until end()."""
        self._tx.begin_transaction()
        self._open = self._send(self._tx, values)

    def end(self, commit: bool) -> None:
        if commit:
            self._tx.commit_transaction(30)
        else:
            self._tx.abort_transaction(30)
        target = self.committed if commit else self.aborted
        for partition, offset, value in self._open:
            target.setdefault(partition, {})[offset] = value
        self._open = []

    def committed_offsets(self) -> list[tuple[int, int]]:
        return sorted((p, o) for p, offsets in self.committed.items() for o in offsets)


def settle(bootstrap: str, topic: str, timeout: float = 15.0) -> dict[int, tuple[int, int]]:
    """Wait until no transaction is open (the last stable offset reached the high watermark: the broker
    writes the markers shortly after a commit or abort returns); returns the offset ranges."""
    deadline = time.monotonic() + timeout
    while True:
        stable = offset_range(bootstrap, topic, isolation=READ_COMMITTED)
        if stable == offset_range(bootstrap, topic):
            return stable
        assert time.monotonic() < deadline, f"{topic}: a transaction is still open after {timeout:.0f}s ({stable})"
        time.sleep(0.1)


def delete_before(bootstrap: str, topic: str, partition: int, offset: int) -> None:
    """Delete the records of a partition below `offset` (its log start offset moves there)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_records([TopicPartition(topic, partition, offset)], operation_timeout=15,
                                       request_timeout=20).values():
        future.result(20)
