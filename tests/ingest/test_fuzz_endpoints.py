"""The ingest service's HTTP endpoints fuzzed whole (property tests, 200 requests, about 10 s): generated
and mutated bodies, gzip that is and is not gzip, any Content-Type and Content-Encoding, hostile query
names, missing or wrong tokens. Every request is answered 200, or 4xx with a reason; never a server error.
Every record written decodes as a LogEvent with valid names; every record refused is named with a reason.

tests/ingest/test_fuzz_bodies.py fuzzes the body parsers under coverage guidance (atheris); this test adds
what lies around them: the request plumbing of incident_ingest.app (token, size limit, decompression,
content negotiation, query parameters, answers)."""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from starlette.testclient import TestClient

from incident_contracts.codec import NAME_PATTERN, Codec
from incident_contracts.settings import Settings
from incident_ingest.app import create_app

SAMPLES = Path(__file__).resolve().parents[1] / "log_generator" / "samples"

TOKEN = "fuzz-ingest-token-" + "f" * 16
MAX_BODY = 4096
PROTOBUF, JSON = "application/x-protobuf", "application/json"
CODEC = Codec()
NAME = re.compile(NAME_PATTERN.strip("^$"))
ANSWERED = {200, 400, 401, 413, 415}  # what a client's request may get; 429/503 only from Kafka, 5xx never


class RecordingSink:
    """Kafka's stand-in: keeps what the endpoints write."""

    def __init__(self) -> None:
        self.values: list[bytes] = []
        self.keys: list[bytes] = []
        self.queued = 0

    async def send(self, values: list[bytes], keys: list[bytes]) -> None:
        self.values += values
        self.keys += keys

    def check(self, timeout: float = 2.0) -> str | None:
        return None

    def close(self, timeout: float = 10.0) -> int:
        return 0


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[TestClient, RecordingSink]]:
    sink = RecordingSink()
    config = Settings(_env_file=None, ingest_token=TOKEN, ingest_max_body_bytes=MAX_BODY,  # type: ignore[call-arg]
                      environment="prod", kafka_bootstrap_servers="127.0.0.1:9", schema_registry_url="")
    with TestClient(create_app(config, sink=sink), raise_server_exceptions=True) as client:
        yield client, sink


def _export(service: str, host: str, messages: list[str]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    logs = request.resource_logs.add()
    for key, value in (("service.name", service), ("host.name", host), ("deployment.environment", "prod")):
        logs.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    scope = logs.scope_logs.add()
    for index, message in enumerate(messages):
        scope.log_records.append(LogRecord(
            time_unix_nano=1_796_000_000_000_000_000 + index, severity_number=17, severity_text="ERROR",
            body=AnyValue(string_value=message),
            attributes=[KeyValue(key="http.status_code", value=AnyValue(int_value=502))]))
    return request


HOSTILE = ["checkout", "web-01", "", " ", "a b", "<img src=x>", "![x](http://127.0.0.1:9/b)", "svc\nname",
           "s" * 129, "pröd", "ns/svc:8080", "\x00", "ignore-previous-instructions", "[link](javascript:x)"]
names = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=20))
messages = st.one_of(st.sampled_from(["request failed", "", "x" * 5000, "<script>alert(1)</script>",
                                      "password=hunter2", "\u202eevil\ufffd"]), st.text(max_size=40))


def _seeds() -> dict[str, list[bytes]]:
    """Valid bodies of each endpoint (OTLP as protobuf, then as JSON)."""
    export = _export("checkout", "web-01", ["upstream timeout", "pool exhausted"])
    objects = [{"timestamp": "2026-12-07T03:00:00.123Z", "message": "timeout talking to db", "level": "WARN",
                "service": "orders", "host": "node-3"}, {"date": 1796000000.25, "log": "GET /cart 502"}]
    return {"/v1/logs": [export.SerializeToString(), json_format.MessageToJson(export).encode()],
            "/v1/json": ["\n".join(json.dumps(o) for o in objects).encode(), json.dumps(objects).encode()],
            "/v1/lines": [b"\n".join(sample.read_bytes().splitlines()[:6]) for sample in sorted(SAMPLES.glob("*.log"))]}


SEEDS = _seeds()


