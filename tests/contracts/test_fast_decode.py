"""The vectorised decoder gives exactly what Codec.decode gives: same records, same failure reasons."""

from __future__ import annotations

import copy
import datetime as dt
import io
import math
import re
import struct
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incident_contracts import avro_schemas
from incident_contracts.codec import Codec, DecodeError
from incident_contracts.dead_letter import DeadLetterReason
from incident_contracts.fast_decode import FastDecoder, arrow_schema

INVALID_FIELD = DeadLetterReason.INVALID_FIELD.value

V1 = avro_schemas.by_version(1)
V2 = avro_schemas.latest()
LEVELS = list(avro_schemas.level_symbols())
MS_MIN, MS_MAX = -62135596800000, 253402300799999

text = st.text(max_size=40)
optional_text = st.none() | text
# Mostly names the codec accepts, sometimes any text (which it rejects as invalid_name, or as blank lets through).
names = st.from_regex(r"[A-Za-z0-9._:/-]{1,40}", fullmatch=True) | st.sampled_from(["", "  ", "a b", "x" * 129]) | text


@st.composite
def records(draw: st.DrawFn, version: int = 2) -> dict[str, Any]:
    record = {
        "event_id": draw(text),
        "timestamp": draw(st.integers(MS_MIN, MS_MAX) | st.integers(-(2**62), 2**62)),
        "service": draw(names),
        "environment": draw(names),
        "host": draw(names),
        "level": draw(st.sampled_from(LEVELS)),
        "logger": draw(optional_text),
        "message": draw(st.text(max_size=300)),
        "trace_id": draw(optional_text),
        "http_method": draw(optional_text),
        "http_path": draw(optional_text),
        "http_status": draw(st.none() | st.integers(-(2**31), 2**31 - 1)),
        "latency_ms": draw(st.none() | st.floats(allow_nan=True, allow_infinity=True)),
        "error_type": draw(optional_text),
        "attributes": draw(st.dictionaries(text, text, max_size=6)),
    }
    if version >= 2:
        record["span_id"] = draw(optional_text)
    return record


def _corrupt(message: bytes, data: st.DataObject) -> bytes:
    kind = data.draw(st.sampled_from(["keep", "keep", "truncate", "flip", "append", "header", "random"]))
    if kind == "truncate":
        return message[: data.draw(st.integers(0, max(0, len(message) - 1)))]
    if kind == "flip" and message:
        where = data.draw(st.integers(0, len(message) - 1))
        return message[:where] + bytes([data.draw(st.integers(0, 255))]) + message[where + 1:]
    if kind == "append":
        return message + data.draw(st.binary(min_size=1, max_size=5))
    if kind == "header":
        return data.draw(st.sampled_from([b"\xc3\x01" + b"\x00" * 8, b"\x00\x00\x00\x00\x07", b"\x00",
                                          b"\xc3", b"{\"json\": 1}"])) + message[10:]
    if kind == "random":
        return data.draw(st.binary(max_size=60))
    return message


_ADDRESS = re.compile(r" at 0x[0-9a-f]+")  # the codec's details may name a stream object


