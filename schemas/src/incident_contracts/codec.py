"""Encode and decode log events in the two wire formats the platform speaks.

* Avro single-object encoding (no Schema Registry): ``C3 01`` + 8-byte little-endian CRC-64-AVRO
  fingerprint of the writer schema + Avro binary body. The writer schema is found by fingerprint
  among the versions in ``schemas/avro``.
* Confluent framing (Schema Registry configured): ``00`` + 4-byte big-endian schema id + body. The
  writer schema is fetched from the registry by id (and cached).

Decoding always resolves to the newest reader schema, so a consumer sees one record shape whatever
version wrote the message. Anything else raises :class:`DecodeError` with a machine-readable reason
(a :class:`~incident_contracts.dead_letter.DeadLetterReason`, the value the record has in dead_letter).

Names are checked at decode. ``service``, ``environment`` and ``host`` travel on into tables, the
dashboard, the prompt of the root-cause analysis and chart labels, and whoever writes a log line
chooses them. A name is at most :data:`MAX_NAME_CHARS` (128) characters from :data:`NAME_CHARS`:
ASCII letters, digits and ``.`` ``_`` ``-`` ``/`` ``:`` (what service, pod, host, FQDN, IPv4/IPv6 and
``namespace/service`` names use). Anything else (spaces, brackets, quotes, ``<``, ``!``, control or
non-ASCII characters) fails with reason ``invalid_name``. A blank name (empty, or spaces and tabs) is
left to the required-field check that follows decoding (``invalid_field`` for a blank service).
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from incident_contracts import avro_schemas
from incident_contracts.avro_schemas import SchemaVersion
from incident_contracts.dead_letter import DeadLetterReason

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0
SINGLE_OBJECT_HEADER = 10
CONFLUENT_HEADER = 5
MAX_MESSAGE_BYTES = 1_000_000
NAME_FIELDS = ("service", "environment", "host")
NAME_CHARS = "A-Za-z0-9._:/-"
MAX_NAME_CHARS = 128
NAME_PATTERN = f"^[{NAME_CHARS}]{{1,{MAX_NAME_CHARS}}}$"  # for RE2 (Arrow), where $ is the end of the text
_NAME = re.compile(f"[{NAME_CHARS}]{{1,{MAX_NAME_CHARS}}}")  # used with fullmatch


def name_problem(record: Mapping[str, Any]) -> str | None:
    """Why the record's service, environment or host name is not acceptable (the first that is not), or None."""
    for name in NAME_FIELDS:
        value = record.get(name)
        if not isinstance(value, str) or not value.strip(" \t") or _NAME.fullmatch(value):
            continue
        if len(value) > MAX_NAME_CHARS:
            return f"{name} has {len(value)} characters; a name has at most {MAX_NAME_CHARS}"
        bad = sorted({c for c in value if not _NAME.fullmatch(c)})
        shown = ", ".join(repr(c) for c in bad[:5]) + (", ..." if len(bad) > 5 else "")
        return (f"{name} {value[:60]!r} contains {shown}; names use only letters, digits and . _ - / : "
                f"(at most {MAX_NAME_CHARS} characters)")
    return None


class CodecError(Exception):
    """Base of the codec's errors."""


class EncodeError(CodecError):
    """A record does not fit the schema."""


class DecodeError(CodecError):
    """A message is not a log event in a wire format we accept."""

    def __init__(self, reason: DeadLetterReason, detail: str):
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


SchemaLookup = Callable[[int], SchemaVersion | None]
"""Finds the writer schema of a Confluent-framed message by its registry id (None when unknown)."""


