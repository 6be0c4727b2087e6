"""The Kafka side: an idempotent, compressed producer that accounts for every message.

* Keyed by service, so one service's events stay in order within their partition. The partition is
  chosen here with Kafka's murmur2 partitioner (what the Java client and librdkafka's murmur2 do), so
  per-partition counts are exact without a report per message.
* Delivery reports: librdkafka reports every message exactly once, as delivered or failed. Only the
  failures are passed back to Python (``delivery.report.only.error``): a Python callback per success
  would halve the throughput. A message has been delivered when it has left librdkafka's queue without
  a failure report, so once the queue is flushed, delivered = sent - failed, exactly.
* Idempotence on (acks=all, retries without duplicates or reordering), lz4 by default.
* Back-pressure: when librdkafka's queue is full, ``send`` serves delivery reports and retries;
  it never raises BufferError. If the broker stays unreachable while the queue is full, it raises
  BrokerUnavailable with a clear message instead of waiting forever.
* An unreachable broker is found before the first event (metadata request with a short timeout).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from incident_contracts.kafka import BrokerUnavailable


@dataclass(frozen=True)
class ProducerConfig:
    bootstrap_servers: str
    topic: str
    compression: str = "lz4"
    linger_ms: int = 25
    batch_size: int = 1_000_000
    queue_max_messages: int = 500_000
    queue_max_kbytes: int = 524_288
    delivery_timeout_ms: int = 60_000
    connect_timeout_s: float = 5.0
    stall_timeout_s: float = 30.0  # queue full and no delivery for this long: give up
    client_id: str = "log-generator"

    def librdkafka(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": self.compression,
            "linger.ms": self.linger_ms,
            "batch.size": self.batch_size,
            "batch.num.messages": 100_000,
            "queue.buffering.max.messages": self.queue_max_messages,
            "queue.buffering.max.kbytes": self.queue_max_kbytes,
            "delivery.timeout.ms": self.delivery_timeout_ms,
            "socket.connection.setup.timeout.ms": int(self.connect_timeout_s * 1000),
            "partitioner": "murmur2_random",  # for any message sent without an explicit partition
            "delivery.report.only.error": True,
            "statistics.interval.ms": 0,
        }


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (unsigned 32-bit), as the default Java partitioner computes it."""
    length = len(data)
    m = 0x5BD1E995
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    tail = length - extra
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass
class DeliveryStats:
    sent: int = 0
    failed: int = 0
    outstanding: int = 0  # still in librdkafka's queue when last looked (after a flush: undelivered)
    sent_by_partition: Counter = field(default_factory=Counter)
    failed_by_partition: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    backpressure_waits: int = 0

    @property
    def delivered(self) -> int:
        """Acknowledged by the broker: sent, no longer queued, and not reported as failed."""
        return max(0, self.sent - self.failed - self.outstanding)

    @property
    def partitions(self) -> dict[int, int]:
        """Delivered messages per partition."""
        return {p: n - self.failed_by_partition.get(p, 0) for p, n in sorted(self.sent_by_partition.items())}


