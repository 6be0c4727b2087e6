"""When Kafka cannot take records, the client is told to retry (503 + Retry-After) and a retry loses nothing.

The session's broker is paused with SIGSTOP for a few seconds (and resumed whatever happens): connections
stay open and nothing answers, as with a hung or partitioned broker. Records of the refused request may
still land once it resumes (at least once); they carry the same event ids as the retry's. Integration:
about 8 s; the unreachable-broker test about 5 s."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import httpx
import pytest
from ingest_helpers import read_events, start_server

from incident_contracts.kafka import end_offsets
from incident_stack.broker import free_port

pytestmark = pytest.mark.integration


def _body(start: int, count: int) -> str:
    return "\n".join(json.dumps({"message": f"event {i}", "service": "billing", "timestamp": 1_796_000_000_000 + i})
                     for i in range(start, start + count))


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_paused_broker_gets_503_and_the_retry_writes_everything(broker: Any, topic: str) -> None:
    server = start_server(kafka_bootstrap_servers=broker, kafka_topic_logs=topic, ingest_delivery_timeout_seconds=2.0)
    try:
        first = httpx.post(f"{server.url}/v1/json", content=_body(0, 50), timeout=20)
        assert first.status_code == 200, first.text

        os.killpg(broker.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            refused = httpx.post(f"{server.url}/v1/json", content=_body(50, 50), timeout=20)
            waited = time.monotonic() - started
        finally:
            os.killpg(broker.pid, signal.SIGCONT)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "5"
        assert "retry" in refused.json()["error"]
        assert waited < 10  # the delivery timeout (2 s) and its margin, not forever

        deadline = time.monotonic() + 20
        while True:  # the client's retry loop
            retried = httpx.post(f"{server.url}/v1/json", content=_body(50, 50), timeout=20)
            if retried.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert retried.status_code == 200, retried.text

        metrics = httpx.get(f"{server.url}/metrics").text
        assert _metric(metrics, 'ingest_records_accepted_total{endpoint="json"}') == 100
        assert _metric(metrics, "ingest_kafka_delivery_failures_total") >= 1
        assert _metric(metrics, 'ingest_requests_total{endpoint="json",status="503"}') >= 1
        # Every record is in the topic; records of the refused request that landed anyway are duplicates
        # with the same event ids as the retry's.
        written = read_events(broker, topic, _count(broker, topic), timeout=15)
        assert {e["message"] for e in written} == {f"event {i}" for i in range(100)}
        ids_by_message: dict[str, set[str]] = {}
        for event in written:
            ids_by_message.setdefault(event["message"], set()).add(event["event_id"])
        assert all(len(ids) == 1 for ids in ids_by_message.values())
        assert 100 <= len(written) <= 150
    finally:
        server.stop()


def _count(bootstrap: str, topic: str) -> int:
    return sum(end_offsets(bootstrap, topic).values())


def test_an_unreachable_broker_gets_503_with_retry_after() -> None:
    server = start_server(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", kafka_topic_logs="nowhere",
                          ingest_delivery_timeout_seconds=1.0)
    try:
        response = httpx.post(f"{server.url}/v1/logs", content=b"\n\x00",  # one empty ResourceLogs
                              headers={"Content-Type": "application/x-protobuf"}, timeout=20)
        assert response.status_code == 200  # no record: nothing to wait for
        body = _otlp_one()
        response = httpx.post(f"{server.url}/v1/logs", content=body,
                              headers={"Content-Type": "application/x-protobuf"}, timeout=20)
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        from google.rpc import status_pb2

        assert "did not acknowledge 1 of 1" in status_pb2.Status.FromString(response.content).message
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        assert ready.status_code == 503 and "did not answer" in ready.json()["reason"]
    finally:
        server.stop()


def _otlp_one() -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "api"
    resource.scope_logs.add().log_records.add(severity_number=9).body.string_value = "hello"
    return request.SerializeToString()
