"""Incident detection: per-service baselines, an incident lifecycle, linking along dependencies.

The streaming job runs `detect_partials` on the partial buckets its source's tasks compute while they
write the events (logs_source.py, partials.py) and gets the append-only incident_updates stream. The
logic lives in plain Python (engine.py and what it uses) so it runs and is tested without Spark;
processor.py hosts it in Spark's transformWithStateInPandas. README.md explains the design.
"""

from __future__ import annotations

from incident_stream.detection.engine import EnvironmentDetector
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.stream import detect_partials, params_from_settings

__all__ = ["DetectionParams", "EnvironmentDetector", "detect_partials", "params_from_settings"]
