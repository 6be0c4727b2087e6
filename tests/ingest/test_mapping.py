"""OTLP and JSON records into LogEvents, without a server: severities, time fallbacks, names, ids, keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from incident_contracts.codec import Codec
from incident_contracts.fast_encode import FastEncoder
from incident_contracts.settings import Settings
from incident_ingest import mapping
from incident_ingest.mapping import BadRequest, Encoder, JsonFields

ENCODER = Encoder(FastEncoder())
CODEC = Codec()
DIGEST = bytes(range(16))


def _decoded(batch: mapping.Batch) -> list[dict[str, Any]]:
    return [CODEC.decode(value) for value in batch.values]


def _request(resource: dict[str, str], records: list[dict[str, Any]]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    logs = request.resource_logs.add()
    for key, value in resource.items():
        logs.resource.attributes.add(key=key).value.string_value = value
    scope = logs.scope_logs.add()
    for fields in records:
        body = fields.pop("body", None)
        record = scope.log_records.add(**fields)
        if isinstance(body, bytes):
            record.body.bytes_value = body
        elif body is not None:
            record.body.string_value = body
    return request


@pytest.mark.parametrize(("number", "text", "level"), [
    (1, "", "TRACE"), (4, "", "TRACE"), (5, "", "DEBUG"), (9, "", "INFO"), (12, "", "INFO"), (13, "", "WARN"),
    (17, "", "ERROR"), (21, "", "FATAL"), (24, "", "FATAL"), (0, "warning", "WARN"), (0, "CRITICAL", "FATAL"),
    (0, "", "INFO"), (0, "chatty", "INFO"), (30, "error", "ERROR"),
])
def test_severity_number_else_text_else_info(number: int, text: str, level: str) -> None:
    batch = mapping.otlp_batch(_request({"service.name": "a"}, [{"severity_number": number, "severity_text": text,
                                                                 "body": "x"}]), ENCODER, DIGEST, "prod")
    assert _decoded(batch)[0]["level"] == level


def test_time_then_observed_time_then_now() -> None:
    before = mapping.now_ms()
    batch = mapping.otlp_batch(_request({"service.name": "a"}, [
        {"time_unix_nano": 1_796_000_000_123_456_789, "observed_time_unix_nano": 1_796_000_009_000_000_000},
        {"observed_time_unix_nano": 1_796_000_009_000_000_000},
        {},
    ]), ENCODER, DIGEST, "prod")
    stamps = [int(e["timestamp"].timestamp() * 1000) for e in _decoded(batch)]
    assert stamps[:2] == [1_796_000_000_123, 1_796_000_009_000]
    assert before <= stamps[2] <= mapping.now_ms()


def test_defaults_names_and_bytes_bodies() -> None:
    batch = mapping.otlp_batch(_request({"service.name": "a"}, [{"body": b"\x00\xff"}, {}]), ENCODER, DIGEST,
                               "staging")
    first, empty = _decoded(batch)
    assert (first["host"], first["environment"]) == ("unknown", "staging")
    assert first["message"] == "AP8="  # bytes as base64
    assert empty["message"] == ""


def test_names_the_codec_refuses_are_rejected_per_record_with_its_reason() -> None:
    ok = mapping.otlp_batch(_request({"service.name": "s" * 128, "host.name": "pod-1:8080"}, [{}]), ENCODER,
                            DIGEST, "prod")
    assert ok.accepted == 1 and not ok.rejections
    long = mapping.otlp_batch(_request({"service.name": "s" * 129}, [{}, {}]), ENCODER, DIGEST, "prod")
    assert long.accepted == 0 and [r.index for r in long.rejections] == [0, 1]
    assert long.rejections[0].reason == "invalid_name" and "129 characters" in long.rejections[0].detail
    host = mapping.otlp_batch(_request({"service.name": "a", "host.name": "web 1"}, [{}]), ENCODER, DIGEST, "prod")
    assert host.rejections[0].reason == "invalid_name" and host.rejections[0].detail.startswith("host")
    env = mapping.otlp_batch(_request({"service.name": "a", "deployment.environment.name": "pröd"}, [{}]),
                             ENCODER, DIGEST, "prod")
    assert "environment" in env.rejections[0].detail


def test_event_ids_follow_the_body_and_the_index() -> None:
    request = _request({"service.name": "a"}, [{"body": "x"}, {"body": "x"}])
    first = _decoded(mapping.otlp_batch(request, ENCODER, mapping.event_ids(b"one")[0], "prod"))
    again = _decoded(mapping.otlp_batch(request, ENCODER, mapping.event_ids(b"one")[0], "prod"))
    other = _decoded(mapping.otlp_batch(request, ENCODER, mapping.event_ids(b"two")[0], "prod"))
    assert [e["event_id"] for e in first] == [e["event_id"] for e in again]
    assert first[0]["event_id"] != first[1]["event_id"]
    assert not {e["event_id"] for e in first} & {e["event_id"] for e in other}


def test_otlp_json_accepts_original_field_names_and_numbers_for_int64() -> None:
    body = {"resource_logs": [{"resource": {"attributes": [{"key": "service.name", "value": {"string_value": "a"}}]},
                               "scope_logs": [{"log_records": [{"time_unix_nano": 1_796_000_000_000_000_000,
                                                                "severity_number": "SEVERITY_NUMBER_WARN",
                                                                "trace_id": "00" * 15 + "01",
                                                                "body": {"int_value": 7}}]}]}]}
    request = mapping.otlp_from_json(json.dumps(body).encode())
    event = _decoded(mapping.otlp_batch(request, ENCODER, DIGEST, "prod"))[0]
    assert (event["level"], event["message"], event["trace_id"]) == ("WARN", "7", "00" * 15 + "01")
    with pytest.raises(BadRequest, match="not JSON"):
        mapping.otlp_from_json(b"{")


FIELDS = JsonFields.from_settings(Settings(_env_file=None, ingest_json_host_keys="kubernetes.host,host"))


@pytest.mark.parametrize(("value", "expected"), [
    (1_796_000_000, 1_796_000_000_000), (1_796_000_000.5, 1_796_000_000_500),
    (1_796_000_000_250, 1_796_000_000_250), (1_796_000_000_250_000, 1_796_000_000_250),
    (1_796_000_000_250_000_000, 1_796_000_000_250), ("1796000000.25", 1_796_000_000_250),
    ("2026-11-30T10:00:00Z", 1_796_032_800_000), ("2026-11-30 10:00:00", 1_796_032_800_000),
    ("2026-11-30T12:00:00.5+02:00", 1_796_032_800_500), (True, None), ("soon", None), (-5, None),
])
def test_json_timestamps(value: Any, expected: int | None) -> None:
    assert mapping.json_timestamp(value) == expected


def test_json_keys_nested_and_leftovers_as_attributes() -> None:
    items = mapping.split_json(json.dumps([
        {"log": "hello", "kubernetes": {"host": "node-7", "pod": "api-1"}, "service": "api", "n": 3},
    ]).encode())
    batch = mapping.json_batch(items, FIELDS, ENCODER, DIGEST, None, "fallback-host", "prod")
    event = _decoded(batch)[0]
    assert (event["message"], event["host"], event["service"]) == ("hello", "node-7", "api")
    assert event["attributes"] == {"kubernetes": '{"host":"node-7","pod":"api-1"}', "n": "3"}


def test_json_lines_skip_blank_lines_and_name_bad_ones() -> None:
    items = mapping.split_json(b'{"message": "a", "service": "s"}\n\n  \n{oops\n')
    batch = mapping.json_batch(items, FIELDS, ENCODER, DIGEST, None, None, "prod")
    assert batch.accepted == 1 and [(r.index, r.reason) for r in batch.rejections] == [(1, "invalid_json")]
    with pytest.raises(BadRequest, match="JSON array"):
        mapping.split_json(b"[1, 2")


def test_hostile_json_is_rejected_or_tolerated_never_an_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(BadRequest):
        mapping.split_json(deep)
    with pytest.raises(BadRequest):
        mapping.otlp_from_json(b'{"resourceLogs": ' + deep + b"}")
    items = mapping.split_json(b'{"message": "m", "service": "s", "level": NaN}\n' + b'{"a":' * 50_000 + b"\n")
    batch = mapping.json_batch(items, FIELDS, ENCODER, DIGEST, None, None, "prod")
    assert _decoded(batch)[0]["level"] == "INFO"
    assert [(r.index, r.reason) for r in batch.rejections] == [(1, "invalid_json")]
