"""OTLP/HTTP logs into the log topic: the OpenTelemetry SDK's exporter (protobuf, gzip) and OTLP/JSON.

Integration (session broker + a uvicorn server in a thread): about 5 s for the module."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import httpx
import pytest
from ingest_helpers import TOKEN, auth
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

pytestmark = pytest.mark.integration


def _sdk_logger(url: str, resource: dict[str, str]) -> tuple[Any, LoggerProvider]:
    provider = LoggerProvider(resource=Resource.create(resource))
    exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs", headers={"Authorization": f"Bearer {TOKEN}"},
                               compression=Compression.Gzip, timeout=10)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    return provider.get_logger("checkout.payments"), provider


def test_the_sdk_exporter_writes_each_record_with_its_fields(ingest: Any, events_of: Any) -> None:
    logger, provider = _sdk_logger(ingest.url, {"service.name": "checkout", "host.name": "web-1",
                                                "deployment.environment.name": "staging"})
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("pay") as span:
        logger.emit(severity_number=SeverityNumber.ERROR, severity_text="ERROR", body="payment failed",
                    attributes={"http.response.status_code": 502, "order": "A-17"})
        context = span.get_span_context()
    logger.emit(severity_number=SeverityNumber.INFO2, body={"event": "retried", "attempt": 2},
                timestamp=1_796_000_000_500_000_000)
    assert provider.force_flush(10_000)
    provider.shutdown()

    failed, retried = sorted(events_of(2), key=lambda e: e["message"])
    assert {failed["_key"], retried["_key"]} == {"checkout"}
    for event in (failed, retried):
        assert (event["service"], event["host"], event["environment"]) == ("checkout", "web-1", "staging")
        assert event["logger"] == "checkout.payments"
    assert failed["message"] == "payment failed" and failed["level"] == "ERROR"
    assert failed["trace_id"] == format(context.trace_id, "032x")
    assert failed["span_id"] == format(context.span_id, "016x")
    assert failed["http_status"] == 502
    assert failed["attributes"] == {"order": "A-17"}  # the status code moved to its own field
    assert abs(failed["timestamp"] - time.time() * 1000) < 60_000  # no time given: observed time
    assert json.loads(retried["message"]) == {"event": "retried", "attempt": 2}
    assert retried["level"] == "INFO" and retried["trace_id"] is None
    assert retried["timestamp"] == 1_796_000_000_500


def _otlp_json(records: list[dict[str, Any]], resource: dict[str, str]) -> dict[str, Any]:
    return {"resourceLogs": [{
        "resource": {"attributes": [{"key": k, "value": {"stringValue": v}} for k, v in resource.items()]},
        "scopeLogs": [{"scope": {"name": "com.example.orders"}, "logRecords": records}],
    }]}


def test_otlp_json_as_the_collector_sends_it(ingest: Any, events_of: Any) -> None:
    payload = _otlp_json([
        {"timeUnixNano": "1796000000123000000", "severityNumber": 13, "severityText": "WARN",
         "body": {"stringValue": "slow query"}, "traceId": "5b8efff798038103d269b633813fc60c",
         "spanId": "eee19b7ec3c1b174",
         "attributes": [{"key": "db.system", "value": {"stringValue": "postgresql"}},
                        {"key": "rows", "value": {"intValue": "42"}}]},
        {"observedTimeUnixNano": "1796000001000000000", "severityText": "error",
         "body": {"kvlistValue": {"values": [{"key": "event", "value": {"stringValue": "refund"}},
                                             {"key": "amount", "value": {"doubleValue": 9.5}}]}}},
    ], {"service.name": "orders", "host.name": "db-2", "deployment.environment": "qa"})
    response = httpx.post(f"{ingest.url}/v1/logs", content=gzip.compress(json.dumps(payload).encode()),
                          headers={**auth(), "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {}  # no partial_success: everything was written

    slow, refund = sorted(events_of(2), key=lambda e: e["timestamp"])
    assert slow["timestamp"] == 1_796_000_000_123 and slow["level"] == "WARN"
    assert slow["message"] == "slow query" and slow["logger"] == "com.example.orders"
    assert slow["trace_id"] == "5b8efff798038103d269b633813fc60c" and slow["span_id"] == "eee19b7ec3c1b174"
    assert slow["attributes"] == {"db.system": "postgresql", "rows": "42"}
    assert (slow["service"], slow["host"], slow["environment"]) == ("orders", "db-2", "qa")
    assert refund["timestamp"] == 1_796_000_001_000 and refund["level"] == "ERROR"
    assert json.loads(refund["message"]) == {"event": "refund", "amount": 9.5}


def test_partial_success_names_the_rejected_records(ingest: Any, events_of: Any) -> None:
    request = ExportLogsServiceRequest()
    good = request.resource_logs.add()
    good.resource.attributes.add(key="service.name").value.string_value = "cart"
    records = good.scope_logs.add().log_records
    for text in ("one", "two"):
        records.add(time_unix_nano=1_796_000_000_000_000_000, severity_number=9).body.string_value = text
    bad = request.resource_logs.add()
    bad.resource.attributes.add(key="service.name").value.string_value = "cart <script>"
    bad.scope_logs.add().log_records.add(severity_number=17).body.string_value = "three"
    nameless = request.resource_logs.add()
    nameless.scope_logs.add().log_records.add(severity_number=17).body.string_value = "four"

    response = httpx.post(f"{ingest.url}/v1/logs", content=request.SerializeToString(),
                          headers={**auth(), "Content-Type": "application/x-protobuf"})
    assert response.status_code == 200
    answer = ExportLogsServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_log_records == 2
    message = answer.partial_success.error_message
    assert "record 2: invalid_name" in message and "'<'" in message
    assert "record 3: missing_service" in message
    assert sorted(e["message"] for e in events_of(2)) == ["one", "two"]


def test_a_body_that_is_not_otlp_is_a_400_status(ingest: Any) -> None:
    response = httpx.post(f"{ingest.url}/v1/logs", content=b"\xff\x00garbage",
                          headers={**auth(), "Content-Type": "application/x-protobuf"})
    assert response.status_code == 400
    from google.rpc import status_pb2

    status = status_pb2.Status.FromString(response.content)
    assert "not a protobuf ExportLogsServiceRequest" in status.message
    bad_id = _otlp_json([{"body": {"stringValue": "x"}, "traceId": "zz"}], {"service.name": "a"})
    response = httpx.post(f"{ingest.url}/v1/logs", json=bad_id, headers=auth())
    assert response.status_code == 400
    assert "traceId" in response.json()["message"] and "hex" in response.json()["message"]
