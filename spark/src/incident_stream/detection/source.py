"""The detection query's source: the Kafka source whose tasks hand over partial buckets, not events.

    spark.dataSource.register(DetectionPartialsSource)
    partials = (spark.readStream.format("kafka_detection_partials")
                .options(**kafka_options, **partials_options(catalog, params)).load())
    updates = detect_partials(partials, catalog, params)

Beside the Kafka options (kafka_source.py) it needs ``detection`` (partials_options: bucket size, how many
slow requests to keep, the detector's view). Each task reads its offset range (kafka_source.py: offsets,
limits, failOnDataLoss), decodes it, takes the detector's view of the events (view.py) and aggregates
them into partial buckets (partials.py), all in its Python worker. Spark then only sees a few hundred
rows per micro-batch: with a source of events + enrichment + mapInArrow, every event crossed from
Python into the JVM and back, the main cost of a detection micro-batch. Rejected records are left out
(the ingest query writes them to dead_letter).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql.types import StructType

from incident_contracts.catalog import Catalog
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.partials import PARTIALS_SCHEMA, partial_buckets
from incident_stream.detection.view import DetectorView, detector_view
from incident_stream.kafka_read import Range, ReadConfig, is_event_batch, read_range
from incident_stream.kafka_source import (
    KafkaRangeSource,
    SourceOptionError,
    SourceOptions,
    TaskWork,
    logevent_arrow_schema,
)

PARTIALS_SOURCE_NAME = "kafka_detection_partials"
OPTION = "detection"  # JSON of PartialsConfig


@dataclass(frozen=True)
class PartialsConfig:
    bucket_ms: int
    slowest_kept: int
    view: DetectorView

    def to_json(self) -> str:
        return json.dumps({"bucket_ms": self.bucket_ms, "slowest_kept": self.slowest_kept,
                           "view": self.view.to_dict()}, sort_keys=True)

    @classmethod
    def parse(cls, options: dict[str, str]) -> PartialsConfig:
        raw = {k.lower(): v for k, v in options.items()}.get(OPTION)
        if not raw:
            raise SourceOptionError(f"the {PARTIALS_SOURCE_NAME} source needs the option {OPTION!r} "
                                    "(see partials_options)")
        try:
            data = json.loads(raw)
            return cls(int(data["bucket_ms"]), int(data["slowest_kept"]), DetectorView.from_dict(data["view"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceOptionError(f"option {OPTION}: not a detection configuration ({exc})") from None


def partials_options(catalog: Catalog, params: DetectionParams) -> dict[str, str]:
    """The options the source needs beside the Kafka ones."""
    config = PartialsConfig(params.bucket_ms, params.slowest_kept, DetectorView.of(catalog, params.message_max_chars))
    return {OPTION: config.to_json()}


def events_view(read: ReadConfig, rng: Range, view: DetectorView) -> Iterator[pa.RecordBatch]:
    """The detector's view of the events of one offset range (rejected records left out)."""
    for batch in read_range(read, rng, logevent_arrow_schema()):
        if batch.num_rows and is_event_batch(batch):
            yield detector_view(batch, view)


def read_partials(read: ReadConfig, rng: Range, config: PartialsConfig) -> Iterator[pa.RecordBatch]:
    """The partial buckets of one offset range (at most one batch)."""
    yield from partial_buckets(config.bucket_ms, config.slowest_kept)(events_view(read, rng, config.view))


class DetectionPartialsSource(KafkaRangeSource):
    @classmethod
    def name(cls) -> str:
        return PARTIALS_SOURCE_NAME

    def schema(self) -> StructType:
        return PARTIALS_SCHEMA

    def reading(self, schema: StructType) -> tuple[SourceOptions, TaskWork]:
        options = dict(self.options)
        parsed = SourceOptions.parse(options, PARTIALS_SOURCE_NAME)
        return parsed, functools.partial(read_partials, config=PartialsConfig.parse(options))
