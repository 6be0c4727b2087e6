"""Log formats by template: every preset reads its sample, auto detection, the six layouts real logs use,
multi-line entries, levels, year and zone rules, user formats files, service names, and no input crashes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incident_contracts.codec import Codec
from log_generator.replay import FormatError, LogFileReader, ReplayError, ReplayOptions, load_formats, parse
from log_generator.replay.formats import LEVELS, TimeContext, compile_template, normalize_level, zone_of
from log_generator.replay.parser import MAX_SERVICES, ParseOptions, detect_format, service_from_filename

SAMPLES = Path(__file__).resolve().parent / "samples"
PRESETS = [name for name in load_formats()]
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def one(line: str, fmt: str = "auto", **options) -> dict:
    result = parse([line], fmt, ParseOptions(**options))
    assert not result.rejects, result.rejects
    assert len(result.events) == 1, result.events
    return result.events[0]


# --- every preset, on a sample written for it --------------------------------------------------------
def test_every_preset_has_a_sample() -> None:
    assert sorted(PRESETS) == sorted(p.stem for p in SAMPLES.glob("*.log"))


@pytest.mark.parametrize("name", PRESETS)
def test_preset_parses_its_sample(name: str) -> None:
    lines = (SAMPLES / f"{name}.log").read_text().splitlines()
    result = parse(lines, name, ParseOptions(reference_ms=NOW_MS, source=f"{name}.log"))
    stats = result.stats
    non_blank = sum(1 for line in lines if line.strip())
    assert stats.lines_read == len(lines) == stats.parsed + stats.continuation + stats.unparsed + stats.blank
    assert (stats.parsed + stats.continuation) / non_blank >= 0.99, result.rejects[:3]
    assert stats.parsed >= 50 and len(result.events) == stats.parsed
    codec = Codec()
    for event in result.events:
        assert event["level"] in LEVELS
        assert codec.decode(codec.encode(event))["message"] == event["message"]
    assert len({e["event_id"] for e in result.events}) == len(result.events)
    assert len({e["level"] for e in result.events}) >= 2, "the sample's levels are read, not defaulted"
    assert all(ms("2026-11-20T00:00:00+00:00") <= e["timestamp"] <= ms("2026-11-21T00:00:00+00:00")
               for e in result.events if name != "python-basic")


@pytest.mark.parametrize("name", PRESETS)
def test_auto_picks_the_preset_of_each_sample(name: str) -> None:
    lines = (SAMPLES / f"{name}.log").read_text().splitlines()
    assert detect_format(lines[:200], ctx=TimeContext(reference=NOW)).name == name


def test_auto_names_its_choice_and_parses_like_the_named_format() -> None:
    lines = (SAMPLES / "spark.log").read_text().splitlines()
    auto = parse(lines, "auto", ParseOptions(detect_lines=50))
    named = parse(lines, "spark")
    assert auto.format == "spark" and auto.detection.describe().startswith("format auto: spark (50/50")
    assert auto.events == named.events


def test_auto_with_nothing_parseable_rejects_with_a_reason() -> None:
    result = parse(["just some words", "and more words"], "auto")
    assert result.events == [] and result.format is None
    assert [r.reason for r in result.rejects] == ["no known format parses this line (format auto)"] * 2


# --- the layouts real application and system logs use -----------------------------------------------
def test_log4j_thread_in_brackets_zookeeper() -> None:
    e = one("2015-07-29 17:41:44,747 - INFO  [main:Server@12] - message")
    assert (e["timestamp"], e["level"], e["logger"], e["message"]) == (ms("2015-07-29T17:41:44.747+00:00"), "INFO",
                                                                       "Server", "message")
    assert e["attributes"]["thread"] == "main" and e["attributes"]["line"] == "12"
    e = one("2015-07-29 19:04:12,394 - WARN  [QuorumPeer[myid=2]/0:0:0:0:0:0:0:0:2181:Follower@89] - "
            "Exception when following the leader", "zookeeper")
    assert e["attributes"]["thread"] == "QuorumPeer[myid=2]/0:0:0:0:0:0:0:0:2181" and e["logger"] == "Follower"


def test_spark_console_layout() -> None:
    e = one("17/06/09 20:10:40 INFO executor.Backend: message")
    assert (e["timestamp"], e["level"], e["logger"], e["message"]) == (ms("2017-06-09T20:10:40+00:00"), "INFO",
                                                                       "executor.Backend", "message")


def test_hdfs_layout() -> None:
    e = one("081109 203615 148 INFO dfs.DataNode$PacketResponder: message")
    assert (e["timestamp"], e["level"], e["logger"]) == (ms("2008-11-09T20:36:15+00:00"), "INFO",
                                                         "dfs.DataNode$PacketResponder")
    assert e["attributes"]["thread"] == "148" and e["message"] == "message"


def test_apache_error_log_both_layouts() -> None:
    e = one("[Sun Dec 04 04:51:08 2005] [notice] message")
    assert (e["timestamp"], e["level"], e["message"]) == (ms("2005-12-04T04:51:08+00:00"), "INFO", "message")
    e = one("[Fri Nov 20 08:00:01.123456 2026] [proxy:error] [pid 4121:tid 1398] [client 203.0.113.9:51234] "
            "AH00898: Error reading from remote server returned by /api", "apache-error")
    assert (e["level"], e["attributes"]["module"], e["attributes"]["client_ip"], e["attributes"]["code"]) == \
        ("ERROR", "proxy", "203.0.113.9:51234", "AH00898")
    assert e["timestamp"] == ms("2026-11-20T08:00:01.123+00:00")


def test_openstack_with_file_name_prefix() -> None:
    e = one("nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:00.008 25746 INFO nova.osapi_compute.wsgi.server "
            "[req-38101a0b-2096-447d-96ea-a692162415ae 113d3a99c3da401fbd62cc2caa5b96d2 "
            "54fadb412c4e40cdbaed9335e4c35a9e - - -] message")
    assert (e["timestamp"], e["level"], e["service"], e["logger"], e["message"]) == (
        ms("2017-05-16T00:00:00.008+00:00"), "INFO", "nova-api", "nova.osapi_compute.wsgi.server", "message")
    assert e["attributes"]["request_id"] == "req-38101a0b-2096-447d-96ea-a692162415ae"
    e = one('2017-05-16 00:00:00.008 25746 INFO nova.osapi_compute.wsgi.server [req-38101a0b-2096-447d-96ea-'
            'a692162415ae - - -] 10.11.10.1 "GET /v2/servers/detail HTTP/1.1" status: 503 len: 1893 time: 0.2477',
            "openstack", default_service="nova")
    assert (e["service"], e["http_method"], e["http_path"], e["http_status"], e["latency_ms"]) == \
        ("nova", "GET", "/v2/servers/detail", 503, 247.7)


def test_bluegene_ras_epoch_prefixed() -> None:
    e = one("- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL "
            "INFO message")
    assert (e["timestamp"], e["level"], e["host"], e["logger"], e["message"]) == (
        1117838570675, "INFO", "R02-M1-N0-C:J12-U11", "KERNEL", "message")
    assert "alert" not in e["attributes"]
    e = one("KERNDTLB 1118536327 2005.06.11 R30-M0-N9-C:J16-U01 2005-06-11-17.32.07.581048 R30-M0-N9-C:J16-U01 RAS "
            "KERNEL FATAL data TLB error interrupt", "bgl")
    assert (e["level"], e["attributes"]["alert"]) == ("FATAL", "KERNDTLB")


# --- multi-line entries ----------------------------------------------------------------------------------
def test_java_stack_trace_joins_its_entry() -> None:
    lines = ["2026-11-20 08:00:01,000 [main] ERROR com.shop.Db - save failed",
             "java.sql.SQLException: pool exhausted",
             "\tat com.shop.Db.save(Db.java:10)",
             "Caused by: java.net.SocketTimeoutException: connect timed out",
             "\t... 12 more",
             "2026-11-20 08:00:02,000 [main] INFO  com.shop.Db - recovered"]
    result = parse(lines, "log4j")
    assert [e["message"].splitlines()[0] for e in result.events] == ["save failed", "recovered"]
    assert result.events[0]["message"] == "\n".join(["save failed", *lines[1:5]])
    assert result.events[0]["error_type"] == "java.sql.SQLException"
    assert result.stats.continuation == 4 and not result.rejects


def test_python_traceback_joins_its_entry() -> None:
    lines = ["2026-11-20 08:00:01,000 - app.worker - ERROR - task failed",
             "Traceback (most recent call last):",
             '  File "/srv/app/worker.py", line 88, in run',
             "    result = task()",
             "KeyError: 'order_id'",
             "2026-11-20 08:00:02,000 - app.worker - INFO - next"]
    result = parse(lines, "python")
    assert len(result.events) == 2 and result.events[0]["message"].endswith("KeyError: 'order_id'")
    assert result.events[0]["message"].count("\n") == 4


def test_a_line_not_in_the_format_joins_the_entry_above_unless_it_starts_an_entry() -> None:
    lines = ["17/06/09 20:10:40 INFO executor.Backend: dump follows",
             "{'partition': 3, 'offset': 1200}",
             "2017-06-09 20:10:41 this starts an entry of some other layout",
             "17/06/09 20:10:42 INFO executor.Backend: done"]
    result = parse(lines, "spark")
    assert result.events[0]["message"] == "dump follows\n{'partition': 3, 'offset': 1200}"
    assert [(r.lineno, r.reason) for r in result.rejects] == [(3, "does not match the spark format")]


def test_continuation_with_nothing_above_is_rejected_and_single_line_formats_do_not_join() -> None:
    result = parse(["\tat com.shop.Foo.bar(Foo.java:12)", "2026-11-20 08:00:01,000 [main] INFO  a.B - x"], "log4j")
    assert result.rejects[0].reason == "continuation line with no entry above it" and len(result.events) == 1
    result = parse(['10.0.0.1 - - [20/Nov/2026:08:00:01 +0000] "GET / HTTP/1.1" 200 5', "  indented junk"], "access")
    assert len(result.events) == 1 and result.rejects[0].reason == "does not match the access format"


def test_cri_partial_lines_join_into_one_entry() -> None:
    lines = ["2026-11-20T08:00:01.123456789Z stderr P ERROR first half ",
             "2026-11-20T08:00:01.123456790Z stderr P and middle ",
             "2026-11-20T08:00:01.123456791Z stderr F and the end",
             "2026-11-20T08:00:02.000000000Z stdout F all good"]
    result = parse(lines, "cri")
    assert [e["message"] for e in result.events] == ["ERROR first half and middle and the end", "all good"]
    assert result.events[0]["level"] == "ERROR" and result.events[0]["attributes"]["stream"] == "stderr"
    assert result.events[0]["timestamp"] == ms("2026-11-20T08:00:01.123+00:00")


# --- levels ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "level"), [
    ("FATAL", "FATAL"), ("SEVERE", "ERROR"), ("CRITICAL", "FATAL"), ("notice", "INFO"), ("crit", "FATAL"),
    ("emerg", "FATAL"), ("alert", "FATAL"), ("warn", "WARN"), ("Warning", "WARN"), ("err", "ERROR"),
    ("FAILURE", "ERROR"), ("trace5", "TRACE"), ("FINEST", "TRACE"), ("dpanic", "FATAL"), ("W", None), ("E", None),
    ("bogus", None), (40, "ERROR"), (10, "DEBUG"),
])
def test_level_names(raw, level) -> None:
    assert normalize_level(raw) == level


@pytest.mark.parametrize(("letter", "level"), [("I", "INFO"), ("W", "WARN"), ("E", "ERROR"), ("F", "FATAL")])
def test_single_letter_levels_where_the_format_uses_them(letter: str, level: str) -> None:
    assert normalize_level(letter, letters=True) == level
    e = one(f"{letter}1120 08:00:01.000001    7 controller.go:172] x", "klog", reference_ms=NOW_MS)
    assert e["level"] == level
    # the same letter where a format does not declare letters is not a level
    result = parse([f"2026-11-20 08:00:01,000 {letter} [c] x"], "generic")
    assert result.rejects[0].reason == f"unknown level '{letter}'"


def test_syslog_numbers_and_priorities() -> None:
    assert [normalize_level(n, scale="syslog") for n in range(8)] == \
        ["FATAL", "FATAL", "FATAL", "ERROR", "WARN", "INFO", "INFO", "DEBUG"]
    assert one("<11>Nov 20 07:59:58 web-01 sshd[2231]: x", "syslog", reference_ms=NOW_MS)["level"] == "ERROR"
    assert one('{"__REALTIME_TIMESTAMP": "1795161600000000", "MESSAGE": "m", "PRIORITY": "4"}',
               "journald")["level"] == "WARN"
    assert parse(["<999>Nov 20 07:59:58 web-01 sshd: x"], "syslog-rfc3164").rejects[0].reason == \
        "syslog priority out of range (0-191)"


# --- year and zone rules ----------------------------------------------------------------------------
def test_yearless_timestamps_take_the_reference_year_and_roll_back_when_in_the_future() -> None:
    ref = ms("2027-01-02T10:00:00+00:00")
    assert one("Dec 31 23:59:59 h app: x", "syslog-rfc3164", reference_ms=ref)["timestamp"] == \
        ms("2026-12-31T23:59:59+00:00")
    assert one("Jan  2 09:00:00 h app: x", "syslog-rfc3164", reference_ms=ref)["timestamp"] == \
        ms("2027-01-02T09:00:00+00:00")
    # less than a day ahead (clock skew) stays in the reference year
    assert one("Jan  2 20:00:00 h app: x", "syslog-rfc3164", reference_ms=ref)["timestamp"] == \
        ms("2027-01-02T20:00:00+00:00")
    assert one("Jan  4 20:00:00 h app: x", "syslog-rfc3164", reference_ms=ref)["timestamp"] == \
        ms("2026-01-04T20:00:00+00:00")
    assert one("Dec 31 23:59:59 h app: x", "syslog-rfc3164", reference_ms=ref, year=2024)["timestamp"] == \
        ms("2024-12-31T23:59:59+00:00")
    assert one("Feb 29 12:00:00 h app: x", "syslog-rfc3164", reference_ms=ms("2028-03-01T00:00:00+00:00"))[
        "timestamp"] == ms("2028-02-29T12:00:00+00:00")


def test_the_file_mtime_is_the_reference_of_yearless_lines(tmp_path: Path) -> None:
    path = tmp_path / "klog.log"
    path.write_text("I1231 23:00:00.000000    1 a.go:1] old\n")
    mtime = ms("2024-01-01T00:30:00+00:00") / 1000
    os.utime(path, (mtime, mtime))
    events = list(LogFileReader(path, "klog"))
    assert events[0]["timestamp"] == ms("2023-12-31T23:00:00+00:00")


def test_time_of_day_only_takes_the_reference_date() -> None:
    ref = ms("2026-11-20T12:00:00+00:00")
    assert one("08:00:01.250 [main] INFO  a.B - x", "log4j", reference_ms=ref)["timestamp"] == \
        ms("2026-11-20T08:00:01.250+00:00")
    assert one("23:30:00.000 [main] INFO  a.B - x", "log4j", reference_ms=ref)["timestamp"] == \
        ms("2026-11-19T23:30:00+00:00")


def test_zone_rules_utc_default_setting_format_key_and_override(tmp_path: Path) -> None:
    line = "17/06/09 20:10:40 INFO executor.Backend: m"
    assert one(line)["timestamp"] == ms("2017-06-09T20:10:40+00:00")
    assert one(line, default_timezone=zone_of("Europe/Paris"))["timestamp"] == ms("2017-06-09T20:10:40+02:00")
    user = tmp_path / "formats.yaml"
    user.write_text("formats:\n  spark:\n    template: '<date> <time> <level> <logger>: <message>'\n"
                    "    fields: {date: '\\d{2}/\\d{2}/\\d{2}', time: '\\d{2}:\\d{2}:\\d{2}'}\n"
                    "    timestamp: '%y/%m/%d %H:%M:%S'\n    timezone: America/New_York\n")
    formats = load_formats(user)
    options = ParseOptions(default_timezone=zone_of("Europe/Paris"))
    assert parse([line], "spark", options, formats).events[0]["timestamp"] == ms("2017-06-09T20:10:40-04:00")
    options = ParseOptions(timezone=zone_of("+05:30"), default_timezone=zone_of("Europe/Paris"))
    assert parse([line], "spark", options, formats).events[0]["timestamp"] == ms("2017-06-09T20:10:40+05:30")
    # a zone in the line wins over all of them
    assert one("2026-11-20T08:00:00+01:00 INFO [a] x", "generic", timezone=zone_of("+05:30"))["timestamp"] == \
        ms("2026-11-20T07:00:00+00:00")


# --- user formats -------------------------------------------------------------------------------------
def test_user_formats_add_and_override_in_yaml_and_toml(tmp_path: Path) -> None:
    yaml_file = tmp_path / "formats.yaml"
    yaml_file.write_text(
        "formats:\n"
        "  billing:\n"
        "    description: billing batch\n"
        "    template: '<timestamp> | <level> | <service> | [[<trace_id> | ]]<message>'\n"
        "    fields: {timestamp: '\\d{8}T\\d{6}', trace_id: '[0-9a-f]{32}'}\n"
        "    timestamp: '%Y%m%dT%H%M%S'\n"
        "  access:\n"
        "    regex: '^(?P<timestamp>\\d+) (?P<status>\\d{3}) (?P<request>.*)$'\n"
        "    timestamp: epoch\n"
        "    level_default: http_status\n")
    formats = load_formats(yaml_file)
    assert list(formats)[:2] == ["access", "billing"] and "log4j" in formats
    e = parse(["20261120T080000 | WARN | invoicer | 4bf92f3577b34da6a3ce929d0e0e4736 | slow"], "billing",
              formats=formats).events[0]
    assert (e["service"], e["trace_id"], e["level"], e["message"]) == (
        "invoicer", "4bf92f3577b34da6a3ce929d0e0e4736", "WARN", "slow")
    assert parse(["20261120T080000 | INFO | invoicer | no trace"], "billing", formats=formats).events[0][
        "trace_id"] is None
    e = parse(["1795161600 503 GET /x HTTP/1.1"], "access", formats=formats).events[0]
    assert (e["timestamp"], e["level"], e["http_path"]) == (1795161600000, "ERROR", "/x")
    toml_file = tmp_path / "formats.toml"
    toml_file.write_text('[formats.pipe]\ntemplate = "<timestamp>|<level>|<message>"\ntimestamp = "iso8601"\n')
    assert parse(["2026-11-20T08:00:00Z|error|boom"], "auto", formats=load_formats(toml_file)).format == "pipe"


@pytest.mark.parametrize(("text", "message"), [
    ("formats: [1, 2]", "expected a top-level 'formats' table"),
    ("formats:\n  x:\n    template: '<a>'\n", "timestamp is required"),
    ("formats:\n  x:\n    regex: '(unclosed'\n    timestamp: iso8601\n", "invalid regular expression"),
    ("formats:\n  x:\n    template: '<a>'\n    regex: 'a'\n    timestamp: iso8601\n", "exactly one of"),
    ("formats:\n  x:\n    template: '<a>'\n    timestamp: iso8601\n    colour: red\n", "unknown key(s) colour"),
    ("formats:\n  x:\n    template: '[[<a>'\n    timestamp: iso8601\n", "never closed"),
    ("formats:\n  x:\n    template: '<a>'\n    timestamp: iso8601\n    timezone: Mars/Base\n", "unknown time zone"),
    ("formats:\n  Bad Name:\n    template: '<a>'\n    timestamp: iso8601\n", "format name 'Bad Name'"),
    ("formats:\n  x:\n    any_of: [nope]\n", "any_of names 'nope'"),
    ("formats: {x: [", "is not valid YAML"),
])
def test_bad_formats_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "formats.yaml"
    path.write_text(text)
    with pytest.raises(FormatError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_formats(path)


def test_template_syntax() -> None:
    regex = compile_template("<ts> [<thread>] <level>  <message>", {"ts": r"\d+"})
    assert regex == r"^(?P<ts>\d+)\s+\[(?P<thread>[^\]]*)\]\s+(?P<level>[A-Za-z]+\d?)\s+(?P<message>.*)$"
    assert compile_template("<a>[[ (<b:\\d+>)]]") == r"^(?P<a>\S+)(?:\s+\((?P<b>\d+)\))?$"


# --- service names -------------------------------------------------------------------------------------
def test_service_from_field_else_file_name_else_option(tmp_path: Path) -> None:
    assert service_from_filename("nova-api.log.1.gz") == "nova-api"
    assert service_from_filename("payments.2026-11-20.log") == "payments"
    assert service_from_filename("app.jsonl") == "app"
    path = tmp_path / "checkout-api.log.3"
    path.write_text("2026-11-20 08:00:01,000 INFO [com.shop.VeryLongLoggerName] x\n")
    event = next(iter(LogFileReader(path, "generic")))
    assert event["service"] == "checkout-api" and event["logger"] == "com.shop.VeryLongLoggerName"
    event = next(iter(LogFileReader(path, "generic", ReplayOptions(service="billing"))))
    assert event["service"] == "billing"


def test_names_from_lines_create_a_bounded_number_of_services() -> None:
    lines = [f"<13>1 2026-11-20T08:00:00Z h app-{i} - - - x" for i in range(MAX_SERVICES + 10)]
    lines.append("<13>1 2026-11-20T08:00:00Z h bad$name!* - - - x")
    events = parse(lines, "syslog-rfc5424", ParseOptions(default_service="host-syslog")).events
    services = {e["service"] for e in events}
    assert len(services) == MAX_SERVICES + 1 and "host-syslog" in services
    assert events[-1]["service"] == "host-syslog" and events[-1]["attributes"]["service_in_line"] == "bad$name!*"


# --- robustness and purity ----------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))),
                max_size=12),
       st.sampled_from(["auto", "log4j", "syslog", "jsonl", "journald", "cri", "logrus", "bgl", "access"]))
def test_random_input_never_crashes_the_parser(lines: list[str], fmt: str) -> None:
    result = parse(lines, fmt, ParseOptions(detect_lines=5))
    stats = result.stats
    assert stats.lines_read == stats.parsed + stats.continuation + stats.unparsed + stats.blank
    assert all(e["level"] in LEVELS and isinstance(e["timestamp"], int) for e in result.events)


def test_the_parsing_library_imports_without_kafka_or_numpy() -> None:
    code = ("import sys, log_generator.replay.parser, log_generator.replay.reader; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('confluent_kafka', 'numpy', 'pyspark')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_layouts_beyond_the_fast_directives_use_strptime(tmp_path: Path) -> None:
    path = tmp_path / "formats.yaml"
    path.write_text("formats:\n  us:\n    regex: '^(?P<timestamp>[A-Z][a-z]+ \\d{2}, \\d{4} "
                    "\\d{2}:\\d{2}:\\d{2} [AP]M) (?P<level>\\w+) (?P<message>.*)$'\n"
                    "    timestamp: '%B %d, %Y %I:%M:%S %p'\n")
    formats = load_formats(path)
    assert formats["us"].timestamps[0].fast is None
    event = parse(["November 20, 2026 08:15:00 PM WARN late"], "us", formats=formats).events[0]
    assert (event["timestamp"], event["level"]) == (ms("2026-11-20T20:15:00+00:00"), "WARN")
    path.write_text("formats:\n  bad:\n    template: '<timestamp> <message>'\n    timestamp: '%Q'\n")
    with pytest.raises(FormatError, match="timestamp layout '%Q'"):
        load_formats(path)


def test_journald_fields_and_byte_array_messages() -> None:
    line = ('{"__REALTIME_TIMESTAMP": "1795161600123456", "__CURSOR": "s=1;i=2", "_BOOT_ID": "b", "PRIORITY": "3", '
            '"_HOSTNAME": "node-1", "SYSLOG_IDENTIFIER": "kubelet", "_SYSTEMD_UNIT": "kubelet.service", '
            '"_PID": "812", "MESSAGE": [104, 105, 255]}')
    e = one(line, "journald")
    assert (e["timestamp"], e["level"], e["host"], e["service"], e["logger"]) == (
        1795161600123, "ERROR", "node-1", "kubelet", "kubelet.service")
    assert e["message"] == "hi\ufffd"
    assert e["attributes"]["_PID"] == "812" and "__CURSOR" not in e["attributes"] and "_BOOT_ID" not in e["attributes"]


def test_auto_starts_again_after_lines_no_format_reads() -> None:
    lines = ["garbage one", "garbage two", "garbage three",
             "081109 203615 148 INFO dfs.DataNode$PacketResponder: a",
             "081109 203616 148 WARN dfs.DataNode$PacketResponder: b"]
    result = parse(lines, "auto", ParseOptions(detect_lines=3))
    assert result.format == "hdfs" and [e["message"] for e in result.events] == ["a", "b"]
    assert [r.lineno for r in result.rejects] == [1, 2, 3]


@pytest.mark.parametrize("name", PRESETS)
def test_long_hostile_lines_take_linear_time(name: str) -> None:
    """A regular expression that backtracks quadratically stalls on one long line; every preset must not."""
    fmt = load_formats()[name]
    ctx = TimeContext(reference=NOW)
    prefixes = ("2026-11-20T08:00:01.1Z\tINFO\t", "2026-11-20 08:00:01.123  INFO 1 --- [", "2026-11-20 08:00:01,123 [",
                "2015-07-29 17:41:44,747 - INFO  [", "<13>1 2026-11-20T08:00:00Z h ", "17/06/09 20:10:40 INFO ")
    for prefix in prefixes:
        for unit in ("\t", " ", "a:", "] ", "a@1:", '"a" '):
            line = prefix + unit * (40_000 // len(unit))
            started = time.perf_counter()
            fmt.match(line, ctx)
            assert time.perf_counter() - started < 0.25, (prefix, unit)


def test_hosts_and_environments_from_lines_are_names_the_codec_accepts(tmp_path: Path) -> None:
    line = ('{"time": "2026-11-20T08:00:00Z", "msg": "m", "host": "web 01 (eu)", "env": "pre prod", '
            '"service": "api"}')
    e = one(line, "jsonl", environment="staging")
    assert (e["host"], e["environment"], e["service"]) == ("unknown", "staging", "api")
    assert e["attributes"]["host_in_line"] == "web 01 (eu)" and e["attributes"]["environment_in_line"] == "pre prod"
    Codec().decode(Codec().encode(e))  # raises on a name the pipeline would dead-letter
    path = tmp_path / "a.log"
    path.write_text("")
    with pytest.raises(ReplayError, match="--service 'my service' is not a valid name"):
        LogFileReader(path, "generic", ReplayOptions(service="my service"))
