"""Kafka helpers every service shares: reachability, idempotent topic creation, offsets.

Offsets come from the broker's ListOffsets answer (:func:`offset_range`), at one of two ends:

- ``read_uncommitted`` (the default): the high watermark, where the log ends for readers. A run's
  offset range is measured with it (:func:`end_offsets`): every record a producer has written lies
  below it, in a transaction still open or not.
- ``read_committed``: the last stable offset (LSO), below which every transaction has ended. A
  consumer with ``isolation.level=read_committed`` (librdkafka's default) gets nothing at or beyond it
  while a transaction is open, so a reader must not plan to read further (the streaming job's planning).

Offsets of a partition are not all records: transaction markers, records of aborted transactions and
records removed by compaction leave offsets no read_committed consumer receives.
:func:`offsets_without_records` finds them.
"""

from __future__ import annotations

import bisect
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

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


READ_COMMITTED = "read_committed"
READ_UNCOMMITTED = "read_uncommitted"
ISOLATION_LEVELS = {READ_COMMITTED: IsolationLevel.READ_COMMITTED, READ_UNCOMMITTED: IsolationLevel.READ_UNCOMMITTED}


def partitions_of(bootstrap: str, topic: str, timeout: float = 10.0) -> list[int]:
    """Partition ids of a topic; raises TopicMissing when it does not exist."""
    return _topic_partitions(admin_client(bootstrap), bootstrap, topic, timeout)


def _topic_partitions(admin: AdminClient, bootstrap: str, topic: str, timeout: float) -> list[int]:
    try:
        # Ask for all topics: a metadata request naming a topic may auto-create it on some brokers.
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise _unreachable(bootstrap, timeout, exc.args[0] if exc.args else exc) from None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise TopicMissing(f"topic {topic!r} does not exist on {bootstrap}; create it with `make up` "
                           "(topics are created at start) or check KAFKA_TOPIC_LOGS")
    return sorted(found.partitions)


def offset_range(bootstrap: str, topic: str, partitions: Iterable[int] | None = None, timeout: float = 10.0,
                 isolation: str = READ_UNCOMMITTED) -> dict[int, tuple[int, int]]:
    """{partition: (earliest, end)} for a topic, from the broker's ListOffsets answer.

    `earliest` is the log start offset (it moves when records expire or are deleted). `end` depends on
    `isolation`: ``read_uncommitted`` gives the high watermark (the end of the log for readers; on one
    broker, the next offset a producer writes), ``read_committed`` the last stable offset, which stays
    at the first offset of the oldest open transaction until that transaction ends (equal to the high
    watermark when none is open).
    """
    if isolation not in ISOLATION_LEVELS:
        raise ValueError(f"isolation level {isolation!r}: expected {READ_COMMITTED!r} or {READ_UNCOMMITTED!r}")
    deadline = time.monotonic() + timeout
    while True:
        admin = admin_client(bootstrap)  # keep a reference: the futures fail if the client is collected
        parts = list(partitions) if partitions is not None else _topic_partitions(admin, bootstrap, topic, timeout)
        if not parts:
            return {}
        try:
            return _list_offsets(admin, bootstrap, topic, parts, timeout, isolation)
        except _LeadershipMoving as moving:
            if time.monotonic() >= deadline:
                raise _unreachable(bootstrap, timeout, moving.error) from None
            log.debug("ListOffsets on %s: %s; asking again", topic, moving.error)
            time.sleep(0.2)


# Answers of a broker that is starting, restarting or handing a partition to another replica: the same
# request succeeds a moment later, against fresh metadata (a new client).
_LEADERSHIP_ERRORS = frozenset(
    getattr(KafkaError, name) for name in ("UNKNOWN_LEADER_EPOCH", "FENCED_LEADER_EPOCH", "NOT_LEADER_FOR_PARTITION",
                                           "LEADER_NOT_AVAILABLE", "NOT_COORDINATOR", "_WAIT_COORD")
    if hasattr(KafkaError, name))


class _LeadershipMoving(Exception):
    def __init__(self, error: object):
        super().__init__(str(error))
        self.error = error


def _list_offsets(admin: AdminClient, bootstrap: str, topic: str, parts: list[int], timeout: float,
                  isolation: str) -> dict[int, tuple[int, int]]:
    asked = {spec: admin.list_offsets({TopicPartition(topic, p): getattr(OffsetSpec, spec)() for p in parts},
                                      isolation_level=ISOLATION_LEVELS[isolation], request_timeout=timeout)
             for spec in ("earliest", "latest")}
    found: dict[str, dict[int, int]] = {"earliest": {}, "latest": {}}
    for spec, futures in asked.items():
        for tp, future in futures.items():
            try:
                found[spec][tp.partition] = future.result(timeout=timeout + 1).offset
            except KafkaException as exc:
                error = exc.args[0] if exc.args else exc
                if isinstance(error, KafkaError) and error.code() in _LEADERSHIP_ERRORS:
                    raise _LeadershipMoving(error) from None
                missing = set(parts) - set(_topic_partitions(admin, bootstrap, topic, timeout))
                if missing:
                    raise TopicMissing(f"topic {topic!r} has no partition {sorted(missing)} on {bootstrap}; "
                                       "check KAFKA_TOPIC_LOGS") from None
                raise _unreachable(bootstrap, timeout, error) from None
            except TimeoutError:
                raise _unreachable(bootstrap, timeout, f"no ListOffsets answer for partition {tp.partition} "
                                   f"of {topic}") from None
    return {p: (found["earliest"][p], found["latest"][p]) for p in parts}


