"""Partial buckets computed where the events are read, so only a few rows reach the stateful operator.

Each task of the job's source (logs_source.py) aggregates its own events into partial buckets, one row per
(environment, service, bucket), before the shuffle to the environment key. Partial buckets merge exactly
(buckets.BucketAgg.merge), so the detector's rows are the same as when it aggregates the events itself;
what changes is where the work runs: in every reading task in parallel instead of in the one task that
owns an environment, and the shuffle moves a few hundred small rows per micro-batch instead of every event.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import pyarrow as pa
from pyspark.sql.pandas.types import from_arrow_schema

from incident_stream.detection.aggregate import Reduced
from incident_stream.detection.buckets import INPUT_COLUMNS, BucketAgg

PARTIALS_ARROW_SCHEMA = pa.schema([
    pa.field("environment", pa.string(), False),
    pa.field("event_time", pa.timestamp("us", tz="UTC"), False),  # newest event of the environment in the task
    pa.field("service", pa.string(), False),
    pa.field("bucket", pa.int64(), False),
    pa.field("newest_ms", pa.int64(), False),  # the same instant in milliseconds, as the detector counts
    pa.field("agg", pa.binary(), False),  # the partial BucketAgg (encode)
])
PARTIALS_SCHEMA = from_arrow_schema(PARTIALS_ARROW_SCHEMA, prefer_timestamp_ntz=False)
READ_COLUMNS = ("environment", *INPUT_COLUMNS)

Parts = dict[tuple[str, int], BucketAgg]


def encode(agg: BucketAgg) -> bytes:
    return json.dumps(agg.to_json(), separators=(",", ":")).encode()


def decode(blob: bytes) -> BucketAgg:
    return BucketAgg.from_json(json.loads(blob))


@dataclass(frozen=True)
class PartialsConfig:
    """What a reading task needs to aggregate partial buckets (DetectionParams' share of it)."""

    bucket_ms: int
    slowest_kept: int
    message_max_chars: int
    arrival_tolerance_ms: int  # times later than the record's Kafka timestamp plus this are a clock ahead

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> PartialsConfig:
        data = json.loads(raw)
        return cls(**{f.name: int(data[f.name]) for f in fields(cls)})


class PartialBuckets:
    """A task's partial buckets: add its events (READ_COLUMNS, view.events_view), then take one batch.
    Each batch is reduced as it comes (aggregate.py); the reductions are combined every few batches, so a
    task holds a few small tables whatever the size of its range."""

    COMBINE_EVERY = 8

    def __init__(self, bucket_ms: int, slowest_kept: int):
        self.bucket_ms = bucket_ms
        self.slowest_kept = slowest_kept
        self._reduced: list[Reduced] = []

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self._reduced.append(Reduced.of_events(batch, self.bucket_ms, self.slowest_kept))
        if len(self._reduced) >= self.COMBINE_EVERY:
            self._reduced = [Reduced.combine(self._reduced, self.slowest_kept)]

    def batch(self) -> pa.RecordBatch | None:
        """PARTIALS_SCHEMA rows of everything added (None when nothing was)."""
        if not self._reduced:
            return None
        reduced = Reduced.combine(self._reduced, self.slowest_kept)
        return to_batch(reduced.parts(), reduced.newest())


def to_batch(by_env: dict[str, Parts], newest: dict[str, int]) -> pa.RecordBatch:
    rows = [(env, service, bucket, agg) for env, parts in sorted(by_env.items())
            for (service, bucket), agg in sorted(parts.items())]
    return pa.RecordBatch.from_arrays([
        pa.array([r[0] for r in rows], pa.string()),
        pa.array([newest[r[0]] * 1000 for r in rows], pa.timestamp("us", tz="UTC")),
        pa.array([r[1] for r in rows], pa.string()),
        pa.array([r[2] for r in rows], pa.int64()),
        pa.array([newest[r[0]] for r in rows], pa.int64()),
        pa.array([encode(r[3]) for r in rows], pa.binary()),
    ], schema=PARTIALS_ARROW_SCHEMA)


def parts_of(frame) -> tuple[list[tuple[tuple[str, int], BucketAgg]], int | None]:
    """The partial buckets in a pandas chunk of PARTIALS_SCHEMA rows, and the newest event time they cover."""
    parts = [((service, int(bucket)), decode(blob))
             for service, bucket, blob in zip(frame["service"].tolist(), frame["bucket"].tolist(),
                                              frame["agg"].tolist(), strict=True)]
    newest = int(frame["newest_ms"].max()) if len(frame) else None
    return parts, newest
