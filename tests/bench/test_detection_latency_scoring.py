"""How the detection benchmark scores injections: undetected ones count as the time they were watched."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
detection_bench = importlib.import_module("detection_bench")


def test_an_undetected_injection_counts_as_the_time_it_was_watched() -> None:
    inj = detection_bench.Injection("bad_deploy", "order-service", start_ms=1_000_000, first_error_wall_ms=1_002_000)
    assert detection_bench.watched_s(inj, observed_until_ms=1_090_000, fallback=44.0) == 88.0
    no_error_seen = detection_bench.Injection("disk_full", "search-service", start_ms=1_000_000)
    assert detection_bench.watched_s(no_error_seen, observed_until_ms=1_090_000, fallback=44.0) == 90.0
    assert detection_bench.watched_s(inj, observed_until_ms=None, fallback=44.0) == 44.0


def test_percentile_is_nearest_rank() -> None:
    values = [32.5, 37.6, 54.9, 81.5, 58.4, 88.0, 65.2, 70.0, 76.0, 60.0]
    assert detection_bench.percentile(values, 95) == 88.0
    assert detection_bench.percentile(values, 50) == 60.0
    assert detection_bench.percentile([5.0], 95) == 5.0
