"""Replay parsers: each format's fields, malformed lines counted (never dropped), re-timing, samples."""

from __future__ import annotations

import gzip
import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from incident_contracts.codec import Codec
from log_generator.replay import LogFileReader, ReplayError, ReplayOptions, resolve_format
from log_generator.replay.formats import (
    CONTINUATION,
    normalize_level,
    parse_access,
    parse_generic,
    parse_jsonl,
    parse_syslog,
)

SAMPLES = Path(__file__).resolve().parents[2] / "log-generator" / "samples"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_generic_line_fields() -> None:
    r = parse_generic("2026-11-20 08:00:01,123 ERROR [order-service] Payment failed for ORD-1")
    assert r["timestamp"] == ms("2026-11-20T08:00:01.123+00:00")
    assert (r["level"], r["logger"], r["message"]) == ("ERROR", "order-service", "Payment failed for ORD-1")
    r = parse_generic("2026-11-20T08:00:01.5+02:00 WARNING [main] c.s.Foo - slow")
    assert r is not None and r["level"] == "WARN" and r["timestamp"] == ms("2026-11-20T06:00:01.500+00:00")
    r = parse_generic("2026-11-20 08:00:01 INFO com.shop.Api: started")
    assert r is not None and r["logger"] == "com.shop.Api" and r["message"] == "started"
    assert parse_generic("\tat com.shop.Foo.bar(Foo.java:12)") is CONTINUATION
    assert parse_generic("java.lang.IllegalStateException: boom") is CONTINUATION
    for bad in ("hello world", "2026-11-20 08:00:01 NOTALEVEL [x] y", "2026-13-45 08:00:01 INFO [x] y"):
        assert parse_generic(bad) is None, bad


def test_access_line_fields() -> None:
    line = ('203.0.113.7 - alice [20/Nov/2026:08:00:01 +0100] "POST /api/v1/orders?x=1 HTTP/1.1" 503 1234 '
            '"https://shop.example/" "curl/8.5.0" 2.345 upstream=order-service:8080')
    r = parse_access(line)
    assert r["timestamp"] == ms("2026-11-20T07:00:01+00:00")
    assert (r["http_method"], r["http_path"], r["http_status"], r["latency_ms"], r["level"]) == \
        ("POST", "/api/v1/orders?x=1", 503, 2345.0, "ERROR")
    assert r["attributes"] == {"client_ip": "203.0.113.7", "user": "alice", "bytes": "1234",
                               "referer": "https://shop.example/", "user_agent": "curl/8.5.0",
                               "protocol": "HTTP/1.1", "upstream": "order-service:8080"}
    common = parse_access('10.0.0.1 - - [20/Nov/2026:08:00:01 +0000] "GET / HTTP/1.0" 404 -')
    assert common["level"] == "WARN" and common["latency_ms"] is None and "bytes" not in common["attributes"]
    for bad in ('10.0.0.1 - - [20/Nov/2026:08:00:01 +0000] "GET / HTTP/1.0" abc 1',
                '10.0.0.1 - - [31/Feb/2026:08:00:01 +0000] "GET / HTTP/1.0" 200 1', "plain text"):
        assert parse_access(bad) is None, bad


def test_syslog_rfc3164_and_rfc5424() -> None:
    r = parse_syslog("<11>Nov 20 07:59:58 web-01 sshd[2231]: Failed password for root", now=NOW)
    assert r["timestamp"] == ms("2026-11-20T07:59:58+00:00")
    assert (r["level"], r["host"], r["service"], r["attributes"]["pid"]) == ("ERROR", "web-01", "sshd", "2231")
    no_pri = parse_syslog("Nov  3 01:02:03 db-1 kernel: Out of memory: Killed process 4121 (java)", now=NOW)
    assert no_pri["level"] == "FATAL" and no_pri["service"] == "kernel"
    assert parse_syslog("Dec 31 23:59:59 h app: x", now=NOW)["timestamp"] == ms("2025-12-31T23:59:59+00:00")
    assert parse_syslog("Nov 20 00:00:00 h app: x", now=NOW, year=2024)["timestamp"] == ms(
        "2024-11-20T00:00:00+00:00")
    r = parse_syslog('<165>1 2026-11-20T08:00:25.003Z app-02 payment-service 4123 ID47 '
                     '[meta@32473 region="eu-west-1"] declined', now=NOW)
    assert r["timestamp"] == ms("2026-11-20T08:00:25.003+00:00") and r["level"] == "INFO"
    assert (r["host"], r["service"], r["message"]) == ("app-02", "payment-service", "declined")
    assert r["attributes"]["sd.region"] == "eu-west-1" and r["attributes"]["msgid"] == "ID47"
    for bad in ("<999>Nov 20 08:00:00 h app: x", "Foo 20 08:00:00 h app: x", "not syslog"):
        assert parse_syslog(bad, now=NOW) is None, bad


