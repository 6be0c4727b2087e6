"""True end offsets on the embedded broker, whose ListOffsets(latest) reports a batch base offset."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from incident_contracts.codec import Codec
from incident_contracts.kafka import (
    BrokerUnavailable,
    TopicMissing,
    TopicSpec,
    check_broker,
    end_offsets,
    ensure_topics,
    offset_range,
)

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, count: int, *, linger_ms: int = 50) -> dict[int, int]:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms, "compression.type": "lz4",
                         "enable.idempotence": True, "batch.num.messages": 10_000})
    delivered: dict[int, int] = {}

    def on_delivery(err, msg):
        assert err is None, err
        delivered[msg.partition()] = delivered.get(msg.partition(), 0) + 1

    for i in range(count):
        producer.produce(topic, value=f"value-{i}".encode(), key=f"k{i % 13}".encode(), on_delivery=on_delivery)
    assert producer.flush(30) == 0
    return delivered


def test_end_offsets_count_every_record_of_multi_record_batches(broker: str, topic: str) -> None:
    delivered = _produce(broker, topic, 5_000)
    assert sum(delivered.values()) == 5_000
    probe = Consumer({"bootstrap.servers": broker, "group.id": "probe"})
    reported = {p: probe.get_watermark_offsets(TopicPartition(topic, p))[1] for p in (0, 1)}
    probe.close()
    ends = end_offsets(broker, topic)
    assert ends == delivered
    # Multi-record batches: the watermark a plain consumer is told and the helper's answer agree.
    assert reported == ends


def test_end_offsets_grow_with_later_batches(broker: str, topic: str) -> None:
    first = _produce(broker, topic, 1_000)
    second = _produce(broker, topic, 2_345)
    ranges = offset_range(broker, topic)
    assert {p: hi for p, (_, hi) in ranges.items()} == {
        p: first.get(p, 0) + second.get(p, 0) for p in ranges}
    assert all(lo == 0 for lo, _ in ranges.values())


def test_empty_topic_has_zero_end_offsets(broker: str, topic: str) -> None:
    assert end_offsets(broker, topic) == {0: 0, 1: 0}


def test_consumer_reads_exactly_up_to_the_end_offset(broker: str, topic: str) -> None:
    codec = Codec()
    producer = Producer({"bootstrap.servers": broker, "linger.ms": 20})
    for i in range(300):
        producer.produce(topic, codec.encode({
            "event_id": f"e{i}", "timestamp": 1_700_000_000_000 + i, "service": "orders", "environment": "prod",
            "host": "orders-1", "level": "INFO", "message": f"request {i}", "attributes": {}}), key=b"orders")
    producer.flush(10)
    ends = end_offsets(broker, topic)
    consumer = Consumer({"bootstrap.servers": broker, "group.id": "reader", "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    seen, eof = [], set()
    while len(eof) < len([p for p in ends if ends[p] > 0]):
        msg = consumer.poll(5)
        assert msg is not None, "consumer stalled before the end offsets"
        if msg.error():
            eof.add(msg.partition())
            continue
        seen.append(codec.decode(msg.value())["event_id"])
        assert msg.offset() < ends[msg.partition()]
    consumer.close()
    assert sorted(seen) == sorted(f"e{i}" for i in range(300))


def test_ensure_topics_is_idempotent(broker: str) -> None:
    spec = TopicSpec("test.idempotent", partitions=3)
    first = ensure_topics(broker, [spec])
    second = ensure_topics(broker, [spec])
    assert first["test.idempotent"] in {"created", "exists with 3 partitions"}
    assert second["test.idempotent"] == "exists with 3 partitions"
    assert check_broker(broker)["test.idempotent"] == 3


def test_missing_topic_and_unreachable_broker_give_clear_errors(broker: str) -> None:
    with pytest.raises(TopicMissing, match="does not exist"):
        end_offsets(broker, "no.such.topic")
    with pytest.raises(BrokerUnavailable, match="make up"):
        check_broker("127.0.0.1:1", timeout=1)