@dataclass
class Codec:
    """Encoder/decoder for LogEvent. Without a registry it writes single-object encoding.

    ``registry_id`` and ``registry_lookup`` enable the Confluent format: the id of the writer schema
    as registered, and a function resolving ids seen on the wire to schemas.
    """

    writer: SchemaVersion | None = None
    registry_id: int | None = None
    registry_lookup: SchemaLookup | None = None
    max_message_bytes: int = MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        self.writer = self.writer or avro_schemas.latest()
        self.reader = avro_schemas.latest()
        self._by_fp = avro_schemas.by_fingerprint()
        self._header = (
            struct.pack(">bI", CONFLUENT_MAGIC, self.registry_id)
            if self.registry_id is not None
            else SINGLE_OBJECT_MAGIC + self.writer.fingerprint
        )

    # --- encoding -----------------------------------------------------------------------------
    def encode(self, record: Mapping[str, Any]) -> bytes:
        buffer = io.BytesIO()
        buffer.write(self._header)
        try:
            schemaless_writer(buffer, self.writer.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EncodeError(f"record does not fit LogEvent v{self.writer.version}: {exc}") from exc
        return buffer.getvalue()

    def encode_many(self, records: Iterable[Mapping[str, Any]]) -> list[bytes]:
        return [self.encode(r) for r in records]

    # --- decoding -----------------------------------------------------------------------------
    def writer_schema_of(self, message: bytes | None) -> tuple[SchemaVersion, int]:
        """The writer schema of a message and the offset where its Avro body starts."""
        if not message:
            raise DecodeError(DeadLetterReason.EMPTY, "message has no bytes")
        if len(message) > self.max_message_bytes:
            raise DecodeError(DeadLetterReason.TOO_LARGE,
                              f"{len(message)} bytes exceeds the {self.max_message_bytes}-byte limit")
        first = message[0]
        if message[:2] == SINGLE_OBJECT_MAGIC:
            if len(message) < SINGLE_OBJECT_HEADER:
                raise DecodeError(DeadLetterReason.TRUNCATED,
                                  f"single-object header needs {SINGLE_OBJECT_HEADER} bytes, got {len(message)}")
            fp = bytes(message[2:SINGLE_OBJECT_HEADER])
            schema = self._by_fp.get(fp)
            if schema is None:
                raise DecodeError(DeadLetterReason.UNKNOWN_FINGERPRINT,
                                  f"fingerprint {fp.hex()} matches no schema in schemas/avro")
            return schema, SINGLE_OBJECT_HEADER
        if first == CONFLUENT_MAGIC:
            if len(message) < CONFLUENT_HEADER:
                raise DecodeError(DeadLetterReason.TRUNCATED,
                                  f"Confluent header needs {CONFLUENT_HEADER} bytes, got {len(message)}")
            schema_id = struct.unpack(">I", message[1:CONFLUENT_HEADER])[0]
            schema = self.registry_lookup(schema_id) if self.registry_lookup else None
            if schema is None:
                raise DecodeError(DeadLetterReason.UNKNOWN_SCHEMA_ID,
                                  f"schema id {schema_id} is not known to the schema registry"
                                  if self.registry_lookup else
                                  f"Confluent-framed message (schema id {schema_id}) but no SCHEMA_REGISTRY_URL set")
            return schema, CONFLUENT_HEADER
        raise DecodeError(DeadLetterReason.BAD_MAGIC,
                          f"first bytes {bytes(message[:2]).hex()} are neither C301 (Avro single-object) "
                          "nor 00 (Confluent)")

    def decode(self, message: bytes | None) -> dict[str, Any]:
        """Decode one message into a dict shaped like the newest schema."""
        schema, start = self.writer_schema_of(message)
        assert message is not None
        stream = io.BytesIO(message)
        stream.seek(start)
        if start == len(message):
            raise DecodeError(DeadLetterReason.TRUNCATED, "header present but the Avro body is empty")
        try:
            record = schemaless_reader(stream, schema.parsed, self.reader.parsed)
        except (EOFError, StopIteration) as exc:
            raise DecodeError(DeadLetterReason.TRUNCATED, f"Avro body ends early ({exc or 'end of data'})") from exc
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise DecodeError(DeadLetterReason.MALFORMED_BODY,
                              f"Avro body does not decode with v{schema.version}: {type(exc).__name__}: {exc}") from exc
        if stream.tell() != len(message):
            raise DecodeError(DeadLetterReason.TRAILING_BYTES,
                              f"{len(message) - stream.tell()} bytes left after the record")
        problem = name_problem(record)  # type: ignore[arg-type]
        if problem is not None:
            raise DecodeError(DeadLetterReason.INVALID_NAME, problem)
        return record  # type: ignore[return-value]


def default_codec(schema_registry_url: str = "", topic: str = "logs.events") -> Codec:
    """The codec the settings ask for: Confluent framing with a registry, single-object otherwise.

    With a registry the schema is registered (idempotently) under the subject `<topic>-value`, the
    Confluent TopicNameStrategy that Kafka UIs and other clients expect.
    """
    if not schema_registry_url:
        return Codec()
    from incident_contracts.registry import SchemaRegistry

    registry = SchemaRegistry(schema_registry_url, subject=f"{topic}-value")
    schema_id = registry.register(avro_schemas.latest())
    return Codec(registry_id=schema_id, registry_lookup=registry.lookup)


def decoding_codec(schema_registry_url: str = "") -> Codec:
    """A codec for readers: accepts both formats; resolves registry ids only when a registry is set."""
    if not schema_registry_url:
        return Codec()
    from incident_contracts.registry import SchemaRegistry

    return Codec(registry_lookup=SchemaRegistry(schema_registry_url).lookup)