class EventProducer:
    """Produces pre-encoded events; `stats` counts what the broker acknowledged and what failed."""

    def __init__(self, config: ProducerConfig):
        self.config = config
        self.stats = DeliveryStats()
        self._broker_error: str | None = None
        self._broker_error_since: float | None = None
        self._fatal: str | None = None
        conf = config.librdkafka()
        conf["on_delivery"] = self._on_delivery
        conf["error_cb"] = self._on_error
        try:
            self._producer = Producer(conf)
        except KafkaException as exc:
            raise ValueError(f"invalid Kafka producer configuration: {exc.args[0]}") from None
        self.topic = config.topic
        self._produce = self._producer.produce
        self.poll = self._producer.poll
        self.partition_count = 0
        self._partition_of: dict[bytes, int] = {}

    # --- callbacks (run inside poll/flush) ----------------------------------------------------
    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:  # only with a per-message callback; the producer reports failures only
            return
        self.stats.failed += 1
        self.stats.failed_by_partition[msg.partition()] += 1
        self.stats.errors[err.str()] += 1

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err.str()
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            self._broker_error = err.str()
            if self._broker_error_since is None:
                self._broker_error_since = time.monotonic()

    # --- API ----------------------------------------------------------------------------------
    def check_broker(self) -> int:
        """Fail fast (BrokerUnavailable) when the broker cannot be reached; returns the topic's partition
        count (0 when the topic does not exist yet)."""
        timeout = self.config.connect_timeout_s
        try:
            metadata = self._producer.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise BrokerUnavailable(
                f"Kafka broker at {self.config.bootstrap_servers} did not answer within {timeout:.0f}s "
                f"({exc.args[0] if exc.args else exc}). Is it running? Start the embedded one with `make up`, "
                "or pass --bootstrap-servers / set KAFKA_BOOTSTRAP_SERVERS.") from None
        topic = metadata.topics.get(self.topic)
        self.partition_count = len(topic.partitions) if topic is not None and topic.error is None else 0
        self._partition_of.clear()
        return self.partition_count

    def partition_of(self, key: bytes) -> int:
        """The partition a key goes to (murmur2, like the Java client); cached per key."""
        found = self._partition_of.get(key)
        if found is None:
            if self.partition_count <= 0:
                raise RuntimeError(f"topic {self.topic!r} has no partitions known yet; call check_broker() after "
                                   "the topic exists")
            found = self._partition_of[key] = partition_for(key, self.partition_count)
        return found

    def send(self, value: bytes, key: bytes, partition: int | None = None) -> None:
        """Queue one message; waits (serving delivery reports) while the local queue is full."""
        if partition is None:
            partition = self.partition_of(key)
        try:
            self._produce(self.topic, value, key, partition)
        except BufferError:
            self.wait_for_room(value, key, partition)
        self.stats.sent += 1
        self.stats.sent_by_partition[partition] += 1

    def wait_for_room(self, value: bytes, key: bytes, partition: int) -> None:
        """Retry a message the full queue refused, serving reports meanwhile (back-pressure)."""
        started = time.monotonic()
        while True:
            self.stats.backpressure_waits += 1
            self._producer.poll(0.05)
            self.raise_if_failed(started)
            try:
                self._produce(self.topic, value, key, partition)
                return
            except BufferError:
                continue

    def raise_if_failed(self, waiting_since: float | None = None) -> None:
        """Raise when the producer cannot go on: a fatal error, or the broker gone while we wait."""
        if self._fatal:
            raise KafkaException(f"fatal producer error: {self._fatal}")
        if waiting_since is None or self._broker_error_since is None:
            return
        stalled = time.monotonic() - max(waiting_since, self._broker_error_since)
        if stalled > self.config.stall_timeout_s:
            raise BrokerUnavailable(
                f"Kafka broker at {self.config.bootstrap_servers} unreachable for {stalled:.0f}s while the "
                f"send queue is full ({self._broker_error}); stopping. Check the broker and run again.")

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for outstanding deliveries; returns how many are still undelivered."""
        deadline = time.monotonic() + timeout
        remaining = len(self._producer)
        while remaining and time.monotonic() < deadline:
            remaining = self._producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
        self.stats.outstanding = remaining
        return remaining

    def refresh_outstanding(self) -> int:
        self.stats.outstanding = len(self._producer)
        return self.stats.outstanding

    def abandon(self) -> int:
        """Drop what is still queued; purged messages come back as failure reports. Returns how many."""
        left = len(self._producer)
        if left:
            self._producer.purge(in_queue=True, in_flight=True)
            self._producer.flush(2.0)
            self._producer.poll(0)
        self.stats.outstanding = len(self._producer)
        return left

    def __len__(self) -> int:
        return len(self._producer)

    def close(self) -> None:
        """Release the librdkafka client now: its threads would otherwise live until garbage collection
        and keep logging connection errors once the broker is gone. Callers flush first (``_finish``);
        what is still queued here (a run that failed) is purged, so closing never waits on a dead broker."""
        if self._producer is None:
            return
        if len(self._producer):
            self._producer.purge(in_queue=True, in_flight=True)
            self._producer.poll(0)
        self._producer.close()
        self._producer = None

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
