"""Shared, cached generator runs: generating is deterministic, so several tests can read one run."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest

from log_generator import api
from log_generator.ground_truth import GroundTruth

START_MS = 1_795_000_000_000  # 2026-11-18T10:13:20Z, fixed so runs are reproducible

Generated = Callable[..., tuple[tuple[dict, ...], GroundTruth]]


@cache
def _generated(scenario: str, rate: float = 250.0, duration_s: float = 120.0, seed: int = 3,
               origin: str | None = None) -> tuple[tuple[dict, ...], GroundTruth]:
    events, truth = api.generate(scenario, rate=rate, duration_s=duration_s, seed=seed, start_ms=START_MS,
                                 origin=origin)
    return tuple(events), truth


@pytest.fixture(scope="session")
def generated() -> Generated:
    """generated(scenario, rate=250, duration_s=120, seed=3, origin=None) -> (events, ground truth), cached."""
    return _generated


@pytest.fixture(scope="session")
def start_ms() -> int:
    return START_MS
