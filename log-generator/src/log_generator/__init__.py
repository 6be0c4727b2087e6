"""Scenario-driven log event producer with ground truth, and replay of real log files.

Python API: :func:`generate` (in memory), :func:`run` (to Kafka), :func:`replay` (a log file to Kafka).
"""

from log_generator.api import generate, replay, run
from log_generator.ground_truth import GroundTruth, IncidentTruth, load_ground_truth, save_ground_truth
from log_generator.summary import RunSummary

__all__ = ["GroundTruth", "IncidentTruth", "RunSummary", "generate", "load_ground_truth", "replay", "run",
           "save_ground_truth"]
