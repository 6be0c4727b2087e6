"""Checks a decoded event must pass before it may enter the events table (vectorised, on Arrow).

Event time is judged against the record's Kafka timestamp, not the clock, so a replayed micro-batch
classifies every record exactly as the first attempt did. Records without a Kafka timestamp are
judged against the time of reading.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from incident_contracts.dead_letter import DeadLetterReason

REQUIRED_TEXT = ("event_id", "service")


@dataclass(frozen=True)
class TimeBounds:
    """Accepted event time relative to the Kafka timestamp: at most this old, at most this far ahead."""

    max_age_ms: int | None = 7 * 24 * 3600 * 1000
    max_future_ms: int | None = 15 * 60 * 1000


def _iso(ms: int) -> str:
    try:
        return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms since epoch"


def _span(ms: int) -> str:
    hours = ms / 3_600_000
    return f"{hours / 24:.1f} days" if abs(hours) >= 48 else f"{hours:.1f} h"


def check_events(events: pa.RecordBatch, kafka_ms: np.ndarray, bounds: TimeBounds) -> list[tuple[int, str, str]]:
    """(row, reason, detail) for rows of `events` (decoded LogEvents) that must go to dead_letter."""
    failures: list[tuple[int, str, str]] = []
    if events.num_rows == 0:
        return failures
    event_ms = events.column("timestamp").cast(pa.int64()).to_numpy(zero_copy_only=False)
    reference = np.where(kafka_ms > 0, kafka_ms, int(time.time() * 1000))
    ahead = event_ms - reference
    too_old = np.zeros(len(event_ms), dtype=bool)
    too_new = np.zeros(len(event_ms), dtype=bool)
    if bounds.max_age_ms is not None:
        too_old = ahead < -bounds.max_age_ms
    if bounds.max_future_ms is not None:
        too_new = ahead > bounds.max_future_ms
    for row in np.flatnonzero(too_old | too_new).tolist():
        if too_old[row]:
            detail = (f"event time {_iso(event_ms[row])} is {_span(-ahead[row])} before the record's Kafka "
                      f"timestamp {_iso(reference[row])}; events older than {_span(bounds.max_age_ms or 0)} "
                      "are not accepted (STREAM_MAX_EVENT_AGE_HOURS). Check the producer's clock or the "
                      "replayed file's timestamps.")
        else:
            detail = (f"event time {_iso(event_ms[row])} is {_span(ahead[row])} after the record's Kafka "
                      f"timestamp {_iso(reference[row])}; at most {_span(bounds.max_future_ms or 0)} ahead is "
                      "accepted (STREAM_MAX_FUTURE_SECONDS). Check the producer host's clock.")
        failures.append((row, DeadLetterReason.TIMESTAMP_OUT_OF_RANGE.value, detail))
    flagged = too_old | too_new
    for name in REQUIRED_TEXT:
        column = events.column(name)
        blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(column), ""), True)
        for row in np.flatnonzero(blank.to_numpy(zero_copy_only=False) & ~flagged).tolist():
            failures.append((row, DeadLetterReason.INVALID_FIELD.value,
                             f"{name} is empty; every event needs a {name}"))
            flagged[row] = True
    return failures
