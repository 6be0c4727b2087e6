"""The Spark stateful processor: one EnvironmentDetector per environment key, its state in RocksDB.

Used with ``groupBy("environment").transformWithStateInPandas(..., timeMode="EventTime")``. Each
micro-batch hands it the environment's partial buckets (partials.py: aggregated by the reading tasks)
as pandas chunks; the detector state (buckets in progress, per-service baselines and incidents) is one
compressed value per environment.
An event-time timer at the next bucket boundary lets an environment that stopped sending events
still close its buckets (and resolve incidents) as the watermark moves on other environments. Spark's
watermark trails the newest event by `watermark_delay_ms` (the allowed lateness); the processor shifts it
by `watermark_shift_ms` (none with the defaults) to get the detector's clock. Spark drops no late row
before the processor (stream.py drops the watermark's column), so the detector decides, and counts, what
is too late.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pyspark.sql.streaming import StatefulProcessor, StatefulProcessorHandle
from pyspark.sql.types import BinaryType, StructField, StructType

from incident_stream.detection.engine import EnvironmentDetector
from incident_stream.detection.floors import FloorPolicy
from incident_stream.detection.linking import DependencyGraph
from incident_stream.detection.output import counter_rows, rows_to_frame
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.partials import parts_of
from incident_stream.detection.quiet import SilencePolicy

STATE_SCHEMA = StructType([StructField("blob", BinaryType(), True)])


class IncidentDetectorProcessor(StatefulProcessor):
    def __init__(self, params: DetectionParams, depends_on: dict[str, list[str]], tiers: dict[str, int],
                 flapping: frozenset[str] = frozenset(), floors: FloorPolicy | None = None,
                 counters: bool = False, silence: SilencePolicy | None = None) -> None:
        self.params = params
        self.silence = silence or SilencePolicy()  # known quiet periods, services never judged for silence
        self.counters = counters  # also emit counter rows (output.counter_rows) for the job's sink
        self.floors = floors or FloorPolicy()
        self.depends_on = {k: list(v) for k, v in depends_on.items()}
        self.tiers = dict(tiers)
        self.flapping = frozenset(flapping)

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.handle = handle
        self.state = handle.getValueState("detector", STATE_SCHEMA)
        self.graph = DependencyGraph(self.depends_on)

    def handleInputRows(self, key, rows: Iterator[pd.DataFrame], timerValues) -> Iterator[pd.DataFrame]:
        detector = self._load(key[0])
        for chunk in rows:
            parts, newest_ms = parts_of(chunk)
            detector.ingest_parts(parts, newest_ms)
        yield from self._advance(detector, timerValues)

    def handleExpiredTimer(self, key, timerValues, expiredTimerInfo) -> Iterator[pd.DataFrame]:
        if not self.state.exists():
            return
        yield from self._advance(self._load(key[0]), timerValues)

    def close(self) -> None:
        pass

    # --- helpers ---------------------------------------------------------------------------------
    def _load(self, environment: str) -> EnvironmentDetector:
        if self.state.exists():
            return EnvironmentDetector.from_bytes(self.state.get()[0], self.params, self.graph, self.tiers,
                                                  self.flapping, self.floors, self.silence)
        return EnvironmentDetector(environment, self.params, self.graph, self.tiers, self.flapping, self.floors,
                                   self.silence)

    def _advance(self, detector: EnvironmentDetector, timerValues) -> Iterator[pd.DataFrame]:
        watermark = timerValues.getCurrentWatermarkInMs()
        now_ms = timerValues.getCurrentProcessingTimeInMs()
        # shifted, Spark's watermark is the newest event time less the allowed lateness, the clock of an
        # environment that sends nothing while others do
        clock = watermark + self.params.watermark_shift_ms if watermark > 0 else None
        rows = detector.advance(now_ms=now_ms, watermark_ms=clock)
        counted = detector.drain_counters()
        if self.counters and counted:
            rows = rows + counter_rows(detector.environment, counted, now_ms)
        self._schedule(detector, watermark)
        self.state.update((detector.to_bytes(),))
        if rows:
            yield rows_to_frame(rows)

    def _schedule(self, detector: EnvironmentDetector, watermark_ms: int) -> None:
        for expiry in list(self.handle.listTimers()):
            self.handle.deleteTimer(expiry)
        if detector.next_bucket is None:
            return
        due = (detector.next_bucket + 1) * self.params.bucket_ms - self.params.watermark_shift_ms
        if due > watermark_ms:
            self.handle.registerTimer(due)