def end_offsets(bootstrap: str, topic: str, partitions: Iterable[int] | None = None,
                timeout: float = 10.0) -> dict[int, int]:
    """{partition: high watermark}: every record written so far, in open transactions too, lies below it."""
    return {p: high for p, (_, high) in offset_range(bootstrap, topic, partitions, timeout).items()}


# Missing ranges closer than this are read in one pass rather than with a seek each.
PROBE_MERGE_DISTANCE = 10_000


def _merged(ranges: Iterable[tuple[int, int]], low: int, stable: int, merge: bool = True) -> list[tuple[int, int]]:
    """Inclusive ranges clipped to [low, stable), sorted, overlapping ones (and close ones) merged."""
    spans: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        first, last = max(first, low), min(last, stable - 1)
        if first > last:
            continue
        if spans and first - spans[-1][1] <= (PROBE_MERGE_DISTANCE if merge else 1):
            spans[-1] = (spans[-1][0], max(spans[-1][1], last))
        else:
            spans.append((first, last))
    return spans


def _holes(first: int, last: int, present: list[int]) -> list[tuple[int, int]]:
    """Inclusive ranges of [first, last] holding none of the sorted offsets `present`."""
    holes: list[tuple[int, int]] = []
    cursor = first
    for offset in present[bisect.bisect_left(present, first):bisect.bisect_right(present, last)]:
        if offset > cursor:
            holes.append((cursor, offset - 1))
        cursor = offset + 1
    if cursor <= last:
        holes.append((cursor, last))
    return holes


def offsets_without_records(bootstrap: str, topic: str, ranges: Mapping[int, Iterable[tuple[int, int]]],
                            timeout: float = 30.0) -> dict[int, list[tuple[int, int]]]:
    """Of the inclusive offset `ranges` asked per partition, those where Kafka holds no committed record.

    A read_committed consumer reads each range: offsets it never receives are transaction markers,
    records of aborted transactions or records removed by compaction. Only offsets Kafka can still
    answer for are reported: not those below the log start offset (expired or deleted records: whether
    they were records is no longer known) nor those at or beyond the last stable offset (a transaction
    still open). Returns {partition: inclusive ranges without records}.
    """
    wanted = {p: sorted(r for r in rs if r[1] >= r[0]) for p, rs in ranges.items()}
    wanted = {p: rs for p, rs in wanted.items() if rs}
    if not wanted:
        return {}
    bounds = offset_range(bootstrap, topic, sorted(wanted), timeout, isolation=READ_COMMITTED)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"offset-probe-{uuid.uuid4().hex[:8]}",  # never commits; assign() only
        "enable.auto.commit": False,
        "isolation.level": READ_COMMITTED,
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": 100,
        "socket.connection.setup.timeout.ms": 5000,
        **QUIET,
    })
    result: dict[int, list[tuple[int, int]]] = {}
    try:
        for p, asked in sorted(wanted.items()):
            low, stable = bounds[p]
            present: list[int] = []
            for first, last in _merged(asked, low, stable):
                present += _records_in(consumer, bootstrap, topic, p, first, last, timeout)
            holes = [hole for first, last in _merged(asked, low, stable, merge=False)
                     for hole in _holes(first, last, present)]
            if holes:
                result[p] = holes
    finally:
        consumer.close()
    return result


def _records_in(consumer: Consumer, bootstrap: str, topic: str, partition: int, first: int, last: int,
                timeout: float) -> list[int]:
    """Offsets in [first, last] that a read_committed consumer receives (the span lies below the LSO)."""
    consumer.assign([TopicPartition(topic, partition, first)])
    found: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            messages = consumer.consume(num_messages=10_000, timeout=0.2)
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"reading offsets {first}-{last} of partition {partition} of {topic} "
                                       f"from {bootstrap} failed: {error.str()}")
                if message.offset() > last:
                    return found
                found.append(message.offset())
            if messages:
                deadline = time.monotonic() + timeout
                continue
            # No record for a while: past `last` the span is done (the rest were markers or aborted).
            position = consumer.position([TopicPartition(topic, partition)])[0].offset
            if position > last:
                return found
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"reading offsets {first}-{last} of partition {partition} of {topic} from {bootstrap}: "
                    f"nothing after offset {max(found, default=first - 1)} within {timeout:.0f}s; "
                    "the broker may be overloaded or unreachable")
    finally:
        consumer.unassign()


def committed_offsets(bootstrap: str, topic: str, group: str, partitions: Iterable[int] | None = None,
                      timeout: float = 10.0) -> dict[int, int | None]:
    """{partition: committed offset of a consumer group, None when it has committed nothing}."""
    parts = list(partitions) if partitions is not None else partitions_of(bootstrap, topic, timeout)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False, **QUIET})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=timeout)
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in committed}
    finally:
        consumer.close()
