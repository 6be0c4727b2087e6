"""Known quiet periods (catalog `quiet`, `timezone`) and services never judged for silence (`silence: false`):
the detector does not page a silence that was expected, and does not learn it as the usual volume.

The synthetic streams start on Monday 2026-09-21 at 14:13:20 UTC (T0_MS): 400 s in is 14:20:00 UTC.
"""

from __future__ import annotations

import pandas as pd
from detection_synthetic import T0_MS, Episode, Profile, Scenario, events, task_partials
from engine_input import ingest
from pyspark.sql.streaming.tws_tester import TwsTester

from incident_contracts.catalog import Catalog
from incident_stream.detection.engine import ENVIRONMENT_SILENT, EnvironmentDetector
from incident_stream.detection.linking import DependencyGraph
from incident_stream.detection.offline import replay
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.processor import IncidentDetectorProcessor
from incident_stream.detection.quiet import SilencePolicy

FLEET = {"orders": Profile(40, 0.004, 35, 140, tier="1"), "db": Profile(30, 0.001, 3, 15, hosts=("pg-1",), tier="1")}
AT_1420 = 400.0  # seconds after T0: 14:20:00 UTC
AT_1425 = 700.0


def _catalog(db: dict | None = None, **defaults) -> Catalog:
    services = [{"name": "orders", "tier": 1, "owner": "shop", "hosts": ["h1", "h2"], "depends_on": ["db"]},
                {"name": "db", "tier": 1, "owner": "data", "hosts": ["pg-1"], **(db or {})}]
    return Catalog.model_validate({"services": services, **defaults})


def _db_silent(start_s: float, end_s: float, duration_s: float = 900.0) -> pd.DataFrame:
    """db sends nothing at all from start_s to end_s; orders carries on."""
    return events(Scenario(FLEET, duration_s, [Episode("db", start_s, end_s, rate_factor=0.0)]), seed=3)


def _opened(rows: list[dict], service: str = "db") -> list[dict]:
    return [r for r in rows if r["update_type"] == "opened" and r["service"] == service]


def _at(rows: list[dict], field: str = "opened_at") -> list[float]:
    return [(r[field] - T0_MS) / 1000 for r in rows]


# "daily 14:20-14:25" in the catalog's words
WINDOW = [{"days": "daily", "from": "14:20", "to": "14:25"}]


def test_a_service_going_silent_inside_its_quiet_window_opens_nothing() -> None:
    rows = replay(_db_silent(AT_1420, AT_1425), _catalog({"quiet": WINDOW}))
    assert rows == []  # and traffic coming back at the window's end is no silence either


def test_the_same_silence_outside_its_quiet_window_opens_a_silence_incident() -> None:
    rows = replay(_db_silent(AT_1420, AT_1425), _catalog({"quiet": [{"days": "daily", "from": "14:30",
                                                                   "to": "15:00"}]}))
    opened = _opened(rows)
    assert len(opened) == 1 and opened[0]["trigger"] == "silence"
    assert AT_1420 <= _at(opened)[0] <= AT_1420 + 15
    # on another day of the week the window does not apply (2026-09-21 is a Monday)
    rows = replay(_db_silent(AT_1420, AT_1425), _catalog({"quiet": [{**WINDOW[0], "days": "sat-sun"}]}))
    assert [r["trigger"] for r in _opened(rows)] == ["silence"]


def test_the_window_is_local_time_in_the_catalog_time_zone() -> None:
    frame = _db_silent(AT_1420, AT_1425)
    paris = [{"days": "mon", "from": "16:20", "to": "16:25"}]  # 14:20 UTC in Paris summer time
    assert replay(frame, _catalog({"quiet": paris, "timezone": "Europe/Paris"})) == []
    assert replay(frame, _catalog(quiet=paris, timezone="Europe/Paris")) == []  # the catalog-wide default
    assert [r["trigger"] for r in _opened(replay(frame, _catalog({"quiet": paris})))] == ["silence"]  # UTC


def test_a_service_whose_volume_is_no_health_signal_never_opens_a_silence() -> None:
    frame = _db_silent(AT_1420, AT_1425)
    assert replay(frame, _catalog({"silence": False})) == []
    assert replay(frame, _catalog(silence=False)) == []
    # an error burst on it still pages: only its volume is not judged
    errors = events(Scenario(FLEET, 900.0, [Episode("db", AT_1420, AT_1425, error_rate=0.5)]), seed=3)
    assert [r["trigger"] for r in _opened(replay(errors, _catalog({"silence": False})))] == ["error_rate"]


