"""The codec: both wire formats, schema evolution both ways, and typed errors for everything else."""

from __future__ import annotations

import io
import json
import struct
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from fastavro import schemaless_reader
from hypothesis import given, settings
from hypothesis import strategies as st

from incident_contracts import avro_schemas
from incident_contracts.codec import (
    Codec,
    DecodeError,
    EncodeError,
    decoding_codec,
    default_codec,
)
from incident_contracts.dead_letter import DECODE_REASONS, DeadLetterReason
from incident_contracts.registry import RegistryUnavailable

LEVELS = avro_schemas.level_symbols()
NAMES = st.from_regex(r"[A-Za-z0-9._:/-]{1,40}", fullmatch=True)  # what names may be (codec.NAME_PATTERN)
text = st.text(max_size=200)
optional_text = st.none() | text

events = st.fixed_dictionaries(
    {
        "event_id": st.uuids().map(str),
        "timestamp": st.integers(min_value=0, max_value=4_102_444_800_000),
        "service": NAMES,
        "environment": st.sampled_from(["prod", "staging", "dev"]),
        "host": NAMES,
        "level": st.sampled_from(LEVELS),
        "logger": optional_text,
        "message": text,
        "trace_id": optional_text,
        "http_method": st.none() | st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
        "http_path": optional_text,
        "http_status": st.none() | st.integers(min_value=100, max_value=599),
        "latency_ms": st.none() | st.floats(min_value=0, max_value=1e7, allow_nan=False),
        "error_type": optional_text,
        "attributes": st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=5),
    }
)


def _ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


def _same(decoded: dict, original: dict) -> None:
    assert _ms(decoded["timestamp"]) == original["timestamp"]
    for key, value in original.items():
        if key != "timestamp":
            assert decoded[key] == value, key


@given(events)
@settings(max_examples=200, deadline=None)
def test_single_object_round_trip(event: dict) -> None:
    codec = Codec()
    message = codec.encode(event)
    assert message[:2] == b"\xc3\x01"
    assert message[2:10] == avro_schemas.latest().fingerprint
    decoded = codec.decode(message)
    _same(decoded, event)
    assert decoded["span_id"] is None


@given(events, st.integers(min_value=1, max_value=2**31 - 1))
@settings(max_examples=100, deadline=None)
def test_confluent_round_trip(event: dict, schema_id: int) -> None:
    schema = avro_schemas.latest()
    codec = Codec(registry_id=schema_id, registry_lookup=lambda i: schema if i == schema_id else None)
    message = codec.encode(event)
    assert message[0] == 0 and struct.unpack(">I", message[1:5])[0] == schema_id
    _same(codec.decode(message), event)


@given(events)
@settings(max_examples=100, deadline=None)
def test_old_writer_decodes_with_new_reader(event: dict) -> None:
    v1 = Codec(writer=avro_schemas.by_version(1))
    decoded = Codec().decode(v1.encode(event))
    _same(decoded, event)
    assert decoded["span_id"] is None


@given(events, st.text(max_size=30))
@settings(max_examples=100, deadline=None)
def test_new_writer_decodes_with_old_reader(event: dict, span_id: str) -> None:
    message = Codec().encode({**event, "span_id": span_id})
    body = io.BytesIO(message[10:])
    decoded = schemaless_reader(body, avro_schemas.latest().parsed, avro_schemas.by_version(1).parsed)
    assert "span_id" not in decoded
    _same(decoded, event)


def test_two_versions_have_distinct_fingerprints_and_v2_adds_one_optional_field() -> None:
    v1, v2 = avro_schemas.by_version(1), avro_schemas.by_version(2)
    assert v1.fingerprint != v2.fingerprint
    v1_fields = [f["name"] for f in v1.raw["fields"]]
    v2_fields = [f["name"] for f in v2.raw["fields"]]
    assert set(v2_fields) - set(v1_fields) == {"span_id"}
    added = next(f for f in v2.raw["fields"] if f["name"] == "span_id")
    assert added["type"][0] == "null" and added["default"] is None
    assert avro_schemas.latest().version == 2


