"""Scenario-driven log event producer with ground truth, and replay of real log files.

Python API: :func:`generate` (in memory), :func:`run` (to Kafka), and ``log_generator.api.replay`` (a log file
to Kafka); ``log_generator.replay`` is the log parsing library. The names are loaded on first use, so the
parsing library imports without Kafka or numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "generate": "log_generator.api", "run": "log_generator.api",
    "GroundTruth": "log_generator.ground_truth", "IncidentTruth": "log_generator.ground_truth",
    "load_ground_truth": "log_generator.ground_truth", "save_ground_truth": "log_generator.ground_truth",
    "RunSummary": "log_generator.summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'log_generator' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