def test_an_open_silence_incident_resolves_when_a_quiet_window_starts() -> None:
    rows = replay(_db_silent(300, AT_1425), _catalog({"quiet": WINDOW}))
    db = [r for r in rows if r["service"] == "db"]
    assert _at(_opened(db)) and 300 <= _at(_opened(db))[0] <= 315  # a real silence, before the window
    resolved = [r for r in db if r["update_type"] == "resolved"]
    assert len(resolved) == 1 and len(_opened(db)) == 1  # and nothing opens when traffic comes back
    assert _at(resolved, "resolved_at") == [AT_1420]  # silence was expected from then on
    # written like any resolution: quiet_period_s (60 s) without an active bucket
    assert AT_1420 + 60 <= _at(resolved, "update_time")[0] <= AT_1420 + 65


def test_a_silence_that_outlasts_the_window_pages_soon_after_the_window_ends() -> None:
    short = [{"days": "daily", "from": "14:20", "to": "14:22"}]  # 400 s to 520 s
    opened = _opened(replay(_db_silent(AT_1420, AT_1425), _catalog({"quiet": short})))
    assert len(opened) == 1 and opened[0]["trigger"] == "silence"
    assert 520 <= _at(opened)[0] <= 520 + 15  # judged on the buckets since the window's end only


def test_a_quiet_window_does_not_teach_the_usual_volume_that_zero_is_normal() -> None:
    frame = _db_silent(AT_1420, AT_1425, duration_s=1_200.0)
    detector = EnvironmentDetector("prod", DetectionParams(), DependencyGraph({}),
                                   silence=SilencePolicy.of_catalog(_catalog({"quiet": WINDOW})))
    usual = {}
    for until_s in (AT_1420, AT_1425 + 2, 1_200.0):
        ingest(detector, frame[frame.t_ms < T0_MS + until_s * 1000])
        frame = frame[frame.t_ms >= T0_MS + until_s * 1000]
        assert detector.advance(now_ms=0) == []
        usual[until_s] = detector.services["db"].usual_volume()
    assert 27 <= usual[AT_1420] <= 33  # 30 events/s
    assert abs(usual[AT_1425 + 2] - usual[AT_1420]) < 0.5  # five minutes of zero were not learned
    assert 27 <= usual[1_200.0] <= 33
    # the state keeps where the last quiet bucket was
    again = EnvironmentDetector.from_bytes(detector.to_bytes(), detector.params, detector.graph,
                                           silence=detector.silence)
    assert again.services["db"].since_quiet == detector.services["db"].since_quiet


def test_services_quiet_by_schedule_do_not_count_towards_an_environment_silence() -> None:
    frame = events(Scenario(FLEET, 900.0, [Episode(s, AT_1420, AT_1425, rate_factor=0.0) for s in FLEET]), seed=3)
    catalog = _catalog({"quiet": WINDOW})
    # orders alone is judged: its silence is its own incident, not the environment's logs stopping
    assert [r["service"] for r in replay(frame, catalog) if r["update_type"] == "opened"] == ["orders"]
    detector = EnvironmentDetector("prod", DetectionParams(), DependencyGraph({}),
                                   silence=SilencePolicy.of_catalog(_catalog(quiet=WINDOW)))
    ingest(detector, frame)
    assert detector.advance(now_ms=0) == []  # every service quiet by schedule: nothing, and no pipeline alarm
    assert ENVIRONMENT_SILENT not in {c for c, _, _ in detector.drain_counters()}


def test_the_spark_processor_carries_the_quiet_schedule() -> None:
    frame = _db_silent(AT_1420, AT_1425)

    def opened_triggers(catalog: Catalog) -> list[str]:
        processor = IncidentDetectorProcessor(DetectionParams(), {"orders": ["db"], "db": []}, {"orders": 1, "db": 1},
                                              silence=SilencePolicy.of_catalog(catalog))
        tester = TwsTester(processor, timeMode="EventTime", eventTimeExtractor=lambda row: int(row["newest_ms"]))
        triggers = []
        for lo in range(0, 900_000, 30_000):
            chunk = frame[(frame.t_ms >= T0_MS + lo) & (frame.t_ms < T0_MS + lo + 30_000)].reset_index(drop=True)
            result = tester.testInPandas("prod", task_partials(chunk, tasks=2))
            triggers += result.loc[result.update_type == "opened", "trigger"].tolist() if len(result) else []
        return triggers

    assert opened_triggers(_catalog({"quiet": WINDOW})) == []
    assert opened_triggers(_catalog()) == ["silence"]
