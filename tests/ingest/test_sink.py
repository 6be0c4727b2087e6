"""The Kafka sink's refusals that need no broker: a record librdkafka will not take, a full queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from incident_ingest.sink import DeliveryFailed, KafkaSink, QueueFull
from incident_stack.broker import free_port


@pytest.fixture
def sink() -> Iterator[KafkaSink]:
    sink = KafkaSink(f"127.0.0.1:{free_port()}", "nowhere", delivery_timeout_s=1.0, max_queued=1000)
    yield sink
    sink.close(timeout=0)


def test_a_record_the_producer_refuses_fails_the_request_with_its_reason(sink: KafkaSink) -> None:
    failures: list[tuple[str, int]] = []
    sink._on_failure = lambda name, count: failures.append((name, count))
    with pytest.raises(DeliveryFailed, match="MSG_SIZE_TOO_LARGE"):
        asyncio.run(sink.send([b"x" * 2_000_000], [b"k"]))
    assert failures == [("MSG_SIZE_TOO_LARGE", 1)]


def test_a_request_that_would_overfill_the_queue_is_refused_before_producing(sink: KafkaSink) -> None:
    with pytest.raises(QueueFull, match="at most 1000"):
        asyncio.run(sink.send([b"x"] * 1001, [b"k"] * 1001))
    time.sleep(0.3)  # the report thread serves librdkafka's own events (connection errors), which it counts
    assert sink.queued == 0  # not one of the records was produced
