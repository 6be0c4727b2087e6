"""Known quiet periods in the catalog: the weekly schedule's membership, its defaults, and validation errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from incident_contracts.catalog import CatalogError, load_catalog
from incident_contracts.quiet import DAY_S, WEEK_S, QuietSchedule, parse_clock, parse_days, window_spans

SERVICES = [{"name": "api", "tier": 1, "owner": "web", "hosts": ["a1"]},
            {"name": "batch", "tier": 3, "owner": "data", "hosts": ["b1"]}]


def _ms(text: str, tz: str = "UTC") -> int:
    """Epoch ms of a local wall-clock time 'YYYY-MM-DD HH:MM' in `tz`."""
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def _schedule(days: str, start: str = "00:00", end: str = "24:00", tz: str = "UTC") -> QuietSchedule:
    return QuietSchedule(window_spans(parse_days(days), parse_clock(start), parse_clock(end, end=True)), tz)


def _catalog(tmp_path: Path, services: list[dict] | None = None, **extra):
    path = tmp_path / "services.yaml"
    path.write_text(yaml.safe_dump({"services": services or SERVICES, **extra}, sort_keys=False))
    return load_catalog(path)


# --- the schedule ----------------------------------------------------------------------------------------
def test_day_names_ranges_lists_and_wrapping_ranges() -> None:
    assert parse_days("sat-sun") == (5, 6)
    assert parse_days("mon-fri") == (0, 1, 2, 3, 4)
    assert parse_days("Mon, wed,FRI") == (0, 2, 4)
    assert parse_days("fri-mon") == (0, 4, 5, 6)  # wraps over the week's end
    assert parse_days(["saturday", "sunday"]) == (5, 6)
    assert parse_days("daily") == parse_days("mon-sun") == tuple(range(7))
    assert parse_days("wed-wed") == (2,)


def test_a_window_crossing_midnight_ends_on_the_next_day() -> None:
    nights = _schedule("mon-fri", "22:00", "06:00")  # 2026-09-21 is a Monday
    assert nights.contains(_ms("2026-09-21 22:00"))  # Monday night, from its first minute
    assert nights.contains(_ms("2026-09-22 05:59"))  # Tuesday morning: Monday's window
    assert not nights.contains(_ms("2026-09-22 06:00"))  # `to` is excluded
    assert not nights.contains(_ms("2026-09-21 21:59"))
    assert not nights.contains(_ms("2026-09-21 03:00"))  # Monday early morning: Sunday night is not listed
    assert nights.contains(_ms("2026-09-26 05:00"))  # Saturday morning: Friday's window
    assert not nights.contains(_ms("2026-09-26 22:30"))  # Saturday night: not listed


def test_a_window_from_sunday_night_wraps_into_monday() -> None:
    sunday_night = _schedule("sun", "23:00", "01:00")
    assert sunday_night.contains(_ms("2026-09-27 23:30")) and sunday_night.contains(_ms("2026-09-28 00:30"))
    assert not sunday_night.contains(_ms("2026-09-28 01:00"))


def test_whole_days_and_the_end_of_the_day() -> None:
    weekend = _schedule("sat-sun")
    assert not weekend.contains(_ms("2026-09-25 23:59"))
    assert weekend.contains(_ms("2026-09-26 00:00")) and weekend.contains(_ms("2026-09-27 23:59"))
    assert not weekend.contains(_ms("2026-09-28 00:00"))
    evening = _schedule("daily", "18:30", "24:00")
    assert evening.contains(_ms("2026-09-23 23:59")) and not evening.contains(_ms("2026-09-24 00:00"))
    assert not evening.contains(_ms("2026-09-23 18:29"))


def test_windows_are_local_time_in_their_time_zone() -> None:
    paris = _schedule("mon-fri", "22:00", "06:00", "Europe/Paris")
    # 22:00 in Paris (summer time, UTC+2) is 20:00 UTC
    assert paris.contains(_ms("2026-09-21 20:00")) and not paris.contains(_ms("2026-09-21 19:59"))
    assert paris.contains(_ms("2026-09-21 22:00", "Europe/Paris"))
    # Saturday starts in Tokyo (UTC+9) at 15:00 UTC on Friday
    tokyo = _schedule("sat-sun", tz="Asia/Tokyo")
    assert tokyo.contains(_ms("2026-09-25 15:00")) and not tokyo.contains(_ms("2026-09-25 14:59"))
    # winter time: Paris is UTC+1, the same window starts at 21:00 UTC
    assert paris.contains(_ms("2026-12-07 21:00")) and not paris.contains(_ms("2026-12-07 20:59"))


def test_an_empty_schedule_contains_nothing() -> None:
    assert not QuietSchedule().contains(_ms("2026-09-26 12:00"))


def test_times_and_days_refuse_bad_values_by_name() -> None:
    with pytest.raises(ValueError, match="unknown day 'sum'"):
        parse_days("sat-sum")
    with pytest.raises(ValueError, match="'mon-wed-fri' is not a day or a range"):
        parse_days("mon-wed-fri")
    with pytest.raises(ValueError, match="'25:00'"):
        parse_clock("25:00")
    with pytest.raises(ValueError, match="'24:00'"):
        parse_clock("24:00")  # the end of the day is not a start
    assert parse_clock("24:00", end=True) == 24 * 60
    with pytest.raises(ValueError, match="unquoted 22:00 as the number 1320"):
        parse_clock(1320)


# --- properties of the membership function -----------------------------------------------------------------
WINDOW = st.tuples(st.sets(st.integers(0, 6), min_size=1), st.integers(0, 24 * 60 - 1), st.integers(1, 24 * 60))
INSTANT = st.integers(0, 4 * WEEK_S * 1000 - 1).map(lambda offset: _ms("2026-09-21 00:00") + offset)


def _oracle(windows, t_ms: int) -> bool:
    """Membership the long way: the window's day and minutes, then the next day's for one past midnight."""
    local = datetime.fromtimestamp(t_ms // 1000, UTC)
    minute = local.hour * 60 + local.minute
    day = local.weekday()
    for days, start, end in windows:
        if end > start:
            if day in days and start <= minute < end:
                return True
        elif (day in days and minute >= start) or ((day - 1) % 7 in days and minute < end):
            return True
    return False


@settings(max_examples=150, deadline=None)
@given(st.lists(WINDOW, max_size=4).filter(lambda ws: all(s != e for _, s, e in ws)), INSTANT)
def test_membership_matches_the_day_by_day_reading_of_the_windows(windows, t_ms) -> None:
    schedule = QuietSchedule(tuple(span for d, s, e in windows for span in window_spans(d, s, e)))
    assert schedule.contains(t_ms) == _oracle(windows, t_ms)


@settings(max_examples=100, deadline=None)
@given(WINDOW.filter(lambda w: w[1] != w[2]), INSTANT, st.integers(-3, 3))
def test_membership_repeats_every_week_and_follows_the_time_zone_offset(window, t_ms, weeks) -> None:
    days, start, end = window
    spans = window_spans(days, start, end)
    utc = QuietSchedule(spans)
    assert utc.contains(t_ms) == utc.contains(t_ms + weeks * WEEK_S * 1000)
    # Etc/GMT-3 is UTC+3 all year: its wall clock is UTC's three hours on
    assert QuietSchedule(spans, "Etc/GMT-3").contains(t_ms) == utc.contains(t_ms + 3 * 3600 * 1000)


@settings(max_examples=100, deadline=None)
@given(WINDOW.filter(lambda w: w[1] != w[2]), INSTANT)
def test_a_window_covers_its_length_once_a_day_it_names(window, t_ms) -> None:
    days, start, end = window
    schedule = QuietSchedule(window_spans(days, start, end))
    length_s = ((end - start) % (24 * 60) or 24 * 60) * 60
    first = _ms("2026-09-21 00:00") + (min(days) * DAY_S + start * 60) * 1000  # the first day named
    assert schedule.contains(first) and schedule.contains(first + (length_s - 1) * 1000)
    if len(days) == 1:
        assert not schedule.contains(first + length_s * 1000) or length_s == DAY_S
        assert not schedule.contains(first - 1000) or length_s == DAY_S


# --- the catalog -----------------------------------------------------------------------------------------
def test_catalog_defaults_and_a_service_own_schedule(tmp_path: Path) -> None:
    services = [SERVICES[0], {**SERVICES[1], "quiet": [{"days": "mon-fri", "from": "22:00", "to": "06:00"}],
                              "timezone": "Europe/Paris"},
                {"name": "etl", "tier": 3, "owner": "data", "hosts": ["e1"], "silence": False},
                {"name": "web", "tier": 2, "owner": "web", "hosts": ["w1"], "quiet": []}]
    catalog = _catalog(tmp_path, services, quiet=[{"days": "sat-sun"}], timezone="America/New_York")
    saturday_noon_ny = _ms("2026-09-26 12:00", "America/New_York")
    assert catalog.quiet_schedule("api").contains(saturday_noon_ny)  # the catalog's default
    assert catalog.quiet_schedule("unknown").contains(saturday_noon_ny)  # not in the catalog: the default
    assert not catalog.quiet_schedule("web").contains(saturday_noon_ny)  # [] = no quiet window
    batch = catalog.quiet_schedule("batch")
    assert batch.timezone == "Europe/Paris" and not batch.contains(saturday_noon_ny)
    assert batch.contains(_ms("2026-09-22 23:00", "Europe/Paris"))
    assert catalog.silence_judged("api") and not catalog.silence_judged("etl")
    assert catalog.silence_judged("unknown")


def test_catalog_without_quiet_fields_judges_every_service_at_every_time(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    assert catalog.silence and catalog.quiet == [] and catalog.timezone == "UTC"
    assert not catalog.quiet_schedule("api").spans and catalog.silence_judged("batch")
    assert not _catalog(tmp_path, silence=False).silence_judged("api")


def test_unquoted_times_in_yaml_are_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_text("services:\n  - {name: api, tier: 1, owner: web, hosts: [a1],\n"
                    "     quiet: [{days: mon-fri, from: 22:00, to: '06:00'}]}\n")
    with pytest.raises(CatalogError, match=r"services\[api\]\.quiet\.0\.from: .*time 1320 must be a quoted "
                                           r"\"HH:MM\" string \(YAML reads an unquoted 22:00"):
        load_catalog(path)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("quiet", [{"days": "sat-sum"}], r"services\[batch\]\.quiet\.0\.days: .*unknown day 'sum'"),
    ("quiet", [{"days": "mon", "from": "9:75"}], r"services\[batch\]\.quiet\.0\.from: .*'9:75' is not a time"),
    ("quiet", [{"to": "24:01"}], r"services\[batch\]\.quiet\.0\.to: .*'24:01' is not a time"),
    ("quiet", [{"from": "08:00", "to": "08:00"}], r"services\[batch\]\.quiet\.0: .*from 08:00 to 08:00 is empty"),
    ("quiet", [{"days": "sat", "until": "06:00"}], r"services\[batch\]\.quiet\.0\.until: .*not permitted"),
    ("quiet", {"days": "sat"}, r"services\[batch\]\.quiet: .*valid list"),
    ("timezone", "Europe/Pariss", r"services\[batch\]\.timezone: .*time zone 'Europe/Pariss' is unknown"),
    ("silence", "sometimes", r"services\[batch\]\.silence: .*valid boolean"),
])
def test_bad_quiet_settings_of_a_service_are_refused_by_service_and_value(tmp_path: Path, field, value,
                                                                          message) -> None:
    with pytest.raises(CatalogError, match=message):
        _catalog(tmp_path, [SERVICES[0], {**SERVICES[1], field: value}])


def test_bad_catalog_wide_quiet_settings_are_refused_by_value(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"  timezone: .*time zone 'Moon/Base' is unknown"):
        _catalog(tmp_path, timezone="Moon/Base")
    with pytest.raises(CatalogError, match=r"  quiet\.1\.days: .*'fri-sat-sun' is not a day or a range"):
        _catalog(tmp_path, quiet=[{"days": "sat"}, {"days": "fri-sat-sun"}])


def test_the_shipped_catalog_still_loads() -> None:
    catalog = load_catalog()
    assert all(catalog.silence_judged(name) for name in catalog.names)
    assert not catalog.quiet_schedule("api-gateway").spans
