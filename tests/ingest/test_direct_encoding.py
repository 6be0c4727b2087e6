"""The ingest's direct Avro writer gives exactly what the record-by-record path gives through the
contracts' generic codec: same bytes, keys, rejections (index, reason, detail) and totals, for OTLP
requests and JSON objects of every shape (property tests, bounded examples; about 5 s)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from incident_contracts.codec import MAX_MESSAGE_BYTES, Codec
from incident_contracts.fast_encode import FastEncoder
from incident_contracts.settings import Settings
from incident_ingest import mapping
from incident_ingest.mapping import Batch, Encoder, JsonFields

DIRECT = Encoder(FastEncoder())
GENERIC = Encoder(Codec())  # every record through fastavro's writer: an independent reference
DIGEST = bytes(range(16))
FIELDS = JsonFields.from_settings(Settings(_env_file=None, ingest_json_host_keys="kubernetes.host,host"))
PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def _fixed_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Records without a time take the request's arrival: the same moment for both paths compared."""
    monkeypatch.setattr(mapping, "now_ms", lambda: 1_796_000_000_000)
    yield

text = st.text(max_size=12)
names = st.sampled_from(["checkout", "", " ", "web 1", "s" * 129, "pod-1:8080", "pröd", "a"])
times = st.sampled_from([0, 1, 1_796_000_000_123_456_789, 10**15, 2**64 - 1, 1_000_000_000_000])
attribute_keys = st.sampled_from(["http.request.method", "http.method", "url.path", "http.target", "http.route",
                                  "http.response.status_code", "http.status_code", "exception.type",
                                  "error.type", "user.id", "k", "ключ"])


def _set_value(value: Any, kind: str, data: st.DataObject) -> None:
    if kind == "string":
        value.string_value = data.draw(st.one_of(text, st.sampled_from(["200", "503", "²", "x" * 9000, "12345678901",
                                                                         "GET"])))
    elif kind == "int":
        value.int_value = data.draw(st.integers(-(2**63), 2**63 - 1))
    elif kind == "double":
        value.double_value = data.draw(st.floats(allow_nan=True))
    elif kind == "bool":
        value.bool_value = data.draw(st.booleans())
    elif kind == "bytes":
        value.bytes_value = data.draw(st.binary(max_size=6))
    elif kind == "array":
        value.array_value.values.add().string_value = data.draw(text)
        value.array_value.values.add().int_value = 3
    elif kind == "kvlist":
        value.kvlist_value.values.add(key="a").value.string_value = data.draw(text)


kinds = st.sampled_from(["none", "string", "string", "int", "double", "bool", "bytes", "array", "kvlist"])


def _otlp(data: st.DataObject) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for _ in range(data.draw(st.integers(0, 3))):
        logs = request.resource_logs.add()
        for key in ("service.name", "host.name", "deployment.environment.name", "deployment.environment"):
            if data.draw(st.booleans()):
                attribute = logs.resource.attributes.add(key=key)
                if key == "service.name" and data.draw(st.integers(0, 5)) == 0:
                    attribute.value.int_value = 7
                else:
                    attribute.value.string_value = data.draw(names)
        for _ in range(data.draw(st.integers(0, 2))):
            scope = logs.scope_logs.add()
            scope.scope.name = data.draw(st.sampled_from(["", "com.example.app", "логгер"]))
            for _ in range(data.draw(st.integers(0, 4))):
                record = scope.log_records.add(
                    time_unix_nano=data.draw(times), observed_time_unix_nano=data.draw(times),
                    severity_number=data.draw(st.integers(0, 30)),
                    severity_text=data.draw(st.sampled_from(["", "warning", "CRITICAL", "chatty", "error"])),
                    trace_id=data.draw(st.sampled_from([b"", bytes(16), bytes(range(1, 17)), b"\x01\x02\x03"])),
                    span_id=data.draw(st.sampled_from([b"", bytes(8), bytes(range(1, 9)), bytes(16)])))
                kind = data.draw(kinds)
                if kind != "none":
                    _set_value(record.body, kind, data)
                for _ in range(data.draw(st.integers(0, 5))):
                    attribute = record.attributes.add(key=data.draw(attribute_keys))
                    kind = data.draw(kinds)
                    if kind != "none":
                        _set_value(attribute.value, kind, data)
    return request


def _same(direct: Batch, generic: Batch) -> None:
    assert direct.total == generic.total
    assert direct.rejections == generic.rejections
    assert direct.keys == generic.keys
    assert direct.values == generic.values


@PROPERTY
@given(st.data())
def test_otlp_requests_encode_as_the_generic_codec_does(data: st.DataObject) -> None:
    request = _otlp(data)
    direct = mapping.otlp_batch(request, DIRECT, DIGEST, "prod")
    _same(direct, mapping.otlp_batch_by_records(request, GENERIC, DIGEST, "prod"))
    # and the direct writer did run (the generic encoder has no fast layout, so it takes the other path)
    assert DIRECT.header is not None and GENERIC.header is None


json_values = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | text,
                           lambda inner: st.lists(inner, max_size=2) | st.dictionaries(text, inner, max_size=2),
                           max_leaves=4)
