"""The fast LogEvent encoder writes exactly the bytes of the generic codec, in both framings."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incident_contracts import avro_schemas
from incident_contracts.codec import Codec, EncodeError
from incident_contracts.fast_encode import (
    FastEncoder,
    body_segment,
    encode,
    head_segment,
    layout_matches,
    tail_segment,
    trace_segment,
)

LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
text = st.text(max_size=80)
# low-cardinality strings as the generator uses them, so the encoder's cache is exercised too
names = st.sampled_from(["api-gateway", "order-service", "postgres-primary", "ü-service", ""])
optional_text = st.none() | text
long_values = st.integers(min_value=-(2**63), max_value=2**63 - 1)
int_values = st.integers(min_value=-(2**31), max_value=2**31 - 1)
doubles = st.floats(allow_nan=True, allow_infinity=True)

record_strategy = st.fixed_dictionaries(
    {
        "event_id": text,
        "timestamp": long_values,
        "service": names | text,
        "environment": names,
        "host": names | text,
        "level": st.sampled_from(LEVELS),
        "message": st.text(max_size=400),
        "attributes": st.dictionaries(text, text, max_size=4),
    },
    optional={
        "logger": optional_text,
        "trace_id": optional_text,
        "span_id": optional_text,
        "http_method": st.none() | st.sampled_from(["GET", "POST", "DELETE"]),
        "http_path": optional_text,
        "http_status": st.none() | int_values,
        "latency_ms": st.none() | doubles,
        "error_type": optional_text,
        "extra_field_ignored": text,
    },
)


@pytest.fixture(scope="module")
def codecs() -> list[tuple[Codec, FastEncoder]]:
    single = Codec()
    confluent = Codec(registry_id=42)
    return [(single, FastEncoder.for_codec(single)), (confluent, FastEncoder(registry_id=42))]


def test_fast_path_is_active_for_the_newest_schema() -> None:
    assert layout_matches(avro_schemas.latest())
    assert FastEncoder().fast


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=record_strategy)
def test_identical_bytes_for_any_valid_record(record: dict, codecs: list[tuple[Codec, FastEncoder]]) -> None:
    for codec, fast in codecs:
        assert fast.encode(record) == codec.encode(record)
    assert encode(record) == codecs[0][0].encode(record)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=record_strategy, data=st.data())
def test_unusual_values_fall_back_to_the_codec(record: dict, data: st.DataObject,
                                               codecs: list[tuple[Codec, FastEncoder]]) -> None:
    """Values outside the fast path (datetime timestamps, int latencies, bad types) give the codec's
    bytes or the codec's error, never different bytes."""
    field = data.draw(st.sampled_from(["timestamp", "latency_ms", "http_status", "level", "service",
                                       "attributes", "message", "event_id"]))
    odd = data.draw(st.sampled_from([
        dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC), 12, 2**40, -1.5, None, "NOPE", b"bytes", ["x"],
        {"k": 1}, 2**64, True,
    ]))
    record = {**record, field: odd}
    for codec, fast in codecs:
        try:
            expected = codec.encode(record)
        except Exception as exc:  # the codec's error (EncodeError, or what fastavro raised) must be the same
            with pytest.raises(type(exc)):
                fast.encode(record)
        else:
            assert fast.encode(record) == expected


def test_missing_optional_fields_use_schema_defaults() -> None:
    record = {"event_id": "e1", "timestamp": 1_795_000_000_000, "service": "s", "environment": "prod",
              "host": "h", "level": "INFO", "message": "m"}
    assert FastEncoder().encode(record) == Codec().encode(record)


@pytest.mark.parametrize("missing", ["host", "level", "message"])
def test_missing_required_field_raises_the_codec_error(missing: str) -> None:
    record = {"event_id": "e1", "timestamp": 1, "service": "s", "environment": "prod", "host": "h",
              "level": "INFO", "message": "m"}
    del record[missing]
    with pytest.raises(EncodeError):
        FastEncoder().encode(record)


@given(record=record_strategy)
@settings(max_examples=100, deadline=None)
def test_segments_compose_to_the_record_bytes(record: dict) -> None:
    """The generator assembles messages from these segments; together they are the codec's body."""
    r = {"logger": None, "trace_id": None, "span_id": None, "http_method": None, "http_path": None,
         "http_status": None, "latency_ms": None, "error_type": None, **record}
    body = b"".join((
        head_segment(r["event_id"], r["timestamp"]),
        body_segment(r["service"], r["environment"], r["host"], r["level"], r["logger"], r["message"]),
        trace_segment(r["trace_id"], r["span_id"]),
        tail_segment(r["http_method"], r["http_path"], r["http_status"], r["latency_ms"], r["error_type"],
                     r["attributes"]),
    ))
    codec = Codec()
    assert codec._header + body == codec.encode(r)
