"""Pacing by event time against the wall clock.

Event k of a paced stream is due at ``t0 + k / rate`` on the monotonic clock. The sender asks before
each small chunk and sleeps until the chunk's first event is due, so the average rate is exact
however long each send takes, and a slow moment is caught up instead of accumulating drift.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    def __init__(self, rate: float | None, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep):
        if rate is not None and not rate > 0:
            raise ValueError(f"pacing rate must be positive, got {rate!r}")
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.t0: float | None = None

    @property
    def paced(self) -> bool:
        return self.rate is not None

    def chunk(self) -> int:
        """Events to send between two checks: about 2 ms worth, between 1 and 1000."""
        if self.rate is None:
            return 2000
        return max(1, min(1000, int(self.rate / 500)))

    def start(self) -> None:
        self.t0 = self.clock()

    def wait_for(self, k: int) -> float:
        """Sleep until event k (counted from 0 at start) is due; returns seconds slept."""
        if self.rate is None:
            return 0.0
        if self.t0 is None:
            self.start()
        assert self.t0 is not None
        delay = self.t0 + k / self.rate - self.clock()
        if delay > 0:
            self.sleep(delay)
            return delay
        return 0.0

    def behind(self, k: int) -> float:
        """Seconds event k is late (0 when on time)."""
        if self.rate is None or self.t0 is None:
            return 0.0
        return max(0.0, self.clock() - (self.t0 + k / self.rate))
