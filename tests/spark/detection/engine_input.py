"""Events straight into one EnvironmentDetector, for the tests that drive the engine without Spark: aggregated
into partial buckets as the job's reading tasks aggregate them (aggregate.Reduced), then handed over with
ingest_parts, as the processor does."""

from __future__ import annotations

import pandas as pd

from incident_stream.detection.aggregate import Reduced
from incident_stream.detection.engine import EnvironmentDetector
from incident_stream.detection.offline import events_table


def ingest(detector: EnvironmentDetector, frame: pd.DataFrame | None) -> None:
    """Events of the detector's environment (buckets.INPUT_COLUMNS)."""
    if frame is None or frame.empty:
        return
    events = events_table(frame.assign(environment=detector.environment))
    reduced = Reduced.of_events(events, detector.params.bucket_ms, detector.params.slowest_kept)
    detector.ingest_parts(reduced.parts().get(detector.environment, {}).items(), int(frame["t_ms"].max()))
