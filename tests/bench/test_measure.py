"""bench/measure.py: the one percentile definition and the one peak-memory helper of the benchmarks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from measure import PeakMemory, percentile  # noqa: E402


def test_percentile_is_nearest_rank() -> None:
    values = [15.0, 20.0, 35.0, 40.0, 50.0]  # the textbook nearest-rank example
    assert [percentile(values, q) for q in (5, 30, 40, 50, 100)] == [15.0, 20.0, 20.0, 35.0, 50.0]
    latencies = [32.5, 37.6, 54.9, 81.5, 58.4, 88.0, 65.2, 70.0, 76.0, 60.0]  # order does not matter
    assert percentile(latencies, 95) == 88.0  # rank ceil(9.5) = 10: the largest, not 84.9 interpolated
    assert percentile(latencies, 50) == 60.0  # rank 5 of 10: the lower middle value
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile(list(range(1, 21)), 95) == 19
    assert percentile([5.0], 95) == 5.0


def test_percentile_refuses_no_samples_and_a_q_outside_0_to_100() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 95)
    for q in (0, -1, 101):
        with pytest.raises(ValueError, match="must be in"):
            percentile([1.0], q)


CHILD = """
import sys, time
block = b"x" * (120 * 2**20)  # written, so resident
del block
print("freed", flush=True)
time.sleep(30)
"""


def test_peak_memory_counts_a_freed_spike_only_with_the_kernels_mark() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "freed"
        since_start = PeakMemory({"child": lambda: [child.pid]}, since_start=True)
        sampled = PeakMemory({"child": lambda: [child.pid]})
        now = since_start.sample()["child"]
        sampled.sample()
        window = since_start.open_window()
        assert since_start.peak_mb["child"] >= 120  # the 120 MB it held before the first sample
        assert sampled.peak_mb["child"] == pytest.approx(now, abs=5) and now < 60  # only what it holds now
        assert window["child"] < 60  # a window sees samples only, not the mark from before it opened
    finally:
        child.kill()
        child.wait()


def test_a_group_peak_is_the_highest_sum_at_one_sample() -> None:
    children = [subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(30)"],
                                 stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for child in children:  # both interpreters are up (a child still starting is smaller)
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with PeakMemory(lambda: {"both": [c.pid for c in children], "first": [children[0].pid]},
                        interval=0.05) as memory:
            now = memory.sample()
        assert memory.peak_mb["both"] >= now["first"] * 1.5  # two interpreters of similar size
        assert memory.peak_mb["first"] == pytest.approx(now["first"], rel=0.2)
    finally:
        for child in children:
            child.kill()
            child.wait()


def test_every_bench_script_uses_the_shared_helpers() -> None:
    """No script measures memory or percentiles its own way."""
    own_ways = re.compile(r"ru_maxrss|memory_info\(|def _?p\d\d\(|def percentile|\* 0\.9\d\)|sorted\([^)]*\)\[-1\]")
    shared = re.compile(r"^from measure import .*\b(percentile|PeakMemory)\b", re.MULTILINE)
    offenders = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        text = path.read_text()
        if path.name == "measure.py":
            continue
        uses = {name for name in ("percentile", "PeakMemory") if re.search(rf"\b{name}\(", text)}
        imported = {name for match in shared.finditer(text) for name in re.findall(r"percentile|PeakMemory",
                                                                                     match.group(0))}
        if own_ways.search(text) or uses - imported:
            offenders.append(path.name)
    assert offenders == []