GOOD = Codec().encode({"event_id": "e", "timestamp": 1, "service": "s", "environment": "prod", "host": "h",
                       "level": "ERROR", "message": "m", "attributes": {}})


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"", DeadLetterReason.EMPTY),
        (None, DeadLetterReason.EMPTY),
        (b"\xc3\x01\x00", DeadLetterReason.TRUNCATED),
        (GOOD[:10], DeadLetterReason.TRUNCATED),
        (GOOD[:-3], DeadLetterReason.TRUNCATED),
        (b"\x00\x00", DeadLetterReason.TRUNCATED),
        (b"{\"json\": true}", DeadLetterReason.BAD_MAGIC),
        (b"\x01\x02\x03\x04\x05\x06", DeadLetterReason.BAD_MAGIC),
        (b"\xc3\x01" + b"\xff" * 8 + GOOD[10:], DeadLetterReason.UNKNOWN_FINGERPRINT),
        (b"\x00\x00\x00\x00\x07" + GOOD[10:], DeadLetterReason.UNKNOWN_SCHEMA_ID),
        (GOOD + b"\x00\x00", DeadLetterReason.TRAILING_BYTES),
        (b"\xc3\x01" + GOOD[2:10] + b"\xff" * 40, DeadLetterReason.MALFORMED_BODY),
        (b"\xc3\x01" + b"x" * 2_000_000, DeadLetterReason.TOO_LARGE),
    ],
)
def test_bad_messages_raise_typed_errors(message: bytes | None, reason: DeadLetterReason) -> None:
    with pytest.raises(DecodeError) as error:
        Codec().decode(message)
    assert error.value.reason == reason
    assert error.value.detail


@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_never_escape_as_other_exceptions(data: bytes) -> None:
    try:
        Codec().decode(data)
    except DecodeError as error:
        assert error.reason in DECODE_REASONS  # never a reason of the checks after decoding


def test_encoding_a_record_that_does_not_fit_raises_encode_error() -> None:
    with pytest.raises(EncodeError, match="does not fit"):
        Codec().encode({"event_id": "e", "timestamp": "yesterday"})


class _FakeRegistry(BaseHTTPRequestHandler):
    schemas: ClassVar[dict[int, str]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        for schema_id, text in self.schemas.items():
            if text == body["schema"]:
                return self._reply(200, {"id": schema_id})
        schema_id = 40 + len(self.schemas)
        self.schemas[schema_id] = body["schema"]
        return self._reply(200, {"id": schema_id})

    def do_GET(self) -> None:
        schema_id = int(self.path.rsplit("/", 1)[1])
        if schema_id in self.schemas:
            return self._reply(200, {"schema": self.schemas[schema_id]})
        return self._reply(404, {"error_code": 40403, "message": "Schema not found"})


@pytest.fixture
def registry_url():
    _FakeRegistry.schemas = {7: json.dumps(avro_schemas.by_version(1).raw)}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_registry_codec_registers_and_decodes_ids_it_has_never_seen(registry_url: str) -> None:
    event = {"event_id": "e", "timestamp": 1_700_000_000_000, "service": "s", "environment": "prod",
             "host": "h", "level": "WARN", "message": "m", "attributes": {"k": "v"}}
    writer = default_codec(registry_url)
    assert writer.registry_id == 41  # registered next to the v1 schema already known as id 7
    message = writer.encode(event)
    reader = decoding_codec(registry_url)
    _same(reader.decode(message), event)
    v1_message = b"\x00" + struct.pack(">I", 7) + Codec(writer=avro_schemas.by_version(1)).encode(event)[10:]
    _same(reader.decode(v1_message), event)
    with pytest.raises(DecodeError) as error:
        reader.decode(b"\x00" + struct.pack(">I", 999) + message[5:])
    assert error.value.reason == DeadLetterReason.UNKNOWN_SCHEMA_ID
    # A reader also accepts single-object messages when a registry is configured.
    _same(reader.decode(Codec().encode(event)), event)


def test_unreachable_registry_is_reported_not_dead_lettered() -> None:
    with pytest.raises(RegistryUnavailable, match="SCHEMA_REGISTRY_URL"):
        default_codec("http://127.0.0.1:1")


def test_decoded_timestamps_are_utc() -> None:
    assert Codec().decode(GOOD)["timestamp"] == datetime.fromtimestamp(0.001, UTC)
