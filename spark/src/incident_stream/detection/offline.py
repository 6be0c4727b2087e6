"""Detection without Spark: LogEvent records in, incident_updates rows out, through the same engine.

The streaming job computes the detector's view of each event on Arrow batches in its source's tasks
(view.py, with enrich_arrow.py). For replays and evaluations (the detection benchmark, scoring a generated
run against its ground truth) this module does the same one record at a time, in plain Python:
`enrich_fields` computes what the detector reads (level normalisation, ``is_error``, HTTP status and
latency parsed from the message when the event lacks them, the error signature) with the definitions of
message_fields.py and incident_contracts.signature, `Preparer` turns records into the detector's input
frame, and `replay` runs one EnvironmentDetector per environment over it in event-time micro-batches.
A test checks that `Preparer` gives what a Spark SQL enrichment of the same events gives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from incident_contracts.catalog import Catalog
from incident_stream.detection.aggregate import Reduced
from incident_stream.detection.buckets import INPUT_COLUMNS
from incident_stream.detection.engine import EnvironmentDetector
from incident_stream.detection.floors import FloorPolicy
from incident_stream.detection.linking import DependencyGraph
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.quiet import SilencePolicy
from incident_stream.detection.view import no_later_than_arrival
from incident_stream.message_fields import normalise_level, parse_latency, parse_status
from incident_stream.signature import mask_message, signature_id

EVENT_COLUMNS = ("environment", *INPUT_COLUMNS)  # the detector's input, all environments together


@dataclass(frozen=True)
class Enriched:
    """What the detector reads from one event, besides its time, service and host."""

    is_error: bool
    is_warn: bool
    latency_ms: float | None
    signature: str
    signature_id: str
    message: str | None


def enrich_fields(level: str | None, message: str | None, http_status: int | None, latency_ms: float | None,
                  message_max_chars: int = 300, signatures: bool = True) -> Enriched:
    """The detector's view of one event, as the job's enrichment computes it.

    With `signatures` false, only error and warning lines get their signature (others get ""): the
    detector's decisions never read signatures, and it reports those of problem lines, so an evaluation
    that only scores incidents can skip the costly masking of every normal line."""
    text = message or ""
    lvl = normalise_level(level)
    status = parse_status(text) if http_status is None and text else http_status
    if latency_ms is None and text:
        latency_ms = parse_latency(text)
    is_error = lvl in ("ERROR", "FATAL") or (status is not None and status >= 500)
    signature = mask_message(message) if signatures or is_error or lvl == "WARN" else ""
    return Enriched(is_error=is_error, is_warn=lvl == "WARN", latency_ms=latency_ms, signature=signature,
                    signature_id=signature_id(signature),
                    message=None if message is None else message[:message_max_chars])


class Preparer:
    """LogEvent records -> the detector's input frame (buckets.INPUT_COLUMNS plus environment).

    Enrichment is cached by (level, message, status, latency): generated and real logs repeat lines.
    `signatures=False`: see enrich_fields.
    """

    def __init__(self, catalog: Catalog, params: DetectionParams | None = None, cache_size: int = 200_000,
                 signatures: bool = True) -> None:
        self.tiers = {s.name: str(s.tier) for s in catalog.services}
        self.owners = {s.name: s.owner for s in catalog.services}
        self.max_chars = (params or DetectionParams()).message_max_chars
        self.cache_size = cache_size
        self.signatures = signatures
        self._cache: dict[tuple, Enriched] = {}

    def enriched(self, level: str | None, message: str | None, http_status: int | None,
                 latency_ms: float | None) -> Enriched:
        key = (level, message, http_status, latency_ms)
        found = self._cache.get(key)
        if found is None:
            found = enrich_fields(level, message, http_status, latency_ms, self.max_chars, self.signatures)
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[key] = found
        return found

    def frame(self, records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
        """The input frame of a batch of LogEvent dicts (timestamp in epoch ms)."""
        columns: dict[str, list] = {c: [] for c in EVENT_COLUMNS}
        for r in records:
            service, environment = r.get("service"), r.get("environment")
            if r.get("timestamp") is None or service is None or environment is None:
                continue
            service, environment = service.strip(" "), environment.strip(" ")  # Spark trim: spaces only
            host = r.get("host")
            e = self.enriched(r.get("level"), r.get("message"), r.get("http_status"), r.get("latency_ms"))
            columns["environment"].append(environment)
            columns["t_ms"].append(int(r["timestamp"]))
            columns["service"].append(service)
            columns["host"].append("unknown" if host is None else host)
            columns["is_error"].append(e.is_error)
            columns["is_warn"].append(e.is_warn)
            columns["latency_ms"].append(e.latency_ms)
            columns["signature"].append(e.signature)
            columns["signature_id"].append(e.signature_id)
            columns["message"].append(e.message)
            columns["tier"].append(self.tiers.get(service))
            columns["owner"].append(self.owners.get(service))
        return frame_of(columns)


def frame_of(columns: Mapping[str, list]) -> pd.DataFrame:
    """A detector input frame from column lists, with the dtypes stream.py's Arrow batches give."""
    frame = pd.DataFrame({name: columns[name] for name in EVENT_COLUMNS})
    frame["t_ms"] = frame["t_ms"].astype(np.int64)
    frame["is_error"] = frame["is_error"].astype(bool)
    frame["is_warn"] = frame["is_warn"].astype(bool)
    frame["latency_ms"] = pd.to_numeric(frame["latency_ms"], errors="coerce").astype(np.float64)
    return frame


