"""The job's enrichment: decoded log events -> rows of the events table, on Arrow batches in the ingest
query's tasks, where they were decoded (which then write the rows themselves: ingest_files.py).

Running the enrichment in the source's Python task, while the batch is still columnar, saves the job
Spark expressions per row (a JVM regular expression costs microseconds per row). What it computes: the
level normalised to TRACE/DEBUG/INFO/WARN/ERROR/FATAL (synonyms such as WARNING, CRITICAL, SEVERE
mapped), ``is_error`` = ERROR/FATAL or an HTTP status of 500 or more; HTTP method (upper case), path
(without query string), status and latency from the event or, when it lacks them, from its message
(message_fields.py: the definitions and parsers; only for those rows); the signature the source
computed; tier and owner from the catalog; UTC date and hour. A test checks :func:`enrich_batch` row
for row against an independent enrichment in Spark SQL (tests/spark/enrich_oracle.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from incident_contracts.catalog import Catalog
from incident_contracts.tables import EVENTS
from incident_stream.message_fields import (
    LATENCY_PROBE,
    REQUEST_PROBE,
    STATUS_PROBE,
    normalise_level,
    parse_latency,
    parse_request,
    parse_status,
)


@dataclass(frozen=True)
class ServiceLookup:
    """Tier (as text) and owner per service name, from the service catalog."""

    tiers: Mapping[str, str] = field(default_factory=dict)
    owners: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, catalog: Catalog) -> ServiceLookup:
        return cls({s.name: str(s.tier) for s in catalog.services}, {s.name: s.owner for s in catalog.services})

    def to_dict(self) -> dict[str, Any]:
        return {"tiers": dict(self.tiers), "owners": dict(self.owners)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceLookup:
        return cls(dict(data["tiers"]), dict(data["owners"]))


def per_distinct(values: pa.Array, function: Callable[[Any], Any], kind: pa.DataType) -> pa.Array:
    """function(value) per row, computed once per distinct value (null rows: function(None))."""
    encoded = pc.dictionary_encode(values, null_encoding="encode")
    mapped = pa.array([function(v) for v in encoded.dictionary.to_pylist()], kind)
    return mapped.take(encoded.indices)


def levels(level: pa.Array) -> pa.Array:
    return per_distinct(level, normalise_level, pa.string())


def _missing_rows(missing: pa.Array, messages: pa.Array, probe: str) -> np.ndarray:
    """Rows flagged `missing` (a value to find) whose message matches `probe` (message_fields.py: every
    message the parser finds a value in matches it), so the Python parser runs only where it can find
    something."""
    missing = pc.and_(missing, pc.is_valid(messages))
    rows = np.flatnonzero(missing.to_numpy(zero_copy_only=False))
    if len(rows) == 0:
        return rows
    matched = pc.match_substring_regex(messages.take(pa.array(rows)), probe)
    return rows[matched.to_numpy(zero_copy_only=False)]


def fill_from_message(given: pa.Array, messages: pa.Array, parse: Callable[[str], Any], kind: pa.DataType,
                      probe: str) -> pa.Array:
    """`given` (cast to `kind`), with its null rows filled from their message where `parse` finds a value
    (only messages matching `probe` are parsed)."""
    given = given.cast(kind)
    rows = _missing_rows(pc.is_null(given), messages, probe)
    if len(rows) == 0:
        return given
    values = given.to_pylist()
    for row, text in zip(rows.tolist(), messages.take(pa.array(rows)).to_pylist(), strict=True):
        values[row] = parse(text) if text else None
    return pa.array(values, kind)


def http_status(batch: pa.RecordBatch) -> pa.Array:
    return fill_from_message(batch.column("http_status"), batch.column("message"), parse_status, pa.int32(),
                             STATUS_PROBE)


def latency_ms(batch: pa.RecordBatch) -> pa.Array:
    return fill_from_message(batch.column("latency_ms"), batch.column("message"), parse_latency, pa.float64(),
                             LATENCY_PROBE)


def is_error(level: pa.Array, status: pa.Array) -> pa.Array:
    return pc.or_(pc.is_in(level, pa.array(["ERROR", "FATAL"])), pc.fill_null(pc.greater_equal(status, 500), False))


def _request_fields(batch: pa.RecordBatch) -> tuple[pa.Array, pa.Array]:
    """(http_method upper case, http_path without its query string): the event's, else its message's."""
    messages = batch.column("message")
    method, path = batch.column("http_method").cast(pa.string()), batch.column("http_path").cast(pa.string())
    rows = _missing_rows(pc.or_(pc.is_null(method), pc.is_null(path)), messages, REQUEST_PROBE)
    if len(rows):
        texts = messages.take(pa.array(rows)).to_pylist()
        parsed = {row: parse_request(text) if text else (None, None) for row, text in zip(rows.tolist(), texts,
                                                                                        strict=True)}
        methods, paths = method.to_pylist(), path.to_pylist()
        for row, (m, p) in parsed.items():
            methods[row] = methods[row] if methods[row] is not None else m
            paths[row] = paths[row] if paths[row] is not None else p
        method, path = pa.array(methods, pa.string()), pa.array(paths, pa.string())
    cut = pc.fill_null(pc.match_substring(path, "?"), False)
    if pc.any(cut).as_py():
        path = pc.if_else(cut, _before(path, "?"), path)
    return pc.utf8_upper(method), path


def _before(text: pa.Array, separator: str) -> pa.Array:
    """The part of each text before the first `separator` (all of it when there is none)."""
    return pc.list_element(pc.split_pattern(text, separator, max_splits=1), 0)


def lookup(values: pa.Array, mapping: Mapping[str, str]) -> pa.Array:
    return per_distinct(values, lambda v: mapping.get(v) if v is not None else None, pa.string())


def iso_date(stamps: pa.Array) -> pa.Array:
    """YYYY-MM-DD of UTC timestamps (through date32: a tenth of strftime's cost, the same text)."""
    return stamps.cast(pa.timestamp("us", tz="UTC")).cast(pa.date32()).cast(pa.string())


def enrich_batch(batch: pa.RecordBatch, services: ServiceLookup, keep: tuple[str, ...] = ()) -> pa.RecordBatch:
    """A batch of the Kafka source's logevent columns (events, no rejects) -> the EVENTS columns, then the
    input columns named in `keep`."""
    service = pc.utf8_trim(batch.column("service"), " ")
    level = levels(batch.column("level"))
    status = http_status(batch)
    method, path = _request_fields(batch)
    event_time = batch.column("timestamp")
    columns = {
        "event_time": event_time,
        "ingest_time": batch.column("read_time"),
        "service": service,
        "environment": pc.utf8_trim(batch.column("environment"), " "),
        "level": level,
        "is_error": is_error(level, status),
        "http_method": method,
        "http_path": path,
        "http_status": status,
        "latency_ms": latency_ms(batch),
        "tier": lookup(service, services.tiers),
        "owner": lookup(service, services.owners),
        "event_date": iso_date(event_time),
        "event_hour": pc.hour(event_time).cast(pa.int32()),
    }
    out = [columns[f.name] if f.name in columns else batch.column(f.name) for f in EVENTS]
    out += [batch.column(name) for name in keep]
    names = [*EVENTS.names, *keep]
    return pa.RecordBatch.from_arrays([_as_table_type(a, n) for a, n in zip(out, names, strict=True)], names=names)


def _as_table_type(column: pa.Array, name: str) -> pa.Array:
    """The events table's type of a column; timestamps keep Spark's microseconds (ingest_time has them)."""
    if name not in EVENTS.names or pa.types.is_timestamp(column.type):
        return column
    kind = EVENTS.field(name).type
    return column if column.type.equals(kind) else column.cast(kind)
