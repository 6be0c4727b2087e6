"""The ingest service's request bodies fuzzed (tests/fuzz_targets.py, target ingest_bodies) from valid OTLP
protobuf and JSON exports, Fluent Bit / Vector JSON lines and text lines: a body is refused with a reason or
read into records that are each encoded or rejected with a reason, and nothing raises."""

from __future__ import annotations

import json
from pathlib import Path

from fuzzing import SAMPLES, fuzz
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

KINDS = ("otlp_protobuf", "otlp_json", "json_lines", "text_lines")  # fuzz_targets.INGEST_KINDS, by first byte


def export(service: str, records: int) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    logs = request.resource_logs.add()
    for key, value in (("service.name", service), ("host.name", "web-01"), ("deployment.environment", "prod")):
        logs.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    scope = logs.scope_logs.add()
    scope.scope.name = "com.example.checkout"
    for index in range(records):
        scope.log_records.append(LogRecord(
            time_unix_nano=1_796_000_000_000_000_000 + index, severity_number=17 if index % 2 else 9,
            severity_text="ERROR" if index % 2 else "INFO", body=AnyValue(string_value=f"request {index} failed"),
            trace_id=bytes(range(16)), span_id=bytes(range(8)),
            attributes=[KeyValue(key="http.status_code", value=AnyValue(int_value=500 + index))]))
    return request


def test_the_ingest_endpoints_survive_fuzzed_bodies(tmp_path: Path) -> None:
    seeds = []
    for service, records in (("checkout-api", 3), ("payments", 1), ("", 2)):
        request = export(service, records)
        seeds.append(bytes([KINDS.index("otlp_protobuf")]) + request.SerializeToString())
        seeds.append(bytes([KINDS.index("otlp_json")]) + json_format.MessageToJson(request).encode())
    fluent_bit = [{"date": 1796000000.25, "log": "GET /cart 502", "level": "error", "service": "cart",
                   "host": "node-2"}]
    vector = [{"timestamp": "2026-12-07T03:00:00.123Z", "message": "timeout talking to db", "level": "WARN",
               "service": "orders", "host": "node-3", "environment": "staging"}]
    for objects in (fluent_bit, vector, fluent_bit + vector):
        seeds.append(bytes([KINDS.index("json_lines")]) + "\n".join(json.dumps(o) for o in objects).encode())
        seeds.append(bytes([KINDS.index("json_lines")]) + json.dumps(objects).encode())
    for sample in sorted(SAMPLES.glob("*.log"))[:10]:
        seeds.append(bytes([KINDS.index("text_lines")]) + b"\n".join(sample.read_bytes().splitlines()[:6]))
    fuzz("ingest_bodies", seeds, tmp_path / "corpus")
