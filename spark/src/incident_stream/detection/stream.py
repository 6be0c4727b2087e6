"""`detect_partials`: partial buckets in (what the job source's tasks compute from the events they read:
logs_source.py, partials.py), the incident_updates stream out (append mode).

Only the partial buckets reach the stateful processor, grouped by environment. See README.md for why
the detector is one stateful operator with event-time buckets rather than windowed aggregations.
"""

from __future__ import annotations

from pyspark.sql import DataFrame

from incident_contracts.catalog import Catalog
from incident_contracts.settings import Settings
from incident_stream.detection.floors import FloorPolicy
from incident_stream.detection.output import incident_updates_schema
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.partials import PartialsConfig
from incident_stream.detection.processor import IncidentDetectorProcessor
from incident_stream.detection.quiet import SilencePolicy


def partials_config(params: DetectionParams) -> PartialsConfig:
    """What the source's tasks need to hand detection its partial buckets."""
    return PartialsConfig(params.bucket_ms, params.slowest_kept, params.message_max_chars, params.arrival_tolerance_ms)


def params_from_settings(settings: Settings) -> DetectionParams:
    """DetectionParams with the user-configurable fields (DETECTION_* settings) taken from the settings."""
    return DetectionParams().with_overrides(quiet_period_s=settings.detection_quiet_period_seconds,
                                            open_score=settings.detection_open_score,
                                            allowed_lateness_s=settings.detection_allowed_lateness_seconds,
                                            late_horizon_s=settings.detection_late_horizon_seconds,
                                            default_tier=settings.default_service_tier)


def detect_partials(partials: DataFrame, catalog: Catalog, params: DetectionParams,
                    counters: bool = False) -> DataFrame:
    """Incident lifecycle rows for a stream (or batch) of partial buckets (PARTIALS_SCHEMA), those of the
    job's ``kafka_logs`` source (logs_source.py).
    With `counters`, the detector's counters come along as rows of update_type output.COUNTER_UPDATE
    (late events per service, environment-wide silences), for the job's sink to move to metrics."""
    if partials.isStreaming:
        # Spark's watermark (newest event time less the allowed lateness) closes the buckets of environments
        # that send nothing. Its column is dropped before the stateful operator: Spark then has no column to
        # drop late rows by, so every partial bucket reaches the detector, which counts late events at their
        # arrival or, beyond the late horizon, as left out (docs/detection.md, "Late data")
        partials = partials.withWatermark("event_time", f"{params.watermark_delay_ms} milliseconds").drop("event_time")
    processor = IncidentDetectorProcessor(
        params,
        depends_on={s.name: list(s.depends_on) for s in catalog.services},
        tiers={s.name: s.tier for s in catalog.services},
        flapping=frozenset(s.name for s in catalog.services if s.flapping),
        floors=FloorPolicy.of_catalog(catalog),
        counters=counters,
        silence=SilencePolicy.of_catalog(catalog),
    )
    return partials.groupBy("environment").transformWithStateInPandas(
        statefulProcessor=processor,
        outputStructType=incident_updates_schema(),
        outputMode="append",
        timeMode="EventTime",
    )
