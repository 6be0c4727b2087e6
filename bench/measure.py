"""The two measurements every benchmark script shares: percentiles of samples and peak memory of processes.

One definition of each, so a p95 or a peak RSS means the same thing in every row of docs/benchmarks.md.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import psutil

MB = 2**20


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 < q <= 100) of `values` by the nearest-rank method.

    The value of rank ceil(q/100 * n) in the sorted samples (rank 1 is the smallest): always one of the
    samples, never an interpolation between two, so a p95 of 20 detection latencies is a latency that was
    measured. percentile(v, 50) of an even count is the lower of the two middle values; percentile(v, 100)
    is the maximum. (numpy's default, linear interpolation, gives values between samples.)
    """
    if not values:
        raise ValueError("percentile of no samples: the benchmark collected none")
    if not 0 < q <= 100:
        raise ValueError(f"percentile q must be in (0, 100], not {q}")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def high_water_mark(pid: int) -> int | None:
    """The kernel's peak resident set (VmHWM, bytes) of a live process since it started, or None."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


class PeakMemory:
    """Peak resident memory (MB) of groups of processes, sampled every `interval` seconds.

    `groups` maps a name to a function giving the group's process ids at the time of the call (a tree can
    grow and shrink), or is one function giving all groups' ids at once (when they come from one walk of
    a process tree). A group's peak is the highest sum of its processes' RSS at one sample. With
    `since_start`, a group of one process also counts the kernel's high-water mark of that process, its
    exact peak since it started, so a spike between two samples is not missed (what the process used
    before the benchmark began counts too: meant for a process the benchmark started).

    Used as a context manager it samples on a thread of its own; `sample()` can also be called by another
    sampling loop. `open_window()` gives a dict of the peaks from now on, kept up to date until
    `close_window()` (sampled peaks only: the kernel's mark covers the process's whole life).
    """

    def __init__(self, groups: Mapping[str, Callable[[], Iterable[int]]] | Callable[[], Mapping[str, Iterable[int]]],
                 interval: float = 0.2, since_start: bool = False) -> None:
        self.groups = groups
        self.interval = interval
        self.since_start = since_start
        self.peak_mb: dict[str, float] = dict.fromkeys(groups, 0.0) if isinstance(groups, Mapping) else {}
        self._windows: list[dict[str, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="peak-memory")

    def sample(self, pid_groups: Mapping[str, Iterable[int]] | None = None) -> dict[str, float]:
        """Resident memory (MB) of each group now; updates the peaks and the open windows.

        `pid_groups` gives the groups' process ids when the caller has just listed them (else `groups`)."""
        now: dict[str, float] = {}
        marks: dict[str, float] = {}
        if pid_groups is None:
            groups = self.groups
            pid_groups = ({name: pids_of() for name, pids_of in groups.items()} if isinstance(groups, Mapping)
                          else groups())
        for group, group_pids in pid_groups.items():
            pids = list(dict.fromkeys(group_pids))
            total = 0
            for pid in pids:
                try:
                    total += psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    continue
            now[group] = total / MB
            mark = high_water_mark(pids[0]) if self.since_start and len(pids) == 1 else None
            marks[group] = max(now[group], (mark or 0) / MB)
        with self._lock:
            for group, value in marks.items():
                self.peak_mb[group] = max(self.peak_mb.get(group, 0.0), value)
            for window in self._windows:
                for group, value in now.items():
                    window[group] = max(window.get(group, 0.0), value)
        return now

    def open_window(self) -> dict[str, float]:
        window: dict[str, float] = {}
        with self._lock:
            self._windows.append(window)
        self.sample()
        return window

    def close_window(self, window: dict[str, float]) -> dict[str, float]:
        self.sample()
        with self._lock:
            self._windows.remove(window)
        return window

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> PeakMemory:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
