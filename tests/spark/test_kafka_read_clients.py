"""A Python worker keeps one Kafka consumer: the one for the read configuration it served last."""

from __future__ import annotations

import pytest

from incident_stream import kafka_read
from incident_stream.kafka_read import ReadConfig, close_consumers


def test_a_worker_keeps_only_the_consumer_of_its_latest_read_configuration() -> None:
    # No broker listens on these ports: consumers connect lazily, and say nothing (QUIET).
    first = kafka_read._consumer(ReadConfig(bootstrap="127.0.0.1:1", topic="t"))
    assert kafka_read._consumer(ReadConfig(bootstrap="127.0.0.1:1", topic="t")) is first  # reused
    second = kafka_read._consumer(ReadConfig(bootstrap="127.0.0.1:2", topic="t"))
    assert list(kafka_read._consumers.values()) == [second]
    with pytest.raises(RuntimeError, match="closed"):
        first.assignment()  # the consumer of the earlier broker was closed
    close_consumers()
    assert kafka_read._consumers == {}
    with pytest.raises(RuntimeError, match="closed"):
        second.assignment()
