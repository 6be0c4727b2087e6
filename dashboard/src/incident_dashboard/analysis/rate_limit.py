"""How many root-cause analyses one user may start: each Gemini call is paid with the project's API key.

A sliding window per user: at most ``limit`` analyses in any ``window`` seconds. The user is the
signed-in user when the dashboard sits behind a login (the compose stack's proxy), else the browser
session. The dashboard process keeps one limiter (:func:`limiter_for`); the clock is injectable so
the rule is tested without waiting.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from incident_contracts.settings import Settings

# Users whose whole window has passed are forgotten once this many are tracked (sessions come and go).
_PRUNE_ABOVE = 1024


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    window_seconds: float
    remaining: int  # analyses still allowed in the window after this one (when allowed)
    retry_after: float  # seconds until the next one is allowed (0 when allowed)

    def message(self) -> str:
        """What the user is told when refused: the limit, and when the next analysis is possible."""
        count = f"{self.limit} analysis" if self.limit == 1 else f"{self.limit} analyses"
        return (f"You have started {count} in the last {describe_seconds(self.window_seconds)}, the "
                f"limit per user (ANALYSIS_LIMIT_PER_USER, ANALYSIS_LIMIT_WINDOW_SECONDS). The next one is "
                f"possible in {describe_seconds(self.retry_after)}.")


def describe_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.999))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h" + (f" {rest // 60} min" if rest // 60 else "")


class RateLimiter:
    """At most `limit` acquisitions per user in any `window_seconds`; `limit` 0 means no limit."""

    def __init__(self, limit: int, window_seconds: float, clock: Callable[[], float] = time.monotonic):
        if limit < 0 or window_seconds <= 0:
            raise ValueError("limit must be 0 or more and window_seconds above 0")
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._starts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _expire(self, starts: deque[float], now: float) -> None:
        while starts and starts[0] <= now - self.window_seconds:
            starts.popleft()

    def try_acquire(self, user: str) -> Decision:
        """Count one analysis for `user` if the limit allows it; say so either way."""
        if self.limit == 0:
            return Decision(True, 0, self.window_seconds, remaining=-1, retry_after=0.0)
        with self._lock:
            now = self._clock()
            starts = self._starts.setdefault(user, deque())
            self._expire(starts, now)
            if len(starts) >= self.limit:
                retry = starts[0] + self.window_seconds - now
                return Decision(False, self.limit, self.window_seconds, remaining=0, retry_after=max(retry, 0.0))
            starts.append(now)
            if len(self._starts) > _PRUNE_ABOVE:
                self._prune(now)
            return Decision(True, self.limit, self.window_seconds, remaining=self.limit - len(starts),
                            retry_after=0.0)

    def _prune(self, now: float) -> None:
        for user in list(self._starts):
            self._expire(self._starts[user], now)
            if not self._starts[user]:
                del self._starts[user]

    def tracked_users(self) -> int:
        with self._lock:
            return len(self._starts)


@lru_cache(maxsize=8)
def _limiter(limit: int, window_seconds: float) -> RateLimiter:
    return RateLimiter(limit, window_seconds)


def limiter_for(settings: Settings) -> RateLimiter:
    """The process's limiter for the settings' limit (one per distinct limit and window)."""
    return _limiter(settings.analysis_limit_per_user, settings.analysis_limit_window_seconds)
