"""JSON lines as Fluent Bit's and Vector's http outputs send them, text lines in a named format, and the
service's refusals (token, size, bad records) and metrics.

Neither Fluent Bit nor Vector is a Debian package here, so their payloads are built as their docs describe:
Fluent Bit `http` output, `format json_lines` (one object per line, `date` as epoch seconds with a
fraction, `log` holding the line) and `format json` (an array); Vector `http` sink, `encoding.codec json`
(an array of events, `timestamp` in RFC 3339, `message`, `host`) and `framing newline_delimited`.
Integration (session broker + a uvicorn server in a thread): about 10 s for the module."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest
from ingest_helpers import auth

pytestmark = pytest.mark.integration


def test_fluent_bit_json_lines(ingest: Any, events_of: Any) -> None:
    lines = [
        {"date": 1796000000.25, "log": "GET /health 200", "host": "node-1", "stream": "stdout"},
        {"date": 1796000001.5, "log": "upstream timed out", "level": "error", "host": "node-1"},
    ]
    body = "\n".join(json.dumps(line) for line in lines) + "\n"
    response = httpx.post(f"{ingest.url}/v1/json?service=nginx&environment=edge", content=body,
                          headers={**auth(), "Content-Type": "application/x-ndjson"})
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 2, "rejected": 0}
    health, timeout = sorted(events_of(2), key=lambda e: e["timestamp"])
    assert health["timestamp"] == 1_796_000_000_250 and health["message"] == "GET /health 200"
    assert health["level"] == "INFO" and health["attributes"] == {"stream": "stdout"}
    assert timeout["timestamp"] == 1_796_000_001_500 and timeout["level"] == "ERROR"
    for event in (health, timeout):
        assert (event["service"], event["host"], event["environment"]) == ("nginx", "node-1", "edge")
        assert event["_key"] == "nginx"


def test_vector_json_array_gzip(ingest: Any, events_of: Any) -> None:
    events = [
        {"timestamp": "2026-11-30T10:00:00.123Z", "message": "user signed in", "host": "app-3",
         "service": "accounts", "source_type": "file", "file": "/var/log/accounts.log"},
        {"timestamp": "2026-11-30T10:00:01Z", "message": "password reset", "host": "app-3",
         "service": "accounts", "level": "warn", "source_type": "file", "file": "/var/log/accounts.log"},
    ]
    response = httpx.post(f"{ingest.url}/v1/json", content=gzip.compress(json.dumps(events).encode()),
                          headers={**auth(), "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    signed_in, reset = sorted(events_of(2), key=lambda e: e["timestamp"])
    assert signed_in["timestamp"] == 1_796_032_800_123 and signed_in["message"] == "user signed in"
    assert reset["level"] == "WARN" and reset["environment"] == "prod"  # ENVIRONMENT, none in the events
    assert signed_in["service"] == "accounts" and signed_in["host"] == "app-3"
    assert signed_in["attributes"] == {"source_type": "file", "file": "/var/log/accounts.log"}


def test_bad_json_records_are_named_by_index_and_the_rest_written(ingest: Any, events_of: Any) -> None:
    body = "\n".join([
        json.dumps({"message": "fine", "service": "api"}),
        "{not json",
        json.dumps({"message": "no service here"}),
        json.dumps({"message": "odd name", "service": "api v2"}),
        json.dumps(["an", "array"]),
        json.dumps({"message": "bad time", "service": "api", "timestamp": "yesterday"}),
        json.dumps({"msg": "also fine", "app": "api", "severity": 40}),
    ])
    response = httpx.post(f"{ingest.url}/v1/json", content=body, headers=auth())
    assert response.status_code == 400
    answer = response.json()
    assert answer["accepted"] == 2 and answer["rejected"] == 5
    reasons = {e["index"]: e["reason"] for e in answer["errors"]}
    assert reasons == {1: "invalid_json", 2: "missing_service", 3: "invalid_name", 4: "not_an_object",
                       5: "invalid_timestamp"}
    assert "' '" in next(e["detail"] for e in answer["errors"] if e["index"] == 3)
    written = sorted(events_of(2), key=lambda e: e["message"])
    assert [(e["message"], e["level"]) for e in written] == [("also fine", "ERROR"), ("fine", "INFO")]


def test_text_lines_in_a_named_format(ingest: Any, events_of: Any) -> None:
    body = ('10.0.3.160 - - [20/Nov/2026:08:00:01 +0000] "POST /api/v1/orders HTTP/1.1" 404 6466 "-" '
            '"curl/8.5.0" 2.356\n'
            "garbage here\n"
            '10.0.3.121 - - [20/Nov/2026:08:00:04 +0000] "GET /api/v1/orders HTTP/1.1" 200 157 "-" '
            '"Go-http-client/1.1" 1.2\n')
    response = httpx.post(f"{ingest.url}/v1/lines?format=access&service=web&host=lb-1", content=body,
                          headers={**auth(), "Content-Type": "text/plain"})
    assert response.status_code == 400
    assert response.json()["errors"] == [{"index": 1, "reason": "unparsed_line",
                                          "detail": "does not match the access format"}]
    first, second = sorted(events_of(2), key=lambda e: e["timestamp"])
    assert (first["service"], first["host"], first["http_method"], first["http_status"]) == ("web", "lb-1", "POST", 404)
    assert first["timestamp"] == 1_795_161_601_000 and second["http_status"] == 200
    unknown = httpx.post(f"{ingest.url}/v1/lines?format=no-such-format", content=body, headers=auth())
    assert unknown.status_code == 400 and "no-such-format" in unknown.json()["error"]


def test_a_request_without_the_token_is_refused(ingest: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": auth()["Authorization"] + "x"}):
        response = httpx.post(f"{ingest.url}/v1/json", content=b'{"message": "x", "service": "a"}',
                              headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "INGEST_TOKEN" in response.json()["error"]
    otlp = httpx.post(f"{ingest.url}/v1/logs", content=b"", headers={"Content-Type": "application/x-protobuf"})
    assert otlp.status_code == 401


def test_a_body_over_the_limit_is_413_also_after_decompression(ingest: Any) -> None:
    line = json.dumps({"message": "x" * 1000, "service": "a"}) + "\n"
    big = (line * 250).encode()  # 250 kB; the limit is 200 kB
    response = httpx.post(f"{ingest.url}/v1/json", content=big, headers=auth())
    assert response.status_code == 413 and "INGEST_MAX_BODY_BYTES" in response.json()["error"]
    bomb = gzip.compress(big)
    assert len(bomb) < 200_000
    response = httpx.post(f"{ingest.url}/v1/json", content=bomb, headers={**auth(), "Content-Encoding": "gzip"})
    assert response.status_code == 413 and "decompresses" in response.json()["error"]


def test_health_readiness_and_metrics(ingest: Any, events_of: Any) -> None:
    assert httpx.get(f"{ingest.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{ingest.url}/readyz")
    assert ready.status_code == 200 and ready.json()["topic"] == ingest.settings.kafka_topic_logs
    body = "\n".join([json.dumps({"message": "ok", "service": "api"}), json.dumps({"message": "x"})])
    assert httpx.post(f"{ingest.url}/v1/json", content=body, headers=auth()).status_code == 400
    events_of(1)
    metrics = httpx.get(f"{ingest.url}/metrics").text
    assert 'ingest_records_accepted_total{endpoint="json"} 1.0' in metrics
    assert 'ingest_records_rejected_total{endpoint="json",reason="missing_service"} 1.0' in metrics
    assert 'ingest_requests_total{endpoint="json",status="400"} 1.0' in metrics
    assert 'ingest_request_duration_seconds_count{endpoint="json"} 1.0' in metrics
    assert "ingest_requests_in_flight 0.0" in metrics
    assert "ingest_kafka_delivery_failures_total" in metrics or "ingest_kafka_delivery_failures" in metrics


def test_readiness_fails_when_the_topic_is_missing(broker: str) -> None:
    from ingest_helpers import start_server

    server = start_server(kafka_bootstrap_servers=broker, kafka_topic_logs="no.such.topic.here")
    try:
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        assert ready.status_code == 503 and "no.such.topic.here" in ready.json()["reason"]
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()
