"""The job's source: each offset range is read once, and feeds both the tables and detection.

    spark.dataSource.register(LogsSource)
    partials = (spark.readStream.format("kafka_logs")
                .options(**kafka_options, tablesRoot="/data", serviceCatalog=..., detection=...).load())

A task reads its offset range (kafka_source.py: offsets, limits, failOnDataLoss), decodes it, and for
every Arrow batch of it:

* rejected records -> dead-letter rows -> new files of the dead_letter table;
* events -> enriched (enrich_arrow.py) -> new files of the events table, and the detector's view of them
  (detection/view.py) -> the task's partial buckets (detection/partials.py).

When the range is done the task closes its files, writes its manifest (batch_staging.py) and hands Spark
its partial buckets: a few hundred rows, the source's only output (PARTIALS_SCHEMA), which the detector
consumes (detection/stream.py). The query's sink commits the files the manifests name and the detector's
incident updates, under the micro-batch's id (job.BatchSink).

Options beside the Kafka ones (kafka_source.py):

================  ======================================================================================
tablesRoot        required: the tables' root (DATA_DIR), a folder every executor can write, or s3://...
tablesStorage     JSON of object-store options without credentials (executors take those from AWS_*)
serviceCatalog    JSON {"tiers": {service: tier}, "owners": {service: owner}} for the enrichment;
                  default: the service catalog file (CATALOG_FILE)
detection         JSON of detection.partials.PartialsConfig; without it the tasks hand over nothing
================  ======================================================================================

Spark's progress counts the source's rows (partial buckets), not records; the sink reports the records
it committed to the metrics recorder (metrics.py), which reports those instead.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.types import StructType

from incident_contracts.catalog import CatalogError, default_catalog
from incident_contracts.table_store import TableStore
from incident_stream.batch_staging import BatchStaging
from incident_stream.dead_letter import dead_letter_batch
from incident_stream.detection.partials import PARTIALS_SCHEMA, PartialBuckets, PartialsConfig
from incident_stream.detection.view import events_view
from incident_stream.enrich_arrow import ServiceLookup, enrich_batch
from incident_stream.ingest_files import RangeFiles
from incident_stream.kafka_read import Range, ReadConfig, is_event_batch, read_range
from incident_stream.kafka_source import (
    KafkaRangeSource,
    PlanHook,
    SourceOptionError,
    SourceOptions,
    TaskWork,
    logevent_arrow_schema,
)

LOGS_SOURCE_NAME = "kafka_logs"
TABLES_OPTION = "tablesRoot"
STORAGE_OPTION = "tablesStorage"
SERVICES_OPTION = "serviceCatalog"
DETECTION_OPTION = "detection"


def read_range_once(read: ReadConfig, rng: Range, tables: TableStore, services: ServiceLookup,
                    detection: PartialsConfig | None) -> Iterator[pa.RecordBatch]:
    """One task: its range's events and dead letters written as table files (listed in its manifest), its
    partial buckets (PARTIALS_SCHEMA) returned."""
    files = RangeFiles(tables, rng)
    partials = PartialBuckets(detection.bucket_ms, detection.slowest_kept) if detection else None
    try:
        for batch in read_range(read, rng, logevent_arrow_schema()):
            if not batch.num_rows:
                continue
            if not is_event_batch(batch):
                files.add_dead_letters(dead_letter_batch(batch))
                continue
            events = enrich_batch(batch, services)
            files.add_events(events)
            if partials is not None:
                partials.add(events_view(events, detection.message_max_chars,  # type: ignore[union-attr]
                                         arrival_of(batch), detection.arrival_tolerance_ms))  # type: ignore[union-attr]
        BatchStaging.of(tables).write_task(rng, files.close())
    except BaseException:
        files.remove()
        raise
    buckets = partials.batch() if partials is not None else None
    if buckets is not None:
        yield buckets


def arrival_of(batch: pa.RecordBatch) -> pa.Array:
    """When each record reached the pipeline: its Kafka timestamp (set by the pipeline's producers, the same
    on every read of the record), or the time it was read when it has none."""
    return pc.coalesce(batch.column("kafka_timestamp"), batch.column("read_time"))


def service_lookup(raw: str) -> ServiceLookup:
    """The serviceCatalog option: JSON of ServiceLookup.to_dict(); empty: the service catalog file."""
    if not raw.strip():
        try:
            return ServiceLookup.of(default_catalog())
        except CatalogError as exc:
            raise SourceOptionError(f"the {LOGS_SOURCE_NAME} source needs the service catalog: {exc}; pass the "
                                    f"option {SERVICES_OPTION} or point CATALOG_FILE at a valid catalog") from None
    try:
        return ServiceLookup.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceOptionError(f"option {SERVICES_OPTION}: expected JSON with 'tiers' and 'owners' ({exc})") from None


class LogsSource(KafkaRangeSource):
    @classmethod
    def name(cls) -> str:
        return LOGS_SOURCE_NAME

    def schema(self) -> StructType:
        return PARTIALS_SCHEMA

    def _options(self) -> dict[str, str]:
        return {k.lower(): v for k, v in dict(self.options).items()}

    def _tables(self) -> TableStore:
        options = self._options()
        root = options.get(TABLES_OPTION.lower(), "").strip()
        if not root:
            raise SourceOptionError(f"the {LOGS_SOURCE_NAME} source needs the option {TABLES_OPTION!r}: the "
                                    "tables' root (DATA_DIR), a folder every executor can write or s3://...")
        try:
            storage = json.loads(options.get(STORAGE_OPTION.lower(), "") or "{}")
        except ValueError as exc:
            raise SourceOptionError(f"the option {STORAGE_OPTION!r} must be a JSON object: {exc}") from None
        return TableStore(root, storage)

    def _detection(self) -> PartialsConfig | None:
        raw = self._options().get(DETECTION_OPTION.lower(), "").strip()
        if not raw:
            return None
        try:
            return PartialsConfig.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceOptionError(f"option {DETECTION_OPTION}: not a detection configuration ({exc}); see "
                                    "detection.stream.partials_config") from None

    def reading(self, schema: StructType) -> tuple[SourceOptions, TaskWork]:
        parsed = SourceOptions.parse(dict(self.options), LOGS_SOURCE_NAME)
        work = functools.partial(read_range_once, tables=self._tables(), detection=self._detection(),
                                 services=service_lookup(self._options().get(SERVICES_OPTION.lower(), "")))
        return parsed, work

    def on_plan(self) -> PlanHook:
        """Each batch's plan goes to the staging folder, where the sink finds the batch's manifests by it."""
        return BatchStaging.of(self._tables()).write_plan
