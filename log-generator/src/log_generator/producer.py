"""The Kafka side: an idempotent, compressed producer that counts every delivery report.

* Keyed by service, so one service's events stay in order within their partition.
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
            "partitioner": "murmur2_random",  # same key -> same partition as the Java client
            "statistics.interval.ms": 0,
        }


@dataclass
class DeliveryStats:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    partitions: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    first_ts: int | None = None  # Kafka timestamps (CreateTime, ms) of delivered messages
    last_ts: int | None = None
    backpressure_waits: int = 0

    @property
    def in_flight(self) -> int:
        return self.sent - self.delivered - self.failed

    def delivered_rate(self) -> float | None:
        """Messages per second between the first and the last delivered message's timestamp."""
        if self.first_ts is None or self.last_ts is None or self.delivered < 2 or self.last_ts <= self.first_ts:
            return None
        return (self.delivered - 1) / ((self.last_ts - self.first_ts) / 1000)


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

    # --- callbacks (run inside poll/flush) ----------------------------------------------------
    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        stats = self.stats
        if err is None:
            stats.delivered += 1
            stats.partitions[msg.partition()] += 1
            ts = msg.timestamp()[1]
            if stats.first_ts is None or ts < stats.first_ts:
                stats.first_ts = ts
            if stats.last_ts is None or ts > stats.last_ts:
                stats.last_ts = ts
            if self._broker_error_since is not None:
                self._broker_error = self._broker_error_since = None
        else:
            stats.failed += 1
            stats.errors[err.str()] += 1

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
        return len(topic.partitions) if topic is not None and topic.error is None else 0

    def send(self, value: bytes, key: str | bytes) -> None:
        """Queue one message; waits (serving delivery reports) while the local queue is full."""
        try:
            self._produce(self.topic, value, key)
        except BufferError:
            self._wait_for_room(value, key)
        self.stats.sent += 1

    def _wait_for_room(self, value: bytes, key: str | bytes) -> None:
        started = time.monotonic()
        while True:
            self.stats.backpressure_waits += 1
            self._producer.poll(0.05)
            self.raise_if_failed(started)
            try:
                self._produce(self.topic, value, key)
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
        return remaining

    def abandon(self) -> int:
        """Drop what is still queued (counted as failed); returns how many."""
        left = len(self._producer)
        if left:
            self._producer.purge(in_queue=True, in_flight=True)
            self._producer.poll(0)
            self._producer.flush(1.0)
        return left

    def __len__(self) -> int:
        return len(self._producer)