def _normalise(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    if isinstance(value, list):  # Arrow gives maps as item lists
        return {k: v for k, v in value}
    return value


def _row(record: dict[str, Any]) -> dict[str, Any]:
    return {k: _normalise(v) for k, v in record.items()}


def _check(messages: list[bytes | None], codec: Codec) -> None:
    result = FastDecoder(codec).decode(messages)
    assert result.batch.schema == arrow_schema(V2)
    rows = dict(zip(result.ok.tolist(), result.batch.to_pylist(), strict=True))
    failures = {i: (reason, detail) for i, reason, detail in result.failures}
    assert set(rows).isdisjoint(failures)
    assert set(rows) | set(failures) == set(range(len(messages)))
    for i, message in enumerate(messages):
        try:
            expected = codec.decode(message)
        except DecodeError as exc:
            got = failures.get(i)
            assert got is not None and got[0] == exc.reason.value, f"message {i}: {message!r}"
            assert _ADDRESS.sub("", got[1]) == _ADDRESS.sub("", exc.detail)
            continue
        if i in failures:
            # Only values the codec accepts but Arrow's int32 cannot hold may fail beyond the codec.
            assert failures[i][0] == INVALID_FIELD
            assert not -(2**31) <= expected["http_status"] <= 2**31 - 1
            continue
        assert _row(rows[i]) == _row(expected), f"message {i}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), min_size=1, max_size=12), st.lists(records(version=1), max_size=6), st.data())
def test_matches_codec_on_new_old_and_corrupted_messages(new: list, old: list, data: st.DataObject) -> None:
    v2, v1 = Codec(), Codec(writer=V1)
    messages: list[bytes | None] = [v2.encode(r) for r in new] + [v1.encode(r) for r in old]
    messages = [_corrupt(m, data) for m in messages]
    messages += data.draw(st.lists(st.sampled_from([None, b""]), max_size=2))
    order = data.draw(st.permutations(range(len(messages))))
    _check([messages[i] for i in order], v2)


@settings(max_examples=40, deadline=None)
@given(st.lists(records(), min_size=1, max_size=8), st.data())
def test_matches_codec_with_confluent_framing(new: list, data: st.DataObject) -> None:
    known = {7: V2, 3: V1}
    writer = Codec(registry_id=7, registry_lookup=known.get)
    old_writer = Codec(writer=V1, registry_id=3, registry_lookup=known.get)
    messages: list[bytes | None] = [writer.encode(r) for r in new]
    messages += [old_writer.encode({k: v for k, v in r.items() if k != "span_id"}) for r in new[:2]]
    messages.append(struct.pack(">bI", 0, 99) + messages[0][5:])  # an id the registry does not know
    messages = [_corrupt(m, data) if data.draw(st.booleans()) else m for m in messages]
    _check(messages, Codec(registry_lookup=known.get))


def test_valid_messages_never_take_the_slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = Codec()
    old = Codec(writer=V1)
    event = {"event_id": "e1", "timestamp": 1_700_000_000_000, "service": "payments", "environment": "prod",
             "host": "pay-1", "level": "WARN", "message": "slow call to 10.0.0.7 took 812 ms",
             "attributes": {"region": "eu-west-1", "pod": "pay-1-7f9"}, "http_status": 504, "latency_ms": 812.5}
    messages = [codec.encode(event), old.encode(event), codec.encode({**event, "attributes": {}})] * 50
    calls = []
    monkeypatch.setattr(codec, "decode", lambda m: calls.append(m))
    result = FastDecoder(codec).decode(messages)
    assert calls == []
    assert result.failures == [] and result.batch.num_rows == 150
    first = result.batch.slice(0, 2).to_pylist()
    assert first[0]["span_id"] is None and first[1]["span_id"] is None
    assert dict(first[0]["attributes"]) == event["attributes"]
    assert first[0]["timestamp"] == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert first[0]["level"] == "WARN" and first[0]["http_status"] == 504


def test_duplicate_map_keys_resolve_like_the_codec() -> None:
    codec = Codec()
    message = codec.encode({"event_id": "e", "timestamp": 0, "service": "s", "environment": "p", "host": "h",
                            "level": "INFO", "message": "m", "attributes": {"a": "1", "b": "2"}})
    # Rewrite the map so both entries use key "a": Avro allows it, the codec keeps the last value.
    patched = message.replace(b"\x02b\x022", b"\x02a\x022")
    assert patched != message
    _check([patched, message], codec)


def test_values_the_codec_accepts_but_arrow_cannot_hold_fail_as_invalid_field() -> None:
    wide = copy.deepcopy(V2.raw)
    next(f for f in wide["fields"] if f["name"] == "http_status")["type"] = ["null", "long"]
    body = io.BytesIO()
    event = {"event_id": "e", "timestamp": 0, "service": "s", "environment": "p", "host": "h", "level": "INFO",
             "message": "m", "attributes": {}, "http_status": 2**40}
    fastavro.schemaless_writer(body, fastavro.parse_schema(wide), event)
    message = b"\xc3\x01" + V2.fingerprint + body.getvalue()  # int and long share one encoding
    codec = Codec()
    assert codec.decode(message)["http_status"] == 2**40
    result = FastDecoder(codec).decode([message, codec.encode({**event, "http_status": 200})])
    assert [(i, reason) for i, reason, _ in result.failures] == [(0, INVALID_FIELD)]
    assert "http_status" in result.failures[0][2] or "int32" in result.failures[0][2] or result.failures[0][2]
    assert result.ok.tolist() == [1]


def test_giant_and_unknown_messages_fail_with_the_codec_reasons() -> None:
    codec = Codec(max_message_bytes=2_000)
    valid = codec.encode({"event_id": "e", "timestamp": 0, "service": "s", "environment": "p", "host": "h",
                          "level": "INFO", "message": "m", "attributes": {}})
    unknown = b"\xc3\x01" + b"\x11" * 8 + valid[10:]
    giant = valid[:-1] + b"x" * 5_000
    result = FastDecoder(codec).decode([giant, unknown, valid, None])
    reasons = {i: reason for i, reason, _ in result.failures}
    assert reasons == {0: "too_large", 1: "unknown_fingerprint", 3: "empty"}
    assert result.ok.tolist() == [2]
