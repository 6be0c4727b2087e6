"""A produce/consume round trip of encoded events through the broker: proves the stack and the codec work."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from incident_contracts.codec import decoding_codec, default_codec
from incident_contracts.kafka import end_offsets
from incident_contracts.settings import Settings


def round_trip(settings: Settings, count: int = 1000, timeout: float = 30.0) -> dict[str, float]:
    """Produce `count` events with the configured wire format, read them back, check every field."""
    topic = settings.kafka_topic_logs
    encoder = default_codec(settings.schema_registry_url, topic)
    decoder = decoding_codec(settings.schema_registry_url)
    marker = uuid.uuid4().hex
    now = int(time.time() * 1000)
    sent = [{"event_id": f"{marker}-{i}", "timestamp": now + i, "service": "roundtrip-check",
             "environment": settings.environment, "host": "localhost", "level": "INFO", "logger": "stack",
             "message": f"round trip {i}", "attributes": {"check": marker}} for i in range(count)]
    before = end_offsets(settings.kafka_bootstrap_servers, topic)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "enable.idempotence": True,
                         "compression.type": settings.kafka_compression.value, "linger.ms": 20})
    started = time.monotonic()
    for record in sent:
        producer.produce(topic, encoder.encode(record), key=record["service"].encode())
    if producer.flush(timeout) != 0:
        raise RuntimeError(f"round trip: not every event was delivered within {timeout:.0f}s")
    produced_s = time.monotonic() - started
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"roundtrip-{marker}",
                         "enable.auto.commit": False})
    received: dict[str, dict] = {}
    try:
        consumer.assign([TopicPartition(topic, p, offset) for p, offset in before.items()])
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error():
                    continue
                event = decoder.decode(message.value())
                if event["attributes"].get("check") == marker:
                    received[event["event_id"]] = event
    finally:
        consumer.close()
    missing = [r["event_id"] for r in sent if r["event_id"] not in received]
    if missing:
        raise RuntimeError(f"round trip: {len(missing)} of {count} events did not come back (first: {missing[0]})")
    for record in sent:
        back = received[record["event_id"]]
        if back["message"] != record["message"] or int(back["timestamp"].timestamp() * 1000) != record["timestamp"]:
            raise RuntimeError(f"round trip: event {record['event_id']} came back changed: {back}")
    return {"events": count, "produce_seconds": produced_s, "total_seconds": time.monotonic() - started}