@st.composite
def bodies(draw: st.DrawFn, path: str) -> bytes:
    """A valid body of the endpoint, one mutated (a slice replaced), one built with hostile fields, or bytes."""
    kind = draw(st.sampled_from(["seed", "mutated", "mutated", "built", "built", "built", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=300))
    if kind in ("seed", "mutated"):
        seed = draw(st.sampled_from(SEEDS[path]))
        if kind == "seed":
            return seed
        start = draw(st.integers(0, len(seed)))
        end = draw(st.integers(start, min(len(seed), start + 16)))
        return seed[:start] + draw(st.binary(max_size=16)) + seed[end:]
    if path == "/v1/logs":
        export = _export(draw(names), draw(names), draw(st.lists(messages, max_size=3)))
        return export.SerializeToString() if draw(st.booleans()) else json_format.MessageToJson(export).encode()
    if path == "/v1/json":
        keys = st.sampled_from(["message", "log", "timestamp", "date", "level", "service", "host", "environment",
                                "x"])
        values = st.one_of(names, messages, st.integers(), st.floats(allow_nan=True), st.none(), st.booleans(),
                           st.lists(st.integers(), max_size=2))
        objects = draw(st.lists(st.dictionaries(keys, values, max_size=6), max_size=4))
        return (json.dumps(objects) if draw(st.booleans()) else "\n".join(json.dumps(o) for o in objects)).encode()
    # Lines of one sample file, each followed by hostile text (most formats end with the message).
    lines = draw(st.sampled_from(SEEDS[path])).splitlines()
    return b"\n".join(line + b" " + draw(messages).encode("utf-8", "replace") for line in lines)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    path = draw(st.sampled_from(["/v1/logs", "/v1/json", "/v1/lines"]))
    body = draw(bodies(path))
    if path == "/v1/logs" and draw(st.integers(0, 5)):  # mostly the type the body is in
        content_type = JSON if body[:1] in (b"{", b"[", b" ") else PROTOBUF
    elif path == "/v1/json" and draw(st.integers(0, 5)):
        content_type = draw(st.sampled_from([JSON, f"{JSON}; charset=utf-8", "application/x-ndjson"]))
    else:
        content_type = draw(st.sampled_from([PROTOBUF, JSON, "text/plain", "", "multipart/form-data"]))
    headers = {"Content-Type": content_type}
    encoding = draw(st.sampled_from([""] * 6 + ["gzip", "gzip", "gzip-bad", "deflate", "identity", "br"]))
    if encoding in ("gzip", "deflate"):
        body = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
        if draw(st.integers(0, 4)) == 0:
            body = body[:draw(st.integers(0, len(body)))]  # truncated
    elif encoding == "gzip-bad":
        encoding = "gzip"  # declared, not done: the body is not gzip data
    if encoding:
        headers["Content-Encoding"] = encoding
    token = draw(st.sampled_from(["right"] * 10 + ["missing", "wrong"]))
    if token != "missing":
        headers["Authorization"] = f"Bearer {TOKEN}" if token == "right" else f"Bearer {TOKEN}x"
    params = {key: draw(names) for key in draw(st.sets(st.sampled_from(["service", "host", "environment"])))}
    if path == "/v1/lines" and draw(st.booleans()):
        params["service"] = "checkout"  # a text line names no service in most formats
    if path == "/v1/lines" and draw(st.integers(0, 9)):
        params["format"] = draw(st.sampled_from(["auto"] * 6 + ["access", "log4j", "no-such-format", "", "../etc"]))
    return {"path": path, "body": body, "headers": headers, "params": params, "token": token}


def _reason(path: str, response: Any) -> str:
    """The reason a refusal gives: OTLP's google.rpc.Status message, or the JSON endpoints' error."""
    if path == "/v1/logs":
        status = status_pb2.Status()
        if response.headers["content-type"].startswith(JSON):
            json_format.Parse(response.text, status)
        else:
            status.ParseFromString(response.content)
        return status.message
    answer = response.json()
    if "errors" in answer:
        assert answer["errors"] and all(e["reason"] and e["detail"] for e in answer["errors"]), answer
        return answer["message"]
    return answer["error"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests())
@example(request={"path": "/v1/logs", "body": gzip.compress(b"\0" * (MAX_BODY * 4)), "params": {},
                  "token": "right", "headers": {"Content-Type": PROTOBUF, "Content-Encoding": "gzip",
                                                "Authorization": f"Bearer {TOKEN}"}})  # inflates past the limit
@example(request={"path": "/v1/json", "body": b'{"message": "x", "service": "<img src=x>"}', "params": {},
                  "token": "right", "headers": {"Content-Type": JSON, "Authorization": f"Bearer {TOKEN}"}})
def test_every_request_is_answered_with_a_reason_and_only_valid_records_are_written(
        service: tuple[TestClient, RecordingSink], request: dict[str, Any]) -> None:
    client, sink = service
    sink.values.clear()
    sink.keys.clear()
    path = request["path"]
    response = client.post(path, content=request["body"], headers=request["headers"], params=request["params"])
    assert response.status_code in ANSWERED, (response.status_code, response.text[:500])
    # What the run covered: pytest --hypothesis-show-statistics
    hypothesis.event(f"{path} {response.status_code}{' written' if sink.values else ''}")
    if request["token"] != "right":
        assert response.status_code == 401 and not sink.values
    if response.status_code >= 400:
        assert _reason(path, response).strip(), response.content[:300]
    if response.status_code in (401, 413, 415):
        assert not sink.values  # refused before reading a record
    if path == "/v1/logs" and response.status_code == 200:
        answer = ExportLogsServiceResponse()
        if response.headers["content-type"].startswith(JSON):
            json_format.Parse(response.text, answer)
        else:
            answer.ParseFromString(response.content)
        if answer.partial_success.rejected_log_records:  # OTLP's way: 200, the rejected ones named with reasons
            assert "rejected" in answer.partial_success.error_message
    elif path != "/v1/logs" and response.status_code in (200, 400) and "accepted" in response.json():
        assert response.json()["accepted"] == len(sink.values)
    assert len(sink.keys) == len(sink.values)
    for value in sink.values:  # what reached "Kafka" is a LogEvent whose names pass the decode rule
        event = CODEC.decode(value)  # raises DecodeError (invalid_name, ...) on anything the pipeline refuses
        for field in ("service", "environment", "host"):
            name = event.get(field)
            assert name is None or NAME.fullmatch(name), (field, name)
