"""Known quiet periods: a weekly schedule of local-time windows in which a service is expected to be silent.

The catalog declares them (catalog.QuietWindow: `days`, `from`, `to`, and a `timezone` per service or for
the whole catalog); the detector asks `QuietSchedule.contains(t_ms)` of each bucket's event time and does
not judge the service's volume inside a window (docs/detection.md, *Known quiet periods*).

A window `{days: "mon-fri", from: "22:00", to: "06:00"}` starts on each of the days named at `from`, local
time, and ends at `to`; a `to` at or before `from` is on the next day (the window crosses midnight), so
this one covers Monday 22:00 to Tuesday 06:00, ..., Friday 22:00 to Saturday 06:00. `from` defaults to
00:00, `to` to 24:00 and `days` to every day. Membership is judged on the local wall clock of the
window's time zone: a window inside the hour skipped when daylight saving time starts does not happen
that day, one inside the hour repeated when it ends happens twice.

Plain Python (no pydantic), so the detector's Spark processor carries schedules as small frozen values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_S = 86_400
WEEK_S = 7 * DAY_S
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


def _day(token: str, text: str) -> int:
    name = token.strip().lower()
    for names in (DAYS, _FULL_DAYS):
        if name in names:
            return names.index(name)
    raise ValueError(f"days {text!r}: unknown day {token.strip()!r} (use mon, tue, wed, thu, fri, sat, sun or "
                     "their full names; a range such as mon-fri; several separated by commas; or daily)")


def parse_days(value: str | Iterable[str]) -> tuple[int, ...]:
    """Days of the week (0 = Monday) named by "sat-sun", "mon-fri", "mon,wed,fri", "fri-mon" (a range may
    wrap over the week's end), "daily", or a list of such strings; sorted, without repeats."""
    parts = [value] if isinstance(value, str) else list(value)
    if not parts or not all(isinstance(p, str) for p in parts):
        raise ValueError(f"days {value!r}: expected day names such as 'mon-fri' or 'sat,sun'")
    text = ",".join(parts)
    days: set[int] = set()
    for token in text.split(","):
        if not token.strip():
            raise ValueError(f"days {text!r}: an empty day name")
        if token.strip().lower() in ("daily", "every day"):
            days.update(range(7))
            continue
        ends = token.split("-")
        if len(ends) == 1:
            days.add(_day(ends[0], text))
        elif len(ends) == 2:
            first, last = _day(ends[0], text), _day(ends[1], text)
            days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
        else:
            raise ValueError(f"days {text!r}: {token.strip()!r} is not a day or a range of days such as mon-fri")
    return tuple(sorted(days))


def parse_clock(value: object, *, end: bool = False) -> int:
    """Minutes after midnight of an "HH:MM" time (00:00-23:59; "24:00" too for the end of a window)."""
    if not isinstance(value, str):
        hint = ""
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 24 * 60:
            hint = f" (YAML reads an unquoted {value // 60}:{value % 60:02d} as the number {value})"
        raise ValueError(f"time {value!r} must be a quoted \"HH:MM\" string{hint}")
    match = _CLOCK.match(value.strip())
    hours, minutes = (int(match.group(1)), int(match.group(2))) if match else (-1, -1)
    if match and minutes < 60 and (hours < 24 or (end and hours == 24 and minutes == 0)):
        return hours * 60 + minutes
    allowed = "00:00 to 24:00" if end else "00:00 to 23:59"
    raise ValueError(f"time {value!r} is not a time of day \"HH:MM\" ({allowed})")


def window_spans(days: Iterable[int], start_min: int, end_min: int) -> tuple[tuple[int, int], ...]:
    """The (start, length) in seconds from Monday 00:00 of a window on `days` from `start_min` to `end_min`
    (minutes after midnight); an end at or before the start is on the next day."""
    length_min = end_min - start_min if end_min > start_min else 24 * 60 - start_min + end_min
    return tuple((d * DAY_S + start_min * 60, length_min * 60) for d in sorted(set(days)))


def check_timezone(name: object) -> str:
    """`name` if it is an IANA time zone this Python knows (UTC, Europe/Paris, America/New_York, ...)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"time zone {name!r} must be an IANA name such as Europe/Paris or UTC")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time zone {name!r} is unknown (an IANA name such as Europe/Paris, America/New_York "
                         "or UTC)") from None
    return name


def local_second_of_week(t_ms: int, timezone: str) -> int:
    """Seconds since Monday 00:00 of the local wall-clock time of the instant `t_ms` (epoch ms)."""
    local = datetime.fromtimestamp(t_ms // 1000, ZoneInfo(timezone))
    return local.weekday() * DAY_S + local.hour * 3600 + local.minute * 60 + local.second


@dataclass(frozen=True)
class QuietSchedule:
    """A weekly schedule of quiet windows in one time zone; `spans` as window_spans gives them."""

    spans: tuple[tuple[int, int], ...] = ()
    timezone: str = "UTC"

    def contains(self, t_ms: int) -> bool:
        """Whether the instant `t_ms` (epoch ms) is inside one of the windows, on the local wall clock."""
        if not self.spans:
            return False
        second = local_second_of_week(t_ms, self.timezone)
        return any((second - start) % WEEK_S < length for start, length in self.spans)
