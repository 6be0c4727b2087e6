"""The detector's view of enriched events, computed on the Arrow batches a task of the job's source writes.

``events_view(events, message_max_chars)`` turns a batch of enriched events (the EVENTS columns,
enrich_arrow.enrich_batch) into the detector's input: environment and buckets.INPUT_COLUMNS. The task
aggregates it into partial buckets right away (partials.py), so no event crosses into the JVM and back.
A test checks the view row for row against the same computed in Spark SQL
(tests/spark/enrich_oracle.py: enrich, then prepare).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

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


def events_view(events: pa.RecordBatch, message_max_chars: int) -> pa.RecordBatch:
    """The detector's input columns (VIEW_SCHEMA) of a batch of enriched events: every event has a time,
    a service and an environment (the source's checks rejected those without)."""
    columns = {
        "environment": events.column("environment"),
        "t_ms": pc.cast(events.column("event_time"), pa.timestamp("ms", tz="UTC"), safe=False).cast(pa.int64()),
        "service": events.column("service"),
        "host": pc.fill_null(events.column("host"), "unknown"),
        "is_error": events.column("is_error"),
        "is_warn": pc.equal(events.column("level"), "WARN"),
        "latency_ms": events.column("latency_ms"),
        "signature": pc.fill_null(events.column("signature"), ""),
        "signature_id": pc.fill_null(events.column("signature_id"), ""),
        "message": pc.utf8_slice_codeunits(events.column("message"), 0, message_max_chars),
        "tier": events.column("tier"),
        "owner": events.column("owner"),
    }
    return pa.RecordBatch.from_arrays([columns[f.name].cast(f.type) for f in VIEW_SCHEMA], schema=VIEW_SCHEMA)
