"""`detect`: the events stream in, the incident_updates stream out (append mode); `detect_partials`:
the same from partial buckets (what the streaming job feeds it, from the source of source.py).

Per event, only built-in Spark expressions run (projection, millisecond time, message cut); each
reading task then aggregates its events into partial buckets (partials.py), and only those reach the
stateful processor, grouped by environment. See README.md for why
the detector is one stateful operator with event-time buckets rather than windowed aggregations.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from incident_contracts.catalog import Catalog
from incident_contracts.settings import Settings
from incident_stream.detection.floors import FloorPolicy
from incident_stream.detection.output import incident_updates_schema
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.partials import PARTIALS_SCHEMA, partial_buckets
from incident_stream.detection.processor import IncidentDetectorProcessor

REQUIRED_COLUMNS = ("event_time", "service", "environment", "host", "level", "is_error", "latency_ms",
                    "message", "signature", "signature_id", "tier", "owner")


def params_from_settings(settings: Settings) -> DetectionParams:
    """DetectionParams with the user-configurable fields (DETECTION_* settings) taken from the settings."""
    return DetectionParams().with_overrides(quiet_period_s=settings.detection_quiet_period_seconds,
                                            open_score=settings.detection_open_score,
                                            allowed_lateness_s=settings.detection_allowed_lateness_seconds,
                                            late_horizon_s=settings.detection_late_horizon_seconds,
                                            default_tier=settings.default_service_tier)


def prepare(events: DataFrame, params: DetectionParams) -> DataFrame:
    """The columns the detector reads, per event (built-in expressions only): environment, event_time and
    buckets.INPUT_COLUMNS. Events without a time, service or environment are left out."""
    return events.select(
        F.col("environment").cast("string").alias("environment"),
        F.col("event_time"),
        F.unix_millis(F.col("event_time")).alias("t_ms"),
        F.col("service").cast("string").alias("service"),
        F.coalesce(F.col("host").cast("string"), F.lit("unknown")).alias("host"),
        F.coalesce(F.col("is_error").cast("boolean"), F.lit(False)).alias("is_error"),
        F.coalesce(F.upper(F.col("level")) == F.lit("WARN"), F.lit(False)).alias("is_warn"),
        F.col("latency_ms").cast("double").alias("latency_ms"),
        F.coalesce(F.col("signature").cast("string"), F.lit("")).alias("signature"),
        F.coalesce(F.col("signature_id").cast("string"), F.lit("")).alias("signature_id"),
        F.substring(F.col("message").cast("string"), 1, params.message_max_chars).alias("message"),
        F.col("tier").cast("string").alias("tier"),
        F.col("owner").cast("string").alias("owner"),
    ).where(F.col("event_time").isNotNull() & F.col("service").isNotNull() & F.col("environment").isNotNull())


def detect(events: DataFrame, catalog: Catalog, settings: Settings,
           params: DetectionParams | None = None) -> DataFrame:
    """Incident lifecycle rows (opened / updated / resolved) for a stream (or batch) of events.

    `events` has the columns of incident_contracts.tables.EVENTS (at least REQUIRED_COLUMNS). The
    result has exactly the columns of INCIDENT_UPDATES and is meant for append output mode.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"detect() needs the events columns {missing}, which the input lacks; pass the "
                         "decoded and enriched events stream (columns of incident_contracts.tables.EVENTS)")
    params = params or params_from_settings(settings)
    partials = prepare(events, params).mapInArrow(partial_buckets(params.bucket_ms, params.slowest_kept),
                                                  PARTIALS_SCHEMA)
    return detect_partials(partials, catalog, params)


def detect_partials(partials: DataFrame, catalog: Catalog, params: DetectionParams,
                    counters: bool = False) -> DataFrame:
    """Incident lifecycle rows for a stream (or batch) of partial buckets (PARTIALS_SCHEMA): those of
    :func:`detect`'s reading tasks, or of the ``kafka_detection_partials`` source (source.py).
    With `counters`, the detector's counters come along as rows of update_type output.COUNTER_UPDATE
    (late events per service, environment-wide silences), for the job's sink to move to metrics."""
    if partials.isStreaming:
        # Spark drops rows behind its watermark before the processor sees them: the watermark trails by the
        # late horizon, so late partial buckets reach the detector, which counts them at their arrival
        partials = partials.withWatermark("event_time", f"{params.watermark_delay_ms} milliseconds")
    processor = IncidentDetectorProcessor(
        params,
        depends_on={s.name: list(s.depends_on) for s in catalog.services},
        tiers={s.name: s.tier for s in catalog.services},
        flapping=frozenset(s.name for s in catalog.services if s.flapping),
        floors=FloorPolicy.of_catalog(catalog),
        counters=counters,
    )
    return partials.groupBy("environment").transformWithStateInPandas(
        statefulProcessor=processor,
        outputStructType=incident_updates_schema(),
        outputMode="append",
        timeMode="EventTime",
    )
