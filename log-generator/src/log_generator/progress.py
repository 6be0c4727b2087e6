"""A progress line while a run is going: sent, delivered, failed, rate, event time, active incidents."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TextIO

from log_generator.producer import DeliveryStats


class Progress:
    def __init__(self, enabled: bool = True, stream: TextIO | None = None, interval_s: float | None = None,
                 total: int | None = None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval_s if interval_s is not None else (0.5 if self.tty else 5.0)
        self.total = total
        self._last = 0.0
        self._last_sent = 0
        self._started = time.monotonic()
        self._wrote = False

    def due(self) -> bool:
        return self.enabled and time.monotonic() - self._last >= self.interval

    def update(self, stats: DeliveryStats, event_ms: int | None = None, note: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        span = now - self._last if self._last else now - self._started
        rate = (stats.sent - self._last_sent) / span if span > 0 else 0.0
        self._last, self._last_sent = now, stats.sent
        total = f"/{self.total:,}" if self.total else ""
        when = (datetime.fromtimestamp(event_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
                if event_ms is not None else "-")
        line = (f"sent {stats.sent:,}{total}  delivered {stats.delivered:,}  failed {stats.failed:,}  "
                f"{rate:,.0f} ev/s  event time {when}Z" + (f"  {note}" if note else ""))
        if self.tty:
            self.stream.write("\r\x1b[2K" + line[:200])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._wrote = True

    def close(self) -> None:
        if self.enabled and self.tty and self._wrote:
            self.stream.write("\n")
            self.stream.flush()
