"""The Kafka side of the ingest service: a request is answered only once Kafka has acknowledged each record.

One idempotent producer (acks=all) serves every request. Each request's records are produced with a
delivery callback of their own; librdkafka's reports are served by a thread polling the producer, and
the last report of a request resolves that request's future on the event loop, so waiting never blocks
the loop. A record Kafka did not take in time (``delivery.timeout.ms``, from
INGEST_DELIVERY_TIMEOUT_SECONDS) fails its request (503, retry later); a request that would overfill the
local queue (INGEST_MAX_QUEUED_RECORDS) is refused before any record is produced (429, retry later).
A retried request may write some records twice: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from incident_contracts.kafka import QUIET

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """Too many records wait for Kafka already; the client should retry later (429)."""


class DeliveryFailed(RuntimeError):
    """Kafka did not acknowledge some records of the request (503)."""

    def __init__(self, failed: int, total: int, errors: Counter[str]):
        shown = ", ".join(f"{name} x{n}" for name, n in errors.most_common(3))
        super().__init__(f"Kafka did not acknowledge {failed} of {total} records ({shown})")
        self.failed = failed
        self.errors = errors


class _Request:
    """Counts one request's delivery reports; the last one resolves its future on the loop.

    Lock-free: only the report thread counts reports (`close` stops it before flushing), and only the
    event loop lowers `expected` (records the queue refused); whichever side sees the two meet resolves
    the future, and resolving twice is harmless."""

    __slots__ = ("errors", "expected", "failed", "future", "loop", "reported", "total")

    def __init__(self, total: int, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]):
        self.total = total
        self.expected = total
        self.reported = 0
        self.failed = 0
        self.errors: Counter[str] = Counter()
        self.loop = loop
        self.future = future

    @property
    def remaining(self) -> int:
        return self.expected - self.reported

    def on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.failed += 1
            self.errors[err.name()] += 1
        self.reported += 1
        if self.reported == self.expected:
            self.resolve()

    def resolve(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed (shutdown): nobody waits any more
            self.loop.call_soon_threadsafe(_resolve, self.future)

    def forget(self, count: int) -> None:
        """`count` records were never produced (the queue refused them): expect no report for them."""
        self.expected -= count
        if self.reported >= self.expected:
            self.resolve()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class KafkaSink:
    """Produces encoded LogEvents and waits (asynchronously) for Kafka's acknowledgement of each."""

    def __init__(self, bootstrap: str, topic: str, *, compression: str = "lz4", delivery_timeout_s: float = 10.0,
                 max_queued: int = 500_000, client_id: str = "log-ingest", on_failure: Any = None):
        self.bootstrap = bootstrap
        self.topic = topic
        self.delivery_timeout_s = delivery_timeout_s
        self.max_queued = max_queued
        self._on_failure = on_failure  # called with (error name, count) for records Kafka did not take
        self._broker_error: str | None = None
        self.fatal: str | None = None  # a fatal producer error: nothing more can be written until a restart
        conf = {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": compression,
            "linger.ms": 5,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": max_queued,
            "queue.buffering.max.kbytes": 1_048_576,
            "message.max.bytes": 1_048_576,  # above the codec's largest event, within the broker's default
            "delivery.timeout.ms": max(1000, int(delivery_timeout_s * 1000)),
            # A request on the wire times out too, so a broker that stopped answering fails records in time.
            "request.timeout.ms": max(1000, min(30_000, int(delivery_timeout_s * 1000))),
            "socket.connection.setup.timeout.ms": 5000,
            "partitioner": "murmur2_random",  # keyed by service, as the Java client and the generator do
            "error_cb": self._on_error,
            **QUIET,
        }
        try:
            self._producer = Producer(conf)
        except KafkaException as exc:
            raise ValueError(f"invalid Kafka producer configuration: {exc.args[0]}") from None
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery-reports", daemon=True)
        self._poller.start()

    def _on_error(self, err: KafkaError) -> None:
        self._broker_error = err.str()
        if err.fatal():
            self.fatal = err.str()
            log.error("fatal Kafka producer error, log-ingest must be restarted: %s", err.str())

    def _poll(self) -> None:
        poll = self._producer.poll
        while not self._stop.is_set():
            poll(0.05)

    @property
    def queued(self) -> int:
        return len(self._producer)

    async def send(self, values: list[bytes], keys: list[bytes]) -> None:
        """Produce the records and wait until Kafka acknowledged every one.

        Raises QueueFull before producing anything when the local queue has no room for them, and
        DeliveryFailed when any record was not acknowledged within the delivery timeout."""
        if not values:
            return
        if len(self._producer) + len(values) > self.max_queued:
            raise QueueFull(f"{len(self._producer)} records already wait for Kafka (at most {self.max_queued})")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        request = _Request(len(values), loop, future)
        produce = self._producer.produce
        topic = self.topic
        callback = request.on_delivery
        for i, (value, key) in enumerate(zip(values, keys, strict=True)):
            try:
                produce(topic, value, key, on_delivery=callback)
            except BufferError:
                request.forget(len(values) - i)
                raise QueueFull(f"Kafka's local queue is full ({len(self._producer)} records wait)") from None
            except KafkaException as exc:  # e.g. the producer failed fatally
                request.forget(len(values) - i)
                error = exc.args[0] if exc.args else exc
                name = error.name() if isinstance(error, KafkaError) else "_PRODUCE"
                self._report_failure(name, len(values) - i)
                raise DeliveryFailed(len(values) - i, len(values), Counter({name: len(values) - i})) from None
        try:
            # The producer fails every record after delivery.timeout.ms; the margin covers the report's way here.
            await asyncio.wait_for(asyncio.shield(future), timeout=self.delivery_timeout_s + 5)
        except TimeoutError:
            missing = request.remaining
            self._report_failure("_NO_REPORT", missing)
            raise DeliveryFailed(missing, len(values), Counter({"_NO_REPORT": missing})) from None
        if request.failed:
            for name, count in request.errors.items():
                self._report_failure(name, count)
            raise DeliveryFailed(request.failed, len(values), request.errors)

    def _report_failure(self, name: str, count: int) -> None:
        if self._on_failure is not None:
            self._on_failure(name, count)

    def check(self, timeout: float = 2.0) -> str | None:
        """None when the broker answers and the topic exists; else what is wrong (blocking: run in a thread)."""
        if self.fatal:
            return f"the Kafka producer failed fatally ({self.fatal}); restart log-ingest"
        try:
            # All topics: a metadata request naming one may create it on brokers that auto-create topics.
            metadata = self._producer.list_topics(timeout=timeout)
        except KafkaException as exc:
            return f"Kafka broker at {self.bootstrap} did not answer within {timeout:.0f}s ({exc.args[0]})"
        found = metadata.topics.get(self.topic)
        if found is None or found.error is not None or not found.partitions:
            return f"topic {self.topic!r} does not exist on {self.bootstrap} (`make up` creates it)"
        return None

    def close(self, timeout: float = 10.0) -> int:
        """Deliver what is queued (up to `timeout`), stop the report thread; returns records left undelivered."""
        self._stop.set()  # first: the reports of what is flushed are served here, by one thread only
        self._poller.join(timeout=2)
        left = self._producer.flush(timeout)
        if left:
            log.warning("%d records were still waiting for Kafka at shutdown; their requests were not "
                        "acknowledged, so clients retry them", left)
            self._producer.purge(in_queue=True, in_flight=True)
            self._producer.poll(0)
        return left
