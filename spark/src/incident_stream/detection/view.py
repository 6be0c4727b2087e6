"""The detector's view of decoded events, computed on Arrow batches where the Kafka source reads them.

``detector_view(batch, view)`` turns a batch of the Kafka source's ``logevent`` columns into what
``stream.prepare(enrich(...))`` gives in Spark: environment and buckets.INPUT_COLUMNS, for the events
with a time, a service and an environment. It lets the detection query's tasks aggregate partial buckets
right after decoding (source.py), so no event crosses into the JVM and back. Same definitions as
enrich.py: level synonyms and levels from there, HTTP status and latency parsed from the message only
when the event lacks them (offline.parse_status / parse_latency: the regular expressions enrich.py runs),
the signature the source computed. A test checks it row for row against the Spark path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from incident_contracts.catalog import Catalog
from incident_stream.detection.offline import normalise_level, parse_latency, parse_status
from incident_stream.detection.partials import READ_COLUMNS

VIEW_SCHEMA = pa.schema([
    pa.field("environment", pa.string()),
    pa.field("t_ms", pa.int64()),
    pa.field("service", pa.string()),
    pa.field("host", pa.string()),
    pa.field("is_error", pa.bool_()),
    pa.field("is_warn", pa.bool_()),
    pa.field("latency_ms", pa.float64()),
    pa.field("signature", pa.string()),
    pa.field("signature_id", pa.string()),
    pa.field("message", pa.string()),
    pa.field("tier", pa.string()),
    pa.field("owner", pa.string()),
])
assert tuple(VIEW_SCHEMA.names) == READ_COLUMNS


@dataclass(frozen=True)
class DetectorView:
    """What the view needs besides the events: the catalog's tiers and owners, the message cut."""

    tiers: dict[str, str] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    message_max_chars: int = 300

    @classmethod
    def of(cls, catalog: Catalog, message_max_chars: int) -> DetectorView:
        return cls({s.name: str(s.tier) for s in catalog.services}, {s.name: s.owner for s in catalog.services},
                   message_max_chars)

    def to_dict(self) -> dict:
        return {"tiers": self.tiers, "owners": self.owners, "message_max_chars": self.message_max_chars}

    @classmethod
    def from_dict(cls, data: dict) -> DetectorView:
        return cls(dict(data["tiers"]), dict(data["owners"]), int(data["message_max_chars"]))


def _lookup(values: pa.Array, mapping: dict[str, str]) -> pa.Array:
    """mapping[value] per row (null where absent), computed once per distinct value."""
    encoded = pc.dictionary_encode(values).combine_chunks() if isinstance(values, pa.ChunkedArray) \
        else pc.dictionary_encode(values)
    mapped = pa.array([mapping.get(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return mapped.take(encoded.indices)


def _levels(levels: pa.Array) -> pa.Array:
    encoded = pc.dictionary_encode(levels)
    mapped = pa.array([normalise_level(v) for v in encoded.dictionary.to_pylist()], pa.string())
    out = mapped.take(encoded.indices)
    return pc.fill_null(out, normalise_level(None))


def _fill_parsed(given: pa.Array, messages: pa.Array, parse, kind: pa.DataType) -> pa.Array:
    """`given`, with the rows where it is null parsed from the message (parse: text -> value or None)."""
    missing = pc.and_(pc.is_null(given), pc.is_valid(messages))
    rows = np.flatnonzero(missing.to_numpy(zero_copy_only=False))
    if len(rows) == 0:
        return given.cast(kind)
    values = given.cast(kind).to_pylist()
    texts = messages.take(pa.array(rows)).to_pylist()
    for row, text in zip(rows.tolist(), texts, strict=True):
        values[row] = parse(text) if text else None
    return pa.array(values, kind)


def detector_view(batch: pa.RecordBatch, view: DetectorView) -> pa.RecordBatch:
    """The detector's input columns (VIEW_SCHEMA) of a batch of decoded events (the source's logevent rows
    without reject reason)."""
    service = pc.utf8_trim(batch.column("service"), " ")
    environment = pc.utf8_trim(batch.column("environment"), " ")
    stamps = batch.column("timestamp")
    keep = pc.and_(pc.and_(pc.is_valid(stamps), pc.is_valid(service)), pc.is_valid(environment))
    if not pc.all(keep).as_py():
        batch = batch.filter(keep)
        service, environment, stamps = service.filter(keep), environment.filter(keep), stamps.filter(keep)
    if batch.num_rows == 0:
        return pa.RecordBatch.from_pylist([], schema=VIEW_SCHEMA)
    messages = batch.column("message")
    level = _levels(batch.column("level"))
    status = _fill_parsed(batch.column("http_status"), messages, parse_status, pa.int64())
    latency = _fill_parsed(batch.column("latency_ms"), messages, parse_latency, pa.float64())
    is_error = pc.or_kleene(pc.is_in(level, pa.array(["ERROR", "FATAL"])),
                            pc.fill_null(pc.greater_equal(status, 500), False))
    t_ms = pc.cast(stamps, pa.timestamp("ms", tz="UTC"), safe=False).cast(pa.int64())
    columns = {
        "environment": environment,
        "t_ms": t_ms,
        "service": service,
        "host": pc.fill_null(batch.column("host").cast(pa.string()), "unknown"),
        "is_error": is_error,
        "is_warn": pc.equal(level, "WARN"),
        "latency_ms": latency,
        "signature": pc.fill_null(batch.column("signature"), ""),
        "signature_id": pc.fill_null(batch.column("signature_id"), ""),
        "message": pc.utf8_slice_codeunits(messages, 0, view.message_max_chars),
        "tier": _lookup(service, view.tiers),
        "owner": _lookup(service, view.owners),
    }
    return pa.RecordBatch.from_arrays([columns[f.name].cast(f.type) for f in VIEW_SCHEMA], schema=VIEW_SCHEMA)
