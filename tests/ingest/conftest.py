"""Fixtures of the ingest tests: log-ingest as a real server writing to a fresh topic of the session broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ingest_helpers import TOKEN, Server, read_events, start_server


@pytest.fixture
def ingest(broker: str, topic: str) -> Iterator[Server]:
    """log-ingest on a free port, with a token, writing to a fresh topic of the session broker."""
    server = start_server(kafka_bootstrap_servers=broker, kafka_topic_logs=topic, ingest_token=TOKEN,
                          ingest_max_body_bytes=200_000, environment="prod")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def events_of(broker: str, topic: str) -> Callable[[int], list[dict[str, Any]]]:
    """Reads exactly that many LogEvents from the test's topic (fails on fewer or more)."""
    return lambda count: read_events(broker, topic, count)