def test_jsonl_field_mapping() -> None:
    r = parse_jsonl('{"@timestamp": "2026-11-20T08:00:00.250Z", "log": {"level": "warning"}, "message": "m", '
                    '"service": {"name": "users"}, "host": {"name": "u-1"}, "trace": {"id": "abc"}, '
                    '"http": {"request": {"method": "GET"}, "response": {"status_code": 404}}, '
                    '"url": {"path": "/u/1"}, "event": {"duration_ms": 12.5}, "region": "eu", "n": 3}')
    assert r["timestamp"] == ms("2026-11-20T08:00:00.250+00:00")
    assert (r["level"], r["service"], r["host"], r["trace_id"]) == ("WARN", "users", "u-1", "abc")
    assert (r["http_method"], r["http_status"], r["http_path"], r["latency_ms"]) == ("GET", 404, "/u/1", 12.5)
    assert r["attributes"] == {"region": "eu", "n": "3"}
    epoch = parse_jsonl('{"time": 1795161600123, "level": 40, "msg": "x"}')
    assert epoch["timestamp"] == 1795161600123 and epoch["level"] == "ERROR"
    assert parse_jsonl('{"ts": 1795161600.5, "msg": "x"}')["timestamp"] == 1795161600500
    for bad in ('{"message": "no time"}', '{"time": "2026-11-20T08:00:00Z"', '[1, 2]', '{"ts": "soon", "msg": 1}'):
        assert parse_jsonl(bad) is None, bad


@pytest.mark.parametrize("value,level", [("warning", "WARN"), ("CRITICAL", "FATAL"), ("severe", "ERROR"),
                                         ("notice", "INFO"), (10, "DEBUG"), (50, "FATAL"), ("nope", None)])
def test_level_names(value, level) -> None:
    assert normalize_level(value) == level


@pytest.mark.parametrize(("name", "fmt", "parsed", "unparsed"), [
    # generic.log: "this line is not a log entry at all" follows a stack trace, so it joins that entry; the
    # line with the unknown level looks like an entry of its own and is rejected.
    ("generic.log", "generic", 60, 1), ("access.log", "access", 60, 3), ("syslog.log", "syslog", 40, 2),
    ("app.jsonl", "jsonl", 50, 3),
])
def test_sample_files_every_line_accounted_for(name: str, fmt: str, parsed: int, unparsed: int,
                                                tmp_path: Path) -> None:
    unparsed_file = tmp_path / "unparsed.tsv"
    reader = LogFileReader(SAMPLES / name, fmt, ReplayOptions(environment="staging"), unparsed_path=unparsed_file)
    records = list(reader)
    stats = reader.stats
    assert (stats.parsed, stats.unparsed) == (parsed, unparsed)
    assert len(records) == parsed
    lines = (SAMPLES / name).read_text().splitlines()
    assert stats.lines_read == len(lines) == stats.parsed + stats.unparsed + stats.blank + stats.continuation
    assert len(unparsed_file.read_text().splitlines()) == unparsed == len(stats.unparsed_samples)
    codec = Codec()
    for record in records:
        assert record["environment"] == "staging"
        assert codec.decode(codec.encode(record))["message"] == record["message"]
    assert len({r["event_id"] for r in records}) == parsed, "stable, distinct ids per line"
    again = list(LogFileReader(SAMPLES / name, fmt, ReplayOptions(environment="staging")))
    assert [r["event_id"] for r in again] == [r["event_id"] for r in records]


def test_generic_joins_stack_traces_to_their_entry() -> None:
    records = list(LogFileReader(SAMPLES / "generic.log", "generic"))
    errors = [r for r in records if r["level"] == "ERROR"]
    assert errors and all("\tat com.zaxxer.hikari" in r["message"] for r in errors)
    assert {r["error_type"] for r in errors} == {"java.sql.SQLTransientConnectionException"}


def test_retime_keeps_the_gaps(tmp_path: Path) -> None:
    original = list(LogFileReader(SAMPLES / "access.log", "access"))
    now = 1_900_000_000_000
    retimed = list(LogFileReader(SAMPLES / "access.log", "access", ReplayOptions(retime=True, now_ms=now)))
    assert retimed[0]["timestamp"] == now
    assert [b["timestamp"] - a["timestamp"] for a, b in itertools.pairwise(original)] == \
        [b["timestamp"] - a["timestamp"] for a, b in itertools.pairwise(retimed)]


def test_gzip_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "app.log.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("2026-11-20 08:00:00 INFO [a] one\n\n2026-11-20 08:00:01 ERROR [a] two\n")
    reader = LogFileReader(path, "generic", ReplayOptions(service="billing", host="b-1"))
    records = list(reader)
    assert [(r["service"], r["host"], r["level"]) for r in records] == [("billing", "b-1", "INFO"),
                                                                         ("billing", "b-1", "ERROR")]
    assert reader.stats.blank == 1


def test_clear_errors_for_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="not found"):
        LogFileReader(tmp_path / "missing.log", "generic")
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        resolve_format("xml")
    assert resolve_format("nginx") == "access" and resolve_format("JSON") == "jsonl"
