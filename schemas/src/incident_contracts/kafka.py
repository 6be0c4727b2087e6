"""Kafka helpers every service shares: reachability, idempotent topic creation, true offsets.

True end offsets: the embedded broker answers ListOffsets(latest) with the base offset of the newest
record batch + 1 instead of the log end (see docs/decisions.md). Fetch responses carry the correct
high watermark on every broker, so :func:`end_offsets` fetches from the reported end and takes the
larger of the two figures. On Apache Kafka both agree, so the same code is right on both.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The Kafka broker could not be reached in time."""


class TopicMissing(RuntimeError):
    """The topic does not exist on the broker."""


# librdkafka logs every failed connection attempt to stderr; probes report failures as exceptions instead.
QUIET = {"log_level": 0, "log.connection.close": False}


def _unreachable(bootstrap: str, timeout: float, exc: object) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"Kafka broker at {bootstrap} did not answer within {timeout:.0f}s ({exc}). "
        "Is it running? Start the embedded one with `make up`, or set KAFKA_BOOTSTRAP_SERVERS."
    )


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 5000,
                        **QUIET})


def check_broker(bootstrap: str, timeout: float = 5.0) -> dict[str, int]:
    """Ask the broker for its metadata; return {topic: partition count}. Raise BrokerUnavailable."""
    try:
        metadata = admin_client(bootstrap).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise _unreachable(bootstrap, timeout, exc.args[0] if exc.args else exc) from None
    return {name: len(topic.partitions) for name, topic in metadata.topics.items() if not topic.error}


def wait_for_broker(bootstrap: str, timeout: float = 30.0) -> None:
    """Poll until the broker answers or the timeout passes."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            check_broker(bootstrap, timeout=min(3.0, max(0.5, deadline - time.monotonic())))
            return
        except BrokerUnavailable as exc:
            last = exc
            time.sleep(0.3)
    raise last or _unreachable(bootstrap, timeout, "timed out")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    # Topic-level configuration set when the topic is created, e.g. {"min.insync.replicas": "2"}.
    configs: dict[str, str] | None = None


def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], timeout: float = 15.0) -> dict[str, str]:
    """Create the topics that are missing; never touches existing ones. Returns {topic: what happened}.

    A topic that exists with fewer partitions than asked is reported (not recreated: that would lose
    data); growing it is an explicit operator decision.
    """
    specs = list(specs)
    existing = check_broker(bootstrap, timeout=timeout)
    outcome: dict[str, str] = {}
    to_create = []
    for spec in specs:
        if spec.name in existing:
            have = existing[spec.name]
            outcome[spec.name] = (
                f"exists with {have} partitions"
                if have >= spec.partitions
                else f"exists with {have} partitions (fewer than the {spec.partitions} configured; left as is)"
            )
        else:
            to_create.append(NewTopic(spec.name, num_partitions=spec.partitions,
                                      replication_factor=spec.replication_factor, config=dict(spec.configs or {})))
    if to_create:
        admin = admin_client(bootstrap)  # keep a reference: the futures fail if the client is collected
        futures = admin.create_topics(to_create, operation_timeout=timeout, request_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result(timeout=timeout)
                outcome[name] = "created"
            except KafkaException as exc:
                error = exc.args[0]
                if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    outcome[name] = "exists (created concurrently)"
                else:
                    raise RuntimeError(f"could not create topic {name!r}: {error}") from None
        _wait_for_topics(bootstrap, [t.topic for t in to_create], timeout)
    for name, what in outcome.items():
        log.info("topic %s: %s", name, what)
    return outcome


def _wait_for_topics(bootstrap: str, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(name in check_broker(bootstrap, timeout=timeout) for name in names):
            return
        time.sleep(0.2)


def partitions_of(bootstrap: str, topic: str, timeout: float = 10.0) -> list[int]:
    """Partition ids of a topic; raises TopicMissing when it does not exist."""
    try:
        # Ask for all topics: a metadata request naming a topic may auto-create it on some brokers.
        metadata = admin_client(bootstrap).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise _unreachable(bootstrap, timeout, exc.args[0] if exc.args else exc) from None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise TopicMissing(f"topic {topic!r} does not exist on {bootstrap}; create it with `make up` "
                           "(topics are created at start) or check KAFKA_TOPIC_LOGS")
    return sorted(found.partitions)


def _probe_consumer(bootstrap: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"offset-probe-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.max.bytes": 1 << 20,
        "max.partition.fetch.bytes": 1 << 20,
        "socket.connection.setup.timeout.ms": 5000,
        **QUIET,
    })


def offset_range(bootstrap: str, topic: str, partitions: Iterable[int] | None = None,
                 timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """{partition: (earliest, true end)} for a topic: the end is the next offset a producer will write."""
    parts = list(partitions) if partitions is not None else partitions_of(bootstrap, topic, timeout)
    consumer = _probe_consumer(bootstrap)
    try:
        reported: dict[int, tuple[int, int]] = {}
        for p in parts:
            try:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            except KafkaException as exc:
                raise _unreachable(bootstrap, timeout, exc.args[0] if exc.args else exc) from None
            reported[p] = (low, high)
        # Fetch from the reported end: the fetch response's high watermark is the true log end.
        probe = [TopicPartition(topic, p, max(reported[p][1] - 1, reported[p][0])) for p in parts
                 if reported[p][1] > reported[p][0]]
        true_high = {p: reported[p][1] for p in parts}
        if probe:
            consumer.assign(probe)
            pending = {tp.partition for tp in probe}
            deadline = time.monotonic() + timeout
            while pending and time.monotonic() < deadline:
                consumer.poll(0.1)
                for p in list(pending):
                    _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)
                    if high not in (OFFSET_INVALID, -1) and high >= 0:
                        true_high[p] = max(true_high[p], high)
                        pending.discard(p)
            if pending:
                raise BrokerUnavailable(
                    f"no fetch answer for {topic} partitions {sorted(pending)} within {timeout:.0f}s; "
                    "the broker may be overloaded")
        return {p: (reported[p][0], true_high[p]) for p in parts}
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str, partitions: Iterable[int] | None = None,
                timeout: float = 10.0) -> dict[int, int]:
    """{partition: true end offset}, correct on the embedded broker and on Apache Kafka."""
    return {p: high for p, (_, high) in offset_range(bootstrap, topic, partitions, timeout).items()}


def committed_offsets(bootstrap: str, topic: str, group: str, partitions: Iterable[int] | None = None,
                      timeout: float = 10.0) -> dict[int, int | None]:
    """{partition: committed offset of a consumer group, None when it has committed nothing}."""
    parts = list(partitions) if partitions is not None else partitions_of(bootstrap, topic, timeout)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=timeout)
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in committed}
    finally:
        consumer.close()