json_keys = st.sampled_from(["message", "msg", "log", "timestamp", "ts", "time", "level", "severity", "service",
                             "app", "host", "kubernetes", "environment", "env", "trace_id", "traceId", "span_id",
                             "span.id", "n", "\ud800", "x"])
stamps = st.sampled_from([1_796_000_000, 1_796_000_000.5, "2026-11-30T10:00:00Z", "1796000000.25", "soon", -5,
                          10**25, 1e300, "0001-01-01T00:00:00", 10**12, True, None, "2026-11-30T10:00:00.5+02:00"])
levels = st.sampled_from(["info", "WARN", 40, "x", None, 7.5, "E"])
services = st.sampled_from(["api", "", "web 1", "s" * 129, "a\ud800", 5])
message_values = st.sampled_from(["hello", "", "surrogate \ud800", "ünïcode", "m" * 70]) | json_values


@st.composite
def json_objects(draw: Any) -> Any:
    obj = draw(st.dictionaries(json_keys, json_values, max_size=4))
    for key, values in (("message", message_values), ("timestamp", stamps), ("level", levels),
                        ("service", services), ("host", services)):
        if draw(st.booleans()):
            obj[key] = draw(values)
    if draw(st.integers(0, 3)) == 0:
        obj["kubernetes"] = {"host": draw(services)}
    return obj


@PROPERTY
@given(st.lists(st.one_of(json_objects(), json_values), max_size=6), st.sampled_from([None, "svc"]),
       st.sampled_from([None, "h-1"]))
def test_json_objects_encode_as_the_generic_codec_does(objects: list[Any], service: str | None,
                                                      host: str | None) -> None:
    items: list[tuple[Any, str | None]] = [(obj, None) for obj in objects] + [(None, "not JSON: x")]
    direct = mapping.json_batch(items, FIELDS, DIRECT, DIGEST, service, host, "prod")
    _same(direct, mapping.json_batch(items, FIELDS, GENERIC, DIGEST, service, host, "prod"))


def test_a_record_over_the_size_limit_is_rejected_by_index_and_the_others_written() -> None:
    big = "m" * (MAX_MESSAGE_BYTES + 10)
    items = mapping.split_json(json.dumps([{"message": "a", "service": "s"}, {"message": big, "service": "s"},
                                           {"message": "c", "service": "s"}]).encode())
    direct = mapping.json_batch(items, FIELDS, DIRECT, DIGEST, None, None, "prod")
    _same(direct, mapping.json_batch(items, FIELDS, GENERIC, DIGEST, None, None, "prod"))
    assert [(r.index, r.reason) for r in direct.rejections] == [(1, "too_large")] and direct.accepted == 2

    request = ExportLogsServiceRequest()
    logs = request.resource_logs.add()
    logs.resource.attributes.add(key="service.name").value.string_value = "s"
    scope = logs.scope_logs.add()
    for message in ("a", big, "c"):
        scope.log_records.add().body.string_value = message
    direct = mapping.otlp_batch(request, DIRECT, DIGEST, "prod")
    _same(direct, mapping.otlp_batch_by_records(request, GENERIC, DIGEST, "prod"))
    assert [(r.index, r.reason) for r in direct.rejections] == [(1, "too_large")] and direct.keys == [b"s", b"s"]


def test_a_json_timestamp_beyond_avro_long_is_an_invalid_timestamp_not_an_error() -> None:
    items = [({"message": "a", "service": "s", "ts": 10**25}, None), ({"message": "b", "service": "s"}, None)]
    batch = mapping.json_batch(items, FIELDS, DIRECT, DIGEST, None, None, "prod")
    assert [(r.index, r.reason) for r in batch.rejections] == [(0, "invalid_timestamp")] and batch.accepted == 1
    assert "out of range" in batch.rejections[0].detail


def _lines_by_json_loads(body: bytes) -> list[tuple[Any, str | None]]:
    """Newline-delimited JSON read one json.loads per line: what split_json's scan must equal."""
    items: list[tuple[Any, str | None]] = []
    for line in body.decode("utf-8", "replace").strip().splitlines():
        if line.strip():
            try:
                items.append((json.loads(line), None))
            except (ValueError, RecursionError) as exc:
                items.append((None, f"not JSON: {exc}"))
    return items


line_parts = st.sampled_from(['{"message": "a"}', "{}", "[1, 2]", "NaN", "-Infinity", "3", '"x"', " ", "\t", "\xa0",
                              "\u3000", "{", "}", '{"a": 1} {"b": 2}', "tru", "null", "\\ud800", '"\\ud800"',
                              '{"k": [1, {"z": null}]}', "1e999", "\x0b", "\r", "0x1", ",", "[" * 3])


@PROPERTY
@given(st.lists(st.lists(line_parts, max_size=4).map("".join), max_size=8))
@example(["{}\xa0", "{}"]).via("a space JSON does not allow after the value")
@example(["\u3000{}", " {} \t", '{"a": 1} {"b": 2}', "NaN", "[1]"]).via("spaces before, extra data, a constant")
def test_json_lines_read_as_json_loads_reads_each_line(lines: list[str]) -> None:
    body = "\n".join(lines).encode()
    if body.decode().strip().startswith("["):
        body = b"{}\n" + body  # a body starting with '[' is one JSON array, not lines
    assert repr(mapping.split_json(body)) == repr(_lines_by_json_loads(body))
