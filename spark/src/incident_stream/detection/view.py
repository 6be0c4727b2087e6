"""The detector's view of decoded events, computed on Arrow batches where the Kafka source reads them.

``detector_view(batch, view)`` turns a batch of the Kafka source's ``logevent`` columns into the
detector's input: environment and buckets.INPUT_COLUMNS, for the events with a time, a service and an
environment. It lets the detection query's tasks aggregate partial buckets right after decoding
(source.py), so no event crosses into the JVM and back. The fields are computed by enrich_arrow.py; the
signature is the one the source computed. A test checks the view row for row against the same computed in
Spark SQL (tests/spark/enrich_oracle.py: enrich, then prepare).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from incident_contracts.catalog import Catalog
from incident_stream.detection.partials import READ_COLUMNS
from incident_stream.enrich_arrow import ServiceLookup, http_status, is_error, latency_ms, levels, lookup

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

    services: ServiceLookup = field(default_factory=ServiceLookup)
    message_max_chars: int = 300

    @classmethod
    def of(cls, catalog: Catalog, message_max_chars: int) -> DetectorView:
        return cls(ServiceLookup.of(catalog), message_max_chars)

    def to_dict(self) -> dict:
        return {"services": self.services.to_dict(), "message_max_chars": self.message_max_chars}

    @classmethod
    def from_dict(cls, data: dict) -> DetectorView:
        return cls(ServiceLookup.from_dict(data["services"]), int(data["message_max_chars"]))


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
    level = levels(batch.column("level"))
    t_ms = pc.cast(stamps, pa.timestamp("ms", tz="UTC"), safe=False).cast(pa.int64())
    columns = {
        "environment": environment,
        "t_ms": t_ms,
        "service": service,
        "host": pc.fill_null(batch.column("host").cast(pa.string()), "unknown"),
        "is_error": is_error(level, http_status(batch)),
        "is_warn": pc.equal(level, "WARN"),
        "latency_ms": latency_ms(batch),
        "signature": pc.fill_null(batch.column("signature"), ""),
        "signature_id": pc.fill_null(batch.column("signature_id"), ""),
        "message": pc.utf8_slice_codeunits(batch.column("message"), 0, view.message_max_chars),
        "tier": lookup(service, view.services.tiers),
        "owner": lookup(service, view.services.owners),
    }
    return pa.RecordBatch.from_arrays([columns[f.name].cast(f.type) for f in VIEW_SCHEMA], schema=VIEW_SCHEMA)
