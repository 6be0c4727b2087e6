"""What arrives over HTTP, as LogEvent records encoded for the log topic, and the records that cannot be.

Three shapes come in: OTLP log records (:func:`otlp_batch`), JSON objects (:func:`json_batch`) and text
lines in a named log format (:func:`lines_batch`). Each gives a :class:`Batch`: the encoded messages with
their keys (the service name, as every producer of the topic keys them) and one :class:`Rejection` per
record that cannot become a LogEvent, with its index in the request and the reason.

Event ids are derived from the request body and the record's index: a client that retries a request
(at-least-once delivery) sends the same records with the same ids, so duplicates can be told apart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from incident_contracts.codec import MAX_MESSAGE_BYTES, Codec, EncodeError, name_problem
from incident_contracts.fast_encode import SMALL_LENGTHS, FastEncoder, encode_string, varint

LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
DEFAULT_HOST = "unknown"
MAX_ATTRIBUTE_CHARS = 8192
_MAX_CHARS = MAX_ATTRIBUTE_CHARS


class BadRequest(ValueError):
    """The request as a whole cannot be read (not one record is usable); answered 400."""


@dataclass(frozen=True)
class Rejection:
    index: int
    reason: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "reason": self.reason, "detail": self.detail}


@dataclass
class Batch:
    """Encoded messages and keys of the accepted records, and the rejected ones."""

    values: list[bytes] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    total: int = 0

    @property
    def accepted(self) -> int:
        return len(self.values)


class Encoder:
    """Completes, checks and encodes LogEvent records into a Batch (the contracts' codec, fast path)."""

    def __init__(self, encoder: FastEncoder | Codec):
        self._encode = encoder.encode
        # The framing header when the fast layout applies (records are then written directly), else None:
        # every record goes through `encoder` (a Codec: the generic writer).
        self.header: bytes | None = encoder.header if isinstance(encoder, FastEncoder) and encoder.fast else None

    def add(self, batch: Batch, index: int, record: dict[str, Any], names_checked: bool = False) -> None:
        """Encode `record` into `batch`, or reject it; `names_checked`: its names passed :func:`names_problem`."""
        if not names_checked:
            problem = names_problem(record.get("service"), record.get("environment"), record.get("host"))
            if problem is not None:
                batch.rejections.append(Rejection(index, *problem))
                return
        try:
            value = self._encode(record)
        except EncodeError as exc:
            batch.rejections.append(Rejection(index, "encode_error", str(exc)[:300]))
            return
        if len(value) > MAX_MESSAGE_BYTES:
            batch.rejections.append(Rejection(index, "too_large", f"the encoded event has {len(value)} bytes; "
                                              f"at most {MAX_MESSAGE_BYTES} are accepted"))
            return
        batch.values.append(value)
        batch.keys.append(record["service"].encode())


def names_problem(service: Any, environment: Any, host: Any) -> tuple[str, str] | None:
    """(reason, detail) when the service, environment or host cannot be a LogEvent's, else None."""
    if not isinstance(service, str) or not service.strip(" \t"):
        return "missing_service", "the record names no service"
    for name, value in (("environment", environment), ("host", host)):
        if not isinstance(value, str) or not value.strip(" \t"):
            return "invalid_name", f"{name} is empty"
    problem = name_problem({"service": service, "environment": environment, "host": host})
    return ("invalid_name", problem) if problem is not None else None


def event_ids(body: bytes) -> tuple[bytes, str]:
    """A digest of the request body (the base of its records' ids) and its hex form."""
    digest = hashlib.blake2b(body, digest_size=16).digest()
    return digest, digest.hex()


def event_id_prefix(digest: bytes) -> str:
    """The first four groups of the request's event ids: 80 bits of the body's digest."""
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-"


def event_id(digest: bytes, index: int) -> str:
    """A UUID-shaped id: 80 bits of the body's digest, then the record's index (48 bits)."""
    return f"{event_id_prefix(digest)}{index & 0xFFFFFFFFFFFF:012x}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# --- OTLP ---------------------------------------------------------------------------------------
# Attributes (semantic conventions, current and older names) that fill LogEvent fields.
_HTTP_METHOD = ("http.request.method", "http.method")
_HTTP_PATH = ("url.path", "http.target", "http.route")
_HTTP_STATUS = ("http.response.status_code", "http.status_code")
_ERROR_TYPE = ("exception.type", "error.type")
_ENVIRONMENT = ("deployment.environment.name", "deployment.environment")


def any_value(value: Any) -> Any:
    """An OTLP AnyValue as a Python value (bytes as base64 text)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}


def _value_text(value: Any) -> str:
    """An OTLP AnyValue as text: strings as they are, numbers and booleans as JSON writes them, structured
    values as JSON."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind is None:
        return ""
    if kind == "double_value":
        return str(value.double_value)
    return _text(any_value(value))


def _first(attributes: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        if name in attributes:
            return attributes[name]
    return None


def _take(attributes: dict[str, str], names: Sequence[str]) -> str | None:
    """The first of `names` present, removed from `attributes` (its LogEvent field holds it instead)."""
    for name in names:
        if name in attributes:
            return attributes.pop(name)
    return None


def _take_status(attributes: dict[str, str]) -> int | None:
    for name in _HTTP_STATUS:
        text = attributes.get(name)
        if text is not None:
            if text.isdecimal() and len(text) < 10:  # (isdigit() admits '²', which int() refuses)
                del attributes[name]
                return int(text)
            return None  # not a status code: it stays an attribute
    return None


def _level(number: int, text: str) -> str:
    if 1 <= number <= 24:
        return LEVELS[(number - 1) // 4]
    if text:
        from log_generator.replay.formats import normalize_level

        found = normalize_level(text)
        if found is not None:
            return found
    return "INFO"


def otlp_batch(request: ExportLogsServiceRequest, encoder: Encoder, digest: bytes,
               default_environment: str) -> Batch:
    """The LogEvents of an OTLP export request: resource ``service.name``, ``host.name`` and
    ``deployment.environment(.name)``; the scope name as the logger; severity number (else its text);
    time (else observed time, else now); body (structured bodies as JSON); ids as hex; attributes (the HTTP
    method, path and status and the exception type move to their LogEvent fields).

    The Avro bytes are written straight from the protobuf fields, a request's columns at a time: the
    names of a resource and scope once, event ids and timestamps for the whole request with numpy
    (:func:`_heads`), per record only its own fields. The result is byte for byte what
    :func:`otlp_batch_by_records` (dicts through the contracts' encoder) gives; a test checks it."""
    header = encoder.header
    if header is None:
        return otlp_batch_by_records(request, encoder, digest, default_environment)
    batch = Batch()
    rejections = batch.rejections
    received = now_ms()
    stamps: list[int] = []  # every record's timestamp, by index (rejected ones too: the ids stay aligned)
    accepted: list[int] = []  # indexes of the records written
    rests: list[bytes] = []  # their encoding after the timestamp
    record_keys: list[bytes] = []
    for resource_logs in request.resource_logs:
        resource = {kv.key: kv.value for kv in resource_logs.resource.attributes}
        service = _value_text(resource["service.name"]) if "service.name" in resource else ""
        host = _value_text(resource["host.name"]) if "host.name" in resource else DEFAULT_HOST
        env_value = _first(resource, _ENVIRONMENT)
        environment = _value_text(env_value) if env_value is not None else default_environment
        problem = (("missing_service", "the resource has no service.name attribute") if not service
                   else names_problem(service, environment, host))
        if problem is not None:
            for scope_logs in resource_logs.scope_logs:
                for _record in scope_logs.log_records:
                    rejections.append(Rejection(len(stamps), *problem))
                    stamps.append(received)
            continue
        names = encode_string(service) + encode_string(environment) + encode_string(host)
        key = service.encode()
        for scope_logs in resource_logs.scope_logs:
            logger = scope_logs.scope.name
            logger_bytes = b"\x02" + encode_string(logger) if logger else b"\x00"
            # names + level + logger, by level index
            middles = [names + level + logger_bytes for level in _LEVEL_BYTES]
            for record in scope_logs.log_records:
                nanos = record.time_unix_nano or record.observed_time_unix_nano
                accepted.append(len(stamps))
                stamps.append(nanos // 1_000_000 if nanos else received)
                number = record.severity_number
                middle = middles[_LEVEL_OF_NUMBER[number] if 1 <= number <= 24
                                 else LEVELS.index(_level(0, record.severity_text))]
                body = record.body
                kind = body.WhichOneof("value")
                data = (body.string_value if kind == "string_value" else _value_text(body) if kind else "").encode()
                size = len(data)
                message = (SMALL_LENGTHS[size] if size < 64 else varint(size << 1)) + data
                trace, span = record.trace_id, record.span_id
                if len(trace) == 16 and trace != _ZERO16:
                    ids = b"\x02\x40" + trace.hex().encode()
                else:
                    ids = b"\x02" + encode_string(trace.hex()) if trace and any(trace) else b"\x00"
                if len(span) == 8 and span != _ZERO8:
                    ids += b"\x02\x20" + span.hex().encode()
                else:
                    ids += b"\x02" + encode_string(span.hex()) if span and any(span) else b"\x00"
                if record.attributes:
                    attributes = {}
                    for kv in record.attributes:
                        value = kv.value
                        text = value.string_value  # not empty: the value is a string
                        if text:
                            attributes[kv.key] = text if len(text) <= MAX_ATTRIBUTE_CHARS else text[:_MAX_CHARS]
                        else:
                            attributes[kv.key] = _value_text(value)[:MAX_ATTRIBUTE_CHARS]
                    tail = _tail(attributes)
                else:
                    tail = _NO_TAIL
                rests.append(b"".join((middle, message, ids, tail)))
                record_keys.append(key)
    batch.total = len(stamps)
    _assemble(batch, header, digest, stamps, accepted, rests, record_keys)
    return batch


def _assemble(batch: Batch, header: bytes, digest: bytes, stamps: list[int], indexes: list[int],
              rests: list[bytes], keys: list[bytes], whole: set[int] | None = None) -> None:
    """Prefix each written record's encoding with its head (event id, timestamp) into `batch`; the records
    in `whole` are complete already. Records over MAX_MESSAGE_BYTES become rejections."""
    if not indexes:
        return
    heads = _heads(header, event_id_prefix(digest), stamps)
    values = batch.values
    out_keys = batch.keys
    rejections = batch.rejections
    too_large = False
    for index, rest, key in zip(indexes, rests, keys, strict=True):
        value = rest if whole and index in whole else heads[index] + rest
        if len(value) > MAX_MESSAGE_BYTES:
            rejections.append(Rejection(index, "too_large", f"the encoded event has {len(value)} bytes; "
                                        f"at most {MAX_MESSAGE_BYTES} are accepted"))
            too_large = True
            continue
        values.append(value)
        out_keys.append(key)
    if too_large:
        rejections.sort(key=lambda r: r.index)


# Encoded pieces of the direct OTLP writer (the Avro layout of incident_contracts.fast_encode).
_LEVEL_BYTES = tuple(bytes([i << 1]) for i in range(len(LEVELS)))
_LEVEL_OF_NUMBER = (0, *((n - 1) // 4 for n in range(1, 25)))
_ZERO16 = bytes(16)
_ZERO8 = bytes(8)
_LEVEL_BYTE = {name: bytes([i << 1]) for i, name in enumerate(LEVELS)}
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_NO_TAIL = b"\x00" * 6  # no method, path, status, latency, error type; no attributes
_NAMES_CACHE: dict[str, bytes] = {}
_CACHE_LIMIT = 4096




_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_SHIFTS = np.arange(44, -1, -4, dtype=np.int64)  # 12 hex digits of the index, most significant first
_TS_MIN, _TS_MAX = 1 << 34, (1 << 41) - 1  # ms whose zigzag varint has exactly 6 bytes (1970-07 .. 2039-09)


def _heads(header: bytes, prefix: str, stamps: list[int]) -> list[bytes]:
    """Framing header + event id + timestamp, encoded, of records 0 .. len(stamps) - 1 of a request."""
    n = len(stamps)
    if not n or min(stamps) < _TS_MIN or max(stamps) > _TS_MAX:
        return [header + encode_string(f"{prefix}{i:012x}") + varint(ts << 1 if ts >= 0 else (-ts << 1) - 1)
                for i, ts in enumerate(stamps)]
    lead = np.frombuffer(header + bytes([36 << 1]) + prefix.encode("ascii"), dtype=np.uint8)
    width = len(lead) + 12 + 6
    out = np.empty((n, width), dtype=np.uint8)
    out[:, :len(lead)] = lead
    out[:, len(lead):len(lead) + 12] = _HEX[(np.arange(n, dtype=np.int64)[:, None] >> _SHIFTS) & 15]
    zz = np.array(stamps, dtype=np.int64) << 1
    at = len(lead) + 12
    for k in range(5):
        out[:, at + k] = ((zz >> (7 * k)) & 0x7F) | 0x80
    out[:, at + 5] = zz >> 35  # >= 1 in this range: no row ends in a NUL byte, which the S dtype would drop
    return out.view(f"S{width}").ravel().tolist()


def _avro_name(text: str) -> bytes:
    """An Avro string of a low-cardinality value (attribute keys, methods, error types), cached."""
    found = _NAMES_CACHE.get(text)
    if found is None:
        found = encode_string(text)
        if len(_NAMES_CACHE) < _CACHE_LIMIT:
            _NAMES_CACHE[text] = found
    return found


def _attributes_map(attributes: dict[str, str]) -> bytes:
    """An Avro map of strings as the contracts' encoder writes it: one block with the count, then 0."""
    if not attributes:
        return b"\x00"
    count = len(attributes)
    parts = [SMALL_LENGTHS[count] if count < 64 else varint(count << 1)]
    for key, value in attributes.items():
        parts.append(_avro_name(key))
        parts.append(encode_string(value))
    parts.append(b"\x00")
    return b"".join(parts)


def _tail(attributes: dict[str, str]) -> bytes:
    """Fields http_method .. attributes of a record with these OTLP attributes, encoded (the attributes
    that fill a field leave the map, as :func:`otlp_batch_by_records` does)."""
    status = _take_status(attributes)
    parts = [b"\x00", b"\x00", b"\x00" if status is None else b"\x02" + varint(status << 1),  # 0 <= status
             b"\x00", b"\x00"]  # latency_ms: none in OTLP
    for at, names in ((0, _HTTP_METHOD), (1, _HTTP_PATH), (4, _ERROR_TYPE)):
        for name in names:
            if name in attributes:
                text = attributes.pop(name)
                parts[at] = b"\x02" + (encode_string(text) if at == 1 else _avro_name(text))
                break
    parts.append(_attributes_map(attributes))
    return b"".join(parts)


def otlp_batch_by_records(request: ExportLogsServiceRequest, encoder: Encoder, digest: bytes,
               default_environment: str) -> Batch:
    """:func:`otlp_batch` one LogEvent dict at a time through the encoder: the reference the direct
    writer matches byte for byte, and the path when the newest schema is not the fast layout."""
    batch = Batch()
    index = 0
    received = now_ms()
    prefix = event_id_prefix(digest)
    for resource_logs in request.resource_logs:
        resource = {kv.key: kv.value for kv in resource_logs.resource.attributes}
        service = _value_text(resource["service.name"]) if "service.name" in resource else ""
        host = _value_text(resource["host.name"]) if "host.name" in resource else DEFAULT_HOST
        env_value = _first(resource, _ENVIRONMENT)
        environment = _value_text(env_value) if env_value is not None else default_environment
        problem = (("missing_service", "the resource has no service.name attribute") if not service
                   else names_problem(service, environment, host))
        for scope_logs in resource_logs.scope_logs:
            logger = scope_logs.scope.name or None
            for record in scope_logs.log_records:
                nanos = record.time_unix_nano or record.observed_time_unix_nano
                attributes = {}
                for kv in record.attributes:
                    value = kv.value
                    if value.WhichOneof("value") == "string_value":
                        text = value.string_value
                        attributes[kv.key] = text if len(text) <= MAX_ATTRIBUTE_CHARS else text[:MAX_ATTRIBUTE_CHARS]
                    else:
                        attributes[kv.key] = _value_text(value)[:MAX_ATTRIBUTE_CHARS]
                if attributes:
                    status = _take_status(attributes)
                    method = _take(attributes, _HTTP_METHOD)
                    path = _take(attributes, _HTTP_PATH)
                    error_type = _take(attributes, _ERROR_TYPE)
                else:
                    status = method = path = error_type = None
                body = record.body
                kind = body.WhichOneof("value")
                trace, span = record.trace_id, record.span_id
                number = record.severity_number
                event = {
                    "event_id": f"{prefix}{index:012x}",
                    "timestamp": nanos // 1_000_000 if nanos else received,
                    "service": service,
                    "environment": environment,
                    "host": host,
                    "level": LEVELS[(number - 1) // 4] if 1 <= number <= 24 else _level(0, record.severity_text),
                    "logger": logger,
                    "message": body.string_value if kind == "string_value" else _value_text(body) if kind else "",
                    "trace_id": trace.hex() if trace and any(trace) else None,
                    "span_id": span.hex() if span and any(span) else None,
                    "http_method": method,
                    "http_path": path,
                    "http_status": status,
                    "latency_ms": None,
                    "error_type": error_type,
                    "attributes": attributes,
                }
                batch.total += 1
                if problem is not None:
                    batch.rejections.append(Rejection(index, *problem))
                else:
                    encoder.add(batch, index, event, names_checked=True)
                index += 1
    return batch


_ID_FIELDS = {"traceId": 16, "trace_id": 16, "spanId": 8, "span_id": 8}


def _hex_ids_to_base64(record: dict[str, Any], where: str) -> None:
    for name, size in _ID_FIELDS.items():
        value = record.get(name)
        if value is None or value == "":
            continue
        try:
            raw = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != size:
            raise BadRequest(f"{where}.{name}: {str(value)[:40]!r} is not {size * 2} hex digits "
                             "(OTLP/JSON writes trace and span ids as hex)")
        record[name] = base64.b64encode(raw).decode()


def otlp_from_json(body: bytes) -> ExportLogsServiceRequest:
    """An OTLP/JSON export request (the protobuf JSON mapping, with trace and span ids in hex)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("the body is not an ExportLogsServiceRequest object")
    for r, resource_logs in enumerate(_list(data, "resourceLogs", "resource_logs")):
        for s, scope_logs in enumerate(_list(resource_logs, "scopeLogs", "scope_logs")):
            for i, record in enumerate(_list(scope_logs, "logRecords", "log_records")):
                if isinstance(record, dict):
                    _hex_ids_to_base64(record, f"resourceLogs[{r}].scopeLogs[{s}].logRecords[{i}]")
    request = ExportLogsServiceRequest()
    try:
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise BadRequest(f"not an OTLP ExportLogsServiceRequest: {exc}") from None
    return request


def _list(obj: Any, *names: str) -> list[Any]:
    if not isinstance(obj, dict):
        return []
    for name in names:
        value = obj.get(name)
        if isinstance(value, list):
            return value
    return []


def otlp_from_protobuf(body: bytes) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    try:
        request.ParseFromString(body)
    except Exception as exc:  # protobuf raises DecodeError, or others on deeply corrupt input
        raise BadRequest(f"the body is not a protobuf ExportLogsServiceRequest: {exc}") from None
    return request


# --- JSON objects --------------------------------------------------------------------------------
@dataclass(frozen=True)
class JsonFields:
    """Which keys of a JSON object hold each LogEvent field, in order of preference."""

    timestamp: tuple[str, ...]
    message: tuple[str, ...]
    level: tuple[str, ...]
    service: tuple[str, ...]
    host: tuple[str, ...]
    environment: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Any) -> JsonFields:
        def keys(text: str) -> tuple[str, ...]:
            return tuple(k.strip() for k in text.split(",") if k.strip())

        fields = cls(keys(settings.ingest_json_timestamp_keys), keys(settings.ingest_json_message_keys),
                     keys(settings.ingest_json_level_keys), keys(settings.ingest_json_service_keys),
                     keys(settings.ingest_json_host_keys), keys(settings.ingest_json_environment_keys))
        for group in (fields.timestamp, fields.message, fields.level, fields.service, fields.host,
                      fields.environment, _TRACE_KEYS, _SPAN_KEYS):
            _paths_of(group)
        return fields


_MISSING = object()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_TRACE_KEYS = ("trace_id", "traceId", "trace.id")
_SPAN_KEYS = ("span_id", "spanId", "span.id")


def _lookup(obj: dict[str, Any], keys: tuple[str, ...], used: set[str]) -> Any:
    """The value of the first key present (a dotted key also as a path into nested objects), else _MISSING."""
    if keys and keys[0] in obj:  # the usual case: the first key names the field
        used.add(keys[0])
        return obj[keys[0]]
    firsts = _FIRSTS.get(keys)
    if firsts is None:
        firsts = _FIRSTS[keys] = frozenset(key.split(".")[0] for key in keys) | frozenset(keys)
    if obj.keys().isdisjoint(firsts):  # no key nor the start of a path: absent
        return _MISSING
    for key in keys:
        if key in obj:
            used.add(key)
            return obj[key]
        parts = _PATHS.get(key, _MISSING)
        if parts is _MISSING:
            _paths_of((key,))
            parts = _PATHS[key]
        if parts is None:
            continue
        node: Any = obj
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return node
    return _MISSING


_PATHS: dict[str, Any] = {}  # key -> its parts when dotted, else None
_FIRSTS: dict[tuple[str, ...], frozenset[str]] = {}  # keys -> the keys and the first parts of the dotted ones


def _paths_of(keys: Iterable[str]) -> None:
    for key in keys:
        _PATHS[key] = tuple(key.split(".")) if "." in key else None


def json_timestamp(value: Any) -> int | None:
    """ms since the epoch from a number (seconds, ms, us or ns by magnitude) or an ISO-8601 text."""
    from log_generator.replay.formats import parse_epoch, parse_iso

    if isinstance(value, bool):
        return None
    if isinstance(value, int):  # whole numbers by integer arithmetic: nanoseconds do not fit a float exactly
        return _epoch_int(value) if value > 0 else None
    if isinstance(value, float):
        return parse_epoch(float(value)) if math.isfinite(value) and value > 0 else None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 10 and text[4:5] == "-":  # ISO-8601: the C parser first, the formats library's after
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                return parse_iso(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return (moment - _EPOCH) // _MS
        if text.isdigit():
            return _epoch_int(int(text)) if int(text) > 0 else None
        try:
            number = float(text)
        except ValueError:
            return parse_iso(text)
        return parse_epoch(number) if math.isfinite(number) and number > 0 else None
    return None


def _epoch_int(value: int) -> int:
    """ms from whole epoch seconds, ms, us or ns, told apart by magnitude (as the formats library does)."""
    if value > 10**17:
        return value // 1_000_000
    if value > 10**14:
        return value // 1000
    if value > 10**11:
        return value
    return value * 1000


def _json_level(normalize: Any, value: Any) -> str:
    if value is _MISSING or (isinstance(value, float) and not math.isfinite(value)):
        return "INFO"
    try:
        return normalize(value) or "INFO"
    except (ValueError, OverflowError, TypeError):
        return "INFO"


def split_json(body: bytes) -> list[tuple[Any, str | None]]:
    """The objects of a JSON array or of newline-delimited JSON: (object, None) or (None, why not)."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("["):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"the body starts with '[' but is not a JSON array: {exc}") from None
        return [(item, None) for item in data]
    items: list[tuple[Any, str | None]] = []
    scan = _SCAN_JSON
    for line in text.splitlines():
        if not line.strip():
            continue
        # json.loads is this scan between two strips of JSON whitespace; a line the scan does not take
        # whole (leading spaces, extra data, an error) goes through json.loads, which names what is wrong.
        try:
            value, end = scan(line, 0)
        except (StopIteration, ValueError, RecursionError):
            end = -1
        if end == len(line) or (end > 0 and not line[end:].strip(_JSON_SPACE)):
            items.append((value, None))
            continue
        try:
            items.append((json.loads(line), None))
        except (ValueError, RecursionError) as exc:
            items.append((None, f"not JSON: {exc}"))
    return items


_SCAN_JSON = json.JSONDecoder().scan_once
_JSON_SPACE = " \t\n\r"


def json_batch(items: list[tuple[Any, str | None]], fields: JsonFields, encoder: Encoder, digest: bytes,
               service: str | None, host: str | None, environment: str) -> Batch:
    """LogEvents of JSON objects (Fluent Bit's and Vector's http outputs); `service`, `host` and
    `environment` (from the request) complete objects that name none.

    With the fast layout the Avro bytes are written here (names encoded once per distinct service,
    environment and host; event ids and timestamps for the whole request by :func:`_heads`); a record
    whose text cannot be encoded as UTF-8 goes through the encoder instead, which names the error as for
    any other record."""
    from log_generator.replay.formats import normalize_level

    batch = Batch(total=len(items))
    rejections = batch.rejections
    header = encoder.header
    received = now_ms()
    checked: dict[tuple[str, str, str], Any] = {}  # names -> (problem, their encoding)
    prefix = event_id_prefix(digest)
    stamps = [received] * len(items)
    indexes: list[int] = []
    rests: list[bytes] = []
    keys: list[bytes] = []
    whole: set[int] = set()  # records the encoder wrote (header included)
    levels: dict[str, str] = {}  # level texts seen in this request -> their LogEvent level
    message_keys, timestamp_keys, level_keys = fields.message, fields.timestamp, fields.level
    service_keys, host_keys, environment_keys = fields.service, fields.host, fields.environment
    for index, (obj, unreadable) in enumerate(items):
        if unreadable is not None:
            rejections.append(Rejection(index, "invalid_json", unreadable[:200]))
            continue
        if not isinstance(obj, dict):
            rejections.append(Rejection(index, "not_an_object", f"expected a JSON object, got {type(obj).__name__}"))
            continue
        used: set[str] = set()
        message = _lookup(obj, message_keys, used)
        if message is _MISSING:
            rejections.append(Rejection(index, "missing_message",
                                        f"none of the message keys {', '.join(message_keys)} is present"))
            continue
        stamp = _lookup(obj, timestamp_keys, used)
        timestamp = received if stamp is _MISSING or stamp is None else json_timestamp(stamp)
        if timestamp is None:
            rejections.append(Rejection(index, "invalid_timestamp",
                                        f"{_text(stamp)[:60]!r} is neither epoch seconds/ms/us/ns nor ISO-8601"))
            continue
        if not _LONG_MIN <= timestamp <= _LONG_MAX:
            rejections.append(Rejection(index, "invalid_timestamp", f"{_text(stamp)[:60]!r} is out of range"))
            continue
        level = _lookup(obj, level_keys, used)
        svc = _lookup(obj, service_keys, used)
        hst = _lookup(obj, host_keys, used)
        env = _lookup(obj, environment_keys, used)
        trace = _lookup(obj, _TRACE_KEYS, used)
        span = _lookup(obj, _SPAN_KEYS, used)
        record_service = _text(svc) if svc is not _MISSING and svc is not None else (service or "")
        if not record_service:
            rejections.append(Rejection(index, "missing_service",
                                        f"none of the service keys {', '.join(service_keys)} is present "
                                        "and the request has no ?service="))
            continue
        names = (record_service, _text(env) if env is not _MISSING and env is not None else environment,
                 _text(hst) if hst is not _MISSING and hst is not None else (host or DEFAULT_HOST))
        known = checked.get(names)
        if known is None:
            problem = names_problem(*names)
            known = checked[names] = (problem, None if problem is not None or header is None else
                                      b"".join(encode_string(name) for name in names))
        problem, names_bytes = known
        if problem is not None:
            rejections.append(Rejection(index, *problem))
            continue
        attributes = {str(k): _text(v)[:MAX_ATTRIBUTE_CHARS] for k, v in obj.items() if k not in used}
        level_name = levels.get(level) if type(level) is str else None
        if level_name is None:
            level_name = _json_level(normalize_level, level)
            if type(level) is str and len(levels) < 256:
                levels[level] = level_name
        text = _text(message) if message is not None else ""
        trace_id = _text(trace) if trace is not _MISSING and trace else None
        span_id = _text(span) if span is not _MISSING and span else None
        if names_bytes is not None:
            try:
                rest = b"".join((
                    names_bytes, _LEVEL_BYTE[level_name], b"\x00", encode_string(text),
                    b"\x00" if trace_id is None else b"\x02" + encode_string(trace_id),
                    b"\x00" if span_id is None else b"\x02" + encode_string(span_id),
                    b"\x00\x00\x00\x00\x00",  # no HTTP method, path, status, latency, error type
                    _attributes_map(attributes)))
            except UnicodeEncodeError:  # a lone surrogate from a JSON escape: the encoder names the error
                pass
            else:
                stamps[index] = timestamp
                indexes.append(index)
                rests.append(rest)
                keys.append(names[0].encode())
                continue
        record = {
            "event_id": f"{prefix}{index:012x}", "timestamp": timestamp, "service": names[0],
            "environment": names[1], "host": names[2], "level": level_name, "logger": None, "message": text,
            "trace_id": trace_id, "span_id": span_id, "http_method": None, "http_path": None,
            "http_status": None, "latency_ms": None, "error_type": None, "attributes": attributes,
        }
        if header is None:
            encoder.add(batch, index, record, names_checked=True)
            continue
        one = Batch()
        encoder.add(one, index, record, names_checked=True)
        rejections.extend(one.rejections)
        if one.values:
            whole.add(index)
            indexes.append(index)
            rests.append(one.values[0])
            keys.append(one.keys[0])
    if header is not None:
        _assemble(batch, header, digest, stamps, indexes, rests, keys, whole)
    return batch


# --- text lines in a named format ---------------------------------------------------------------
def parse_lines(lines: list[str], fmt: str, service: str | None, host: str | None, environment: str,
                source: str) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Parse text lines with the log format library: (LogEvent records, [(0-based line, reason)]).

    The one place that knows the library's API (log_generator.replay.parser.parse)."""
    from log_generator.replay.parser import ParseOptions, parse

    options = ParseOptions(service=service, default_service=service, host=host, environment=environment,
                           source=source)
    try:
        result = parse(lines, fmt, options)
    except ValueError as exc:  # an unknown format name (FormatError is a ValueError too)
        raise BadRequest(str(exc)) from None
    return result.events, [(reject.lineno - 1, reject.reason) for reject in result.rejects]


def lines_batch(body: bytes, fmt: str, encoder: Encoder, digest: bytes, service: str | None,
                host: str | None, environment: str) -> Batch:
    """LogEvents of text lines; a record's index is its 0-based line in the body (a multi-line entry's first)."""
    lines = body.decode("utf-8", "replace").splitlines()
    events, rejects = parse_lines(lines, fmt, service, host, environment, "http")
    batch = Batch(total=len(events) + len(rejects))
    for line, reason in rejects:
        batch.rejections.append(Rejection(line, "unparsed_line", reason))
    for position, event in enumerate(events):
        source_line = str(event.get("attributes", {}).get("source_line", ""))
        index = int(source_line) - 1 if source_line.isdigit() else position
        event["event_id"] = event_id(digest, index)
        encoder.add(batch, index, event)
    batch.rejections.sort(key=lambda r: r.index)
    return batch


def rejection_summary(batch: Batch, limit: int = 20) -> str:
    """One line naming the rejected records (index and reason), for OTLP's partial_success.error_message."""
    shown = "; ".join(f"record {r.index}: {r.reason}: {r.detail}" for r in batch.rejections[:limit])
    more = f"; and {len(batch.rejections) - limit} more" if len(batch.rejections) > limit else ""
    return f"{len(batch.rejections)} of {batch.total} log records rejected: {shown}{more}"


def decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""
