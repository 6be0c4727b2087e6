"""Helpers of the streaming job tests: events, producing to the broker, reading tables like the dashboard."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from incident_contracts.codec import Codec


def make_event(i: int, **overrides: Any) -> dict[str, Any]:
    """A valid LogEvent, stamped now (milliseconds), with a few varying fields."""
    event = {
        "event_id": f"evt-{i}",
        "timestamp": int(time.time() * 1000) - (i % 1000),
        "service": ("api-gateway", "order-service", "payments")[i % 3],
        "environment": "prod",
        "host": f"host-{i % 4}",
        "level": "ERROR" if i % 10 == 0 else "INFO",
        "logger": "http",
        "message": f"GET /api/v1/orders/{i} returned {503 if i % 10 == 0 else 200} in {i % 300}ms",
        "trace_id": uuid.uuid4().hex,
        "http_method": "GET",
        "http_path": f"/api/v1/orders/{i}",
        "http_status": 503 if i % 10 == 0 else 200,
        "latency_ms": float(i % 300),
        "attributes": {"region": "eu-west-1"},
    }
    event.update(overrides)
    return event


def produce(bootstrap: str, topic: str, values: Iterable[bytes | None], *, partition: int | None = None,
            linger_ms: int = 20, timestamp_ms: int | None = None) -> int:
    """Produce raw values (round-robin over partitions unless one is given); returns how many."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms, "compression.type": "lz4",
                         "message.max.bytes": 4_000_000, "batch.num.messages": 10_000})
    count = 0
    for value in values:
        kwargs: dict[str, Any] = {"value": value, "key": b"k%d" % (count % 7)}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        producer.produce(topic, **kwargs)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    return count


def produce_events(bootstrap: str, topic: str, events: Iterable[dict[str, Any]], codec: Codec | None = None,
                   **kwargs: Any) -> int:
    codec = codec or Codec()
    return produce(bootstrap, topic, (codec.encode(e) for e in events), **kwargs)


def source_reader(spark: Any, bootstrap: str, topic: str, **options: Any) -> Any:
    reader = (spark.readStream.format("kafka_arrow").option("kafka.bootstrap.servers", bootstrap)
              .option("subscribe", topic))
    for key, value in options.items():
        reader = reader.option(key, str(value))
    return reader


def uncommitted_files(folder: Path) -> dict[str, float]:
    """{path: modification time} of the Parquet files in a Delta table's folder that no version of its log
    adds: files of task attempts that were never committed (killed, or replays dropped by the sink)."""
    import json
    from urllib.parse import unquote

    added = set()
    for entry in (folder / "_delta_log").glob("*.json"):
        for line in entry.read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            if "add" in action:
                added.add(unquote(action["add"]["path"]))
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*.parquet")
            if "_delta_log" not in p.parts and str(p.relative_to(folder)) not in added}


def transactions(folder: Path, app_id: str) -> list[int]:
    """The micro-batch ids an application committed to a Delta table, one per commit, in log order."""
    import json

    versions = []
    for entry in sorted((folder / "_delta_log").glob("*.json")):
        for line in entry.read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            if action.get("txn", {}).get("appId") == app_id:
                versions.append(int(action["txn"]["version"]))
    return versions


def read_table(path: Path) -> Any:
    """The latest committed version of the Delta table at `path` (partition columns included)."""
    from incident_contracts.table_store import TableStore

    return TableStore(str(path.parent)).read(path.name)
