"""A specialised encoder for the newest LogEvent schema, byte-for-byte identical to :class:`Codec`.

fastavro's generic writer walks the schema for every record (about 40k records/s here). The log
generator needs several times that, so this module writes the LogEvent layout directly: Avro zigzag
varints, length-prefixed UTF-8, union branch indexes and the attributes map, with encoded forms of
low-cardinality strings (service, host, logger, ...) cached.

Only plain values take the fast path (``str``, ``int``, ``float``, ``None``, ``dict`` of strings, a
known level). Anything else (a ``datetime`` timestamp, an ``int`` latency, a missing required field,
a value out of range) is handed to the codec, so the bytes and the errors are always the codec's.
If the newest schema is not the layout written here (a new version was added), every record goes
through the codec: slower, never wrong. A property test proves the identity.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from incident_contracts import avro_schemas
from incident_contracts.codec import Codec

# The layout this module writes: field name and Avro type, in schema order.
LAYOUT: tuple[tuple[str, Any], ...] = (
    ("event_id", "string"),
    ("timestamp", {"type": "long", "logicalType": "timestamp-millis"}),
    ("service", "string"),
    ("environment", "string"),
    ("host", "string"),
    ("level", {"type": "enum", "name": "Level",
               "symbols": ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"], "default": "INFO"}),
    ("logger", ["null", "string"]),
    ("message", "string"),
    ("trace_id", ["null", "string"]),
    ("span_id", ["null", "string"]),
    ("http_method", ["null", "string"]),
    ("http_path", ["null", "string"]),
    ("http_status", ["null", "int"]),
    ("latency_ms", ["null", "double"]),
    ("error_type", ["null", "string"]),
    ("attributes", {"type": "map", "values": "string"}),
)

LEVEL_SYMBOLS: tuple[str, ...] = tuple(LAYOUT[5][1]["symbols"])
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_CACHE_LIMIT = 8192
_pack_double = struct.Struct("<d").pack


class _Fallback(Exception):
    """The record needs the generic writer."""


def varint(zigzagged: int) -> bytes:
    """An already zigzagged Avro long as its variable-length bytes."""
    out = bytearray()
    while zigzagged > 0x7F:
        out.append((zigzagged & 0x7F) | 0x80)
        zigzagged >>= 7
    out.append(zigzagged)
    return bytes(out)


def _long(value: int) -> bytes:
    return varint((value << 1) ^ (value >> 63))


# Length prefixes of short strings, precomputed (a zigzagged length below 128 is one byte).
SMALL_LENGTHS = [bytes([n << 1]) for n in range(64)]


def _string(value: str) -> bytes:
    data = value.encode("utf-8")
    n = len(data)
    return (SMALL_LENGTHS[n] if n < 64 else varint(n << 1)) + data


def encode_long(value: int) -> bytes:
    """Avro long/int: zigzag varint."""
    return _long(value)


def encode_string(value: str) -> bytes:
    """Avro string: length + UTF-8."""
    return _string(value)


def encode_optional_string(value: str | None) -> bytes:
    """A ["null", "string"] union."""
    return b"\x00" if value is None else b"\x02" + _string(value)


def encode_attributes(attributes: Mapping[str, str]) -> bytes:
    """The attributes map as fastavro writes it: one block with the count, then 0."""
    if not attributes:
        return b"\x00"
    parts = [_long(len(attributes))]
    for key, value in attributes.items():
        parts.append(_string(key))
        parts.append(_string(value))
    parts.append(b"\x00")
    return b"".join(parts)


def level_index(level: str) -> int:
    return LEVEL_SYMBOLS.index(level)


def body_segment(service: str, environment: str, host: str, level: str, logger: str | None,
                 message: str) -> bytes:
    """Fields service .. message, encoded (the part between the timestamp and the trace id)."""
    return b"".join((_string(service), _string(environment), _string(host), _long(level_index(level)),
                     encode_optional_string(logger), _string(message)))


def trace_segment(trace_id: str | None, span_id: str | None) -> bytes:
    return encode_optional_string(trace_id) + encode_optional_string(span_id)


def tail_segment(http_method: str | None, http_path: str | None, http_status: int | None,
                 latency_ms: float | None, error_type: str | None, attributes: Mapping[str, str]) -> bytes:
    """Fields http_method .. attributes, encoded (the part after the span id)."""
    return b"".join((
        encode_optional_string(http_method),
        encode_optional_string(http_path),
        b"\x00" if http_status is None else b"\x02" + _long(http_status),
        b"\x00" if latency_ms is None else b"\x02" + _pack_double(latency_ms),
        encode_optional_string(error_type),
        encode_attributes(attributes),
    ))


def head_segment(event_id: str, timestamp: int) -> bytes:
    """Fields event_id and timestamp, encoded (what follows the wire header)."""
    return _string(event_id) + _long(timestamp)


def layout_matches(schema: avro_schemas.SchemaVersion) -> bool:
    """True when `schema` has exactly the field names and types this module writes."""
    fields = schema.raw.get("fields", [])
    if len(fields) != len(LAYOUT):
        return False
    for field, (name, avro_type) in zip(fields, LAYOUT, strict=True):
        if field.get("name") != name:
            return False
        declared = field.get("type")
        if isinstance(avro_type, dict) and isinstance(declared, dict):
            keys = ("type", "logicalType", "symbols", "values")
            if any(declared.get(k) != avro_type.get(k) for k in keys):
                return False
        elif declared != avro_type:
            return False
    return True


class FastEncoder:
    """Encodes LogEvent records like ``Codec(registry_id=...).encode``, several times faster.

    ``registry_id`` selects the Confluent framing (as in :class:`Codec`); without it the Avro
    single-object header of the newest schema is written.
    """

    def __init__(self, registry_id: int | None = None, codec: Codec | None = None):
        self.codec = codec or Codec(registry_id=registry_id)
        if codec is not None and registry_id is not None and codec.registry_id != registry_id:
            raise ValueError("registry_id disagrees with the codec's registry_id")
        self.header: bytes = self.codec._header
        latest = avro_schemas.latest()
        assert self.codec.writer is not None
        # The fast path is only valid for the exact layout above, written as the newest version.
        self.fast = self.codec.writer.version == latest.version and layout_matches(self.codec.writer)
        self._levels = {name: varint(i << 1) for i, name in enumerate(LEVEL_SYMBOLS)}
        self._cache: dict[str, bytes] = {}
        self._last_ts: int | None = None
        self._last_ts_bytes = b""

    @classmethod
    def for_codec(cls, codec: Codec) -> FastEncoder:
        """A fast encoder writing exactly what `codec` writes (same framing and writer schema)."""
        return cls(codec=codec)

    # --- small helpers -----------------------------------------------------------------------
    def _cached(self, value: Any) -> bytes:
        """Encoded form of a low-cardinality string field."""
        found = self._cache.get(value)
        if found is not None and type(value) is str:
            return found
        if type(value) is not str:
            raise _Fallback
        encoded = _string(value)
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[value] = encoded
        return encoded

    def _opt_cached(self, value: Any) -> bytes:
        if value is None:
            return b"\x00"
        return b"\x02" + self._cached(value)

    @staticmethod
    def _opt_string(value: Any) -> bytes:
        if value is None:
            return b"\x00"
        if type(value) is not str:
            raise _Fallback
        return b"\x02" + _string(value)

    # --- encoding ----------------------------------------------------------------------------
    def encode(self, record: Mapping[str, Any]) -> bytes:
        """The record's bytes, identical to the codec's (errors are the codec's EncodeError too)."""
        if not self.fast or type(record) is not dict:
            return self.codec.encode(record)
        try:
            return self._encode_fast(record)
        except (_Fallback, KeyError, TypeError, UnicodeEncodeError):
            return self.codec.encode(record)

    def encode_many(self, records: list[Mapping[str, Any]]) -> list[bytes]:
        encode = self.encode
        return [encode(r) for r in records]

    def _encode_fast(self, r: dict[str, Any]) -> bytes:
        get = r.get
        event_id = r["event_id"]
        message = r["message"]
        if type(event_id) is not str or type(message) is not str:
            raise _Fallback
        ts = r["timestamp"]
        if ts == self._last_ts and type(ts) is int:
            ts_bytes = self._last_ts_bytes
        else:
            if type(ts) is not int or not _LONG_MIN <= ts <= _LONG_MAX:
                raise _Fallback
            ts_bytes = _long(ts)
            self._last_ts, self._last_ts_bytes = ts, ts_bytes
        level = r["level"]  # the field has no default (the enum's default is for schema resolution)
        level = self._levels.get(level) if type(level) is str else None
        if level is None:
            raise _Fallback
        status = get("http_status")
        if status is None:
            status_bytes = b"\x00"
        elif type(status) is int and _INT_MIN <= status <= _INT_MAX:
            status_bytes = b"\x02" + _long(status)
        else:
            raise _Fallback
        latency = get("latency_ms")
        if latency is None:
            latency_bytes = b"\x00"
        elif type(latency) is float:
            latency_bytes = b"\x02" + _pack_double(latency)
        else:
            raise _Fallback
        attributes = get("attributes", {})
        if type(attributes) is not dict:
            raise _Fallback
        if attributes:
            parts = [_long(len(attributes))]
            for key, value in attributes.items():
                if type(key) is not str or type(value) is not str:
                    raise _Fallback
                parts.append(_string(key))
                parts.append(_string(value))
            parts.append(b"\x00")
            attributes_bytes = b"".join(parts)
        else:
            attributes_bytes = b"\x00"
        cached = self._cached
        opt_cached = self._opt_cached
        opt_string = self._opt_string
        return b"".join((
            self.header,
            _string(event_id),
            ts_bytes,
            cached(r["service"]),
            cached(r["environment"]),
            cached(r["host"]),
            level,
            opt_cached(get("logger")),
            _string(message),
            opt_string(get("trace_id")),
            opt_string(get("span_id")),
            opt_cached(get("http_method")),
            opt_string(get("http_path")),
            status_bytes,
            latency_bytes,
            opt_cached(get("error_type")),
            attributes_bytes,
        ))


_default: FastEncoder | None = None


def encode(record: Mapping[str, Any]) -> bytes:
    """Encode with single-object framing, like ``Codec().encode(record)``."""
    global _default
    if _default is None:
        _default = FastEncoder()
    return _default.encode(record)