class OfflineDetector:
    """One EnvironmentDetector per environment, fed frames in event-time order, as the processor does."""

    def __init__(self, catalog: Catalog, params: DetectionParams | None = None) -> None:
        self.params = params or DetectionParams()
        self.graph = DependencyGraph({s.name: list(s.depends_on) for s in catalog.services})
        self.tiers = {s.name: s.tier for s in catalog.services}
        self.flapping = frozenset(s.name for s in catalog.services if s.flapping)
        self.floors = FloorPolicy.of_catalog(catalog)
        self.silence = SilencePolicy.of_catalog(catalog)
        self.detectors: dict[str, EnvironmentDetector] = {}

    def feed(self, frame: pd.DataFrame, now_ms: int) -> list[dict]:
        """One micro-batch (any environments); returns the rows it produced."""
        if frame.empty:
            return []
        return self.feed_events(events_table(frame), now_ms)

    def feed_events(self, events: pa.Table, now_ms: int) -> list[dict]:
        """One micro-batch as Arrow (EVENT_COLUMNS, any environments): aggregated once, each environment's
        partial buckets handed to its detector as the processor hands them, then each of those advances."""
        rows: list[dict] = []
        if not events.num_rows:
            return rows
        reduced = Reduced.of_events(events, self.params.bucket_ms, self.params.slowest_kept)
        parts, newest = reduced.parts(), reduced.newest()
        for environment in sorted(parts):
            detector = self.detectors.get(environment)
            if detector is None:
                detector = self.detectors[environment] = EnvironmentDetector(
                    environment, self.params, self.graph, self.tiers, self.flapping, self.floors, self.silence)
            detector.ingest_parts(parts[environment].items(), newest[environment])
            rows.extend(detector.advance(now_ms=now_ms))
        return rows


def events_table(frame: pd.DataFrame) -> pa.Table:
    """The detector's input frame (Preparer.frame) as one Arrow table of EVENT_COLUMNS."""
    return pa.Table.from_pandas(frame[list(EVENT_COLUMNS)], preserve_index=False)


def replay(frame: pd.DataFrame, catalog: Catalog, params: DetectionParams | None = None,
           batch_s: float = 2.0, arrival: str | None = None, detector: OfflineDetector | None = None) -> list[dict]:
    """Run the detector over a whole frame in micro-batches of `batch_s` seconds of event time.

    `update_time` of each row is the end of its micro-batch (event time), standing in for the
    processing time the streaming job would record. With `arrival` (the name of a column of epoch
    milliseconds: when each event reached the pipeline), the micro-batches are cut on that column
    instead, so events arrive as they did (late ones late), and an event dated after its arrival (plus
    `arrival_tolerance_s`) is taken at its arrival, as the streaming job's view takes it (view.py).
    `detector`: run this one (to read its counters afterwards).
    """
    detector = detector or OfflineDetector(catalog, params)
    if frame.empty:
        return []
    order = arrival or "t_ms"
    frame = frame.sort_values(order, kind="stable").reset_index(drop=True)
    times = frame[order].to_numpy()
    events = events_table(frame)  # converted once; each micro-batch is a slice of it
    if arrival:
        events = no_later_than_arrival(events, pa.array(times, pa.int64()), detector.params.arrival_tolerance_ms)
    step = max(1, int(batch_s * 1000))
    rows: list[dict] = []
    lo = int(times[0])
    while lo <= int(times[-1]):
        hi = lo + step
        a, b = np.searchsorted(times, [lo, hi])
        rows.extend(detector.feed_events(events.slice(a, b - a), now_ms=hi))
        lo = hi
    return rows
