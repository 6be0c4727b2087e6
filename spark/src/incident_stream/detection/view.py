"""The detector's view of enriched events, computed on the Arrow batches a task of the job's source writes.

``events_view(events, message_max_chars)`` turns a batch of enriched events (the EVENTS columns,
enrich_arrow.enrich_batch) into the detector's input: environment and buckets.INPUT_COLUMNS. The task
aggregates it into partial buckets right away (partials.py), so no event crosses into the JVM and back.
A test checks the view row for row against the same computed in Spark SQL
(tests/spark/enrich_oracle.py: enrich, then prepare).

An event cannot have been logged after it reached the pipeline: given the records' arrival (their Kafka
timestamps, set by the pipeline's producers), an event dated more than `tolerance_ms` after its arrival
(a host clock ahead) is taken at its arrival plus the tolerance and flagged (`ahead`), for the detector
to count per service (`no_later_than_arrival`).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from incident_stream.detection.aggregate import AHEAD
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
    pa.field(AHEAD, pa.bool_()),
])
assert tuple(VIEW_SCHEMA.names) == (*READ_COLUMNS, AHEAD)


def events_view(events: pa.RecordBatch, message_max_chars: int, arrival: pa.Array | None = None,
                tolerance_ms: int = 0) -> pa.RecordBatch:
    """The detector's input columns (VIEW_SCHEMA) of a batch of enriched events: every event has a time,
    a service and an environment (the source's checks rejected those without). With `arrival` (a timestamp
    per event: when it reached the pipeline), times are no later than that plus `tolerance_ms`."""
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
        AHEAD: pa.repeat(pa.scalar(False), events.num_rows),
    }
    view = pa.RecordBatch.from_arrays([columns[f.name].cast(f.type) for f in VIEW_SCHEMA], schema=VIEW_SCHEMA)
    if arrival is None:
        return view
    arrival_ms = pc.cast(arrival, pa.timestamp("ms", tz="UTC"), safe=False).cast(pa.int64())
    return no_later_than_arrival(pa.Table.from_batches([view]), arrival_ms, tolerance_ms).to_batches()[0] \
        if view.num_rows else view


def no_later_than_arrival(view: pa.Table, arrival_ms: pa.Array, tolerance_ms: int) -> pa.Table:
    """The view (a table with `t_ms`) with each event's time at most its arrival (epoch ms; null: unknown)
    plus `tolerance_ms`, and the events whose time that moved flagged in the `ahead` column: a time later
    than the event's arrival is a clock ahead, not the future."""
    t = view.column("t_ms").combine_chunks().cast(pa.int64())
    latest = pc.add(arrival_ms.cast(pa.int64()), tolerance_ms)
    ahead = pc.fill_null(pc.greater(t, latest), False)
    columns = {"t_ms": pc.if_else(ahead, latest, t), AHEAD: ahead}
    if AHEAD in view.column_names:
        columns[AHEAD] = pc.or_(ahead, pc.fill_null(view.column(AHEAD).combine_chunks(), False))
    for name, column in columns.items():
        if name in view.column_names:
            view = view.set_column(view.column_names.index(name), name, column)
        else:
            view = view.append_column(name, column)
    return view
