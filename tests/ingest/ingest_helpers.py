"""Helpers of the ingest tests: a real uvicorn server on a free port in a thread, records read back from Kafka."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import uvicorn
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from incident_contracts.codec import Codec
from incident_contracts.kafka import partitions_of
from incident_contracts.settings import Settings
from incident_ingest.app import create_app
from incident_stack.broker import free_port

TOKEN = "ingest-test-token-" + "t" * 16


@dataclass
class Server:
    url: str
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(**overrides: Any) -> Server:
    port = free_port()
    overrides.setdefault("ingest_token", None)  # none unless the test gives one (whatever the environment holds)
    settings = Settings(_env_file=None, ingest_port=port, **overrides)  # type: ignore[call-arg]
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the ingest server did not start")
        time.sleep(0.02)
    return Server(f"http://127.0.0.1:{port}", settings, server, thread)


def read_events(bootstrap: str, topic: str, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """`count` LogEvents decoded from the topic (fails when fewer arrive), with their keys as `_key`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ingest-test-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    codec = Codec()
    events: list[dict[str, Any]] = []
    try:
        # assign(), not subscribe(): no consumer group to join, so reading starts at once.
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions_of(bootstrap, topic)])
        deadline = time.monotonic() + timeout
        while len(events) < count and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.3):
                if message.error():
                    continue
                event = codec.decode(message.value())
                event["timestamp"] = int(event["timestamp"].timestamp() * 1000)  # decoded as a datetime
                event["_key"] = message.key().decode()
                events.append(event)
        # Anything beyond `count` would be a duplicate or a stray record: look a little longer.
        extra_deadline = time.monotonic() + 0.3
        while time.monotonic() < extra_deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.2):
                if not message.error():
                    events.append(codec.decode(message.value()))
    finally:
        consumer.close()
    assert len(events) == count, f"expected {count} events on {topic}, read {len(events)}"
    return events


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}
