"""Parsers of real log formats into LogEvent fields.

Each parser turns one line into a dict of LogEvent fields (without event_id/environment, which the
reader adds), returns CONTINUATION for a line that belongs to the previous entry (a stack trace), or
None when the line is not in the format. Formats:

* ``generic``  ``TIMESTAMP LEVEL [component] message`` (log4j/logback/Python logging style); lines
  starting with whitespace or ``Caused by:`` continue the previous entry.
* ``access``   Apache/Nginx common and combined access logs, with an optional trailing request time.
* ``syslog``   RFC 3164 (``<PRI>Mmm dd hh:mm:ss host app[pid]: msg``, PRI optional) and RFC 5424.
* ``jsonl``    one JSON object per line; common field names (``@timestamp``, ``msg``, ``severity``,
  ``service.name``, ...) are mapped, every other scalar field goes to attributes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

CONTINUATION = object()
LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
_LEVEL_ALIASES = {
    "TRACE": "TRACE", "TRC": "TRACE", "FINEST": "TRACE", "FINER": "TRACE",
    "DEBUG": "DEBUG", "DBG": "DEBUG", "FINE": "DEBUG", "D": "DEBUG",
    "INFO": "INFO", "INF": "INFO", "NOTICE": "INFO", "INFORMATION": "INFO", "I": "INFO", "CONFIG": "INFO",
    "WARN": "WARN", "WARNING": "WARN", "WRN": "WARN", "W": "WARN",
    "ERROR": "ERROR", "ERR": "ERROR", "SEVERE": "ERROR", "E": "ERROR",
    "FATAL": "FATAL", "CRITICAL": "FATAL", "CRIT": "FATAL", "ALERT": "FATAL", "EMERG": "FATAL",
    "EMERGENCY": "FATAL", "PANIC": "FATAL", "F": "FATAL",
}
_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep",
                                           "oct", "nov", "dec"))}


def normalize_level(value: Any) -> str | None:
    """A schema level for a level name or number (syslog severity / Python logging number)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        n = int(value)
        if n >= 50:
            return "FATAL"
        if n >= 40:
            return "ERROR"
        if n >= 30:
            return "WARN"
        if n >= 20:
            return "INFO"
        if n >= 10:
            return "DEBUG"
        return "TRACE"
    return _LEVEL_ALIASES.get(str(value).strip().upper())


def to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})(?:[.,](?P<frac>\d{1,9}))?"
    r"\s?(?P<tz>Z|[+-]\d{2}:?\d{2}|UTC)?$"
)


def parse_iso(text: str) -> int | None:
    """ms since epoch for ISO-8601-like timestamps (T or space, . or , before fractions, Z/offset/none=UTC)."""
    m = _ISO.match(text.strip())
    if not m:
        return None
    frac = (m.group("frac") or "0")[:6].ljust(6, "0")
    tz = m.group("tz")
    try:
        dt = datetime.strptime(f"{m.group('date')} {m.group('time')}", "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    dt = dt.replace(microsecond=int(frac))
    if tz and tz not in ("Z", "UTC"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        dt = dt.replace(tzinfo=timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))))
    else:
        dt = dt.replace(tzinfo=UTC)
    return to_ms(dt)


def parse_epoch(value: float) -> int:
    """Epoch seconds, milliseconds or microseconds, told apart by magnitude."""
    if value > 1e14:
        return int(value / 1000)
    if value > 1e11:
        return int(value)
    return int(value * 1000)


# --- generic -----------------------------------------------------------------------------------
_GENERIC = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?\s?(?:Z|[+-]\d{2}:?\d{2}|UTC)?)\s+"
    r"(?:\[(?P<thread>[^\]]*)\]\s+)?"
    r"(?P<level>[A-Za-z]{1,11})\s*:?\s+"
    r"(?:\[(?P<component>[^\]]+)\]|(?P<logger>[\w.$-]+(?:\s*\([^)]*\))?)\s*[:-])\s*"
    r"(?P<message>.*)$"
)


# Lines of a stack trace that follow an entry: an exception class line (Java or Python), "Caused by:",
# a Python traceback header, or anything indented.
_STACK_LINE = re.compile(
    r"^(?:[ \t]|Caused by:|Suppressed:|Traceback \(most recent call last\)|"
    r"(?:[A-Za-z_$][\w$]*\.)*[A-Za-z_$][\w$]*(?:Exception|Error|Throwable|Fault)(?::|$))"
)


_EXCEPTION_CLASS = re.compile(r"^((?:[A-Za-z_$][\w$]*\.)*[A-Za-z_$][\w$]*(?:Exception|Error|Throwable|Fault))(?::|$)")


def exception_type(line: str) -> str | None:
    """The exception class a stack-trace line names (``java.sql.SQLException: ...`` -> the class)."""
    m = _EXCEPTION_CLASS.match(line.removeprefix("Caused by: "))
    return m.group(1) if m else None


def parse_generic(line: str) -> dict[str, Any] | object | None:
    if _STACK_LINE.match(line):
        return CONTINUATION
    m = _GENERIC.match(line)
    if not m:
        return None
    level = normalize_level(m.group("level"))
    ts = parse_iso(m.group("ts"))
    if level is None or ts is None:
        return None
    component = m.group("component") or m.group("logger")
    record: dict[str, Any] = {"timestamp": ts, "level": level, "logger": component, "message": m.group("message"),
                              "attributes": {}}
    if component:
        record["component"] = component
    if m.group("thread"):
        record["attributes"]["thread"] = m.group("thread")
    return record


# --- access logs -------------------------------------------------------------------------------
_ACCESS = re.compile(
    r'^(?P<client>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<ts>[^\]]+)\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+|-)'
    r'(?: "(?P<referer>[^"]*)" "(?P<agent>[^"]*)")?'
    r'(?P<rest>.*)$'
)
_CLF_TIME = re.compile(r"^(\d{2})/(\w{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))? ([+-]\d{4})$")
_REQUEST_TIME = re.compile(r"(?:^|\s)(?:rt=|request_time=|rt:)?(?P<secs>\d+\.\d{1,6})(?:\s|$)")
_UPSTREAM = re.compile(r"upstream=(?P<upstream>\S+)")


def parse_clf_time(text: str) -> int | None:
    m = _CLF_TIME.match(text.strip())
    if not m:
        return None
    day, mon, year, hh, mm, ss, frac, tz = m.groups()
    month = _MONTHS.get(mon.lower())
    if month is None:
        return None
    sign = 1 if tz[0] == "+" else -1
    offset = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5])))
    try:
        dt = datetime(int(year), month, int(day), int(hh), int(mm), int(ss),
                      int((frac or "0").ljust(6, "0")), tzinfo=offset)
    except ValueError:
        return None
    return to_ms(dt)


def parse_access(line: str) -> dict[str, Any] | None:
    m = _ACCESS.match(line)
    if not m:
        return None
    ts = parse_clf_time(m.group("ts"))
    if ts is None:
        return None
    status = int(m.group("status"))
    parts = m.group("request").split()
    method = parts[0] if len(parts) >= 2 and parts[0].isalpha() and parts[0].isupper() else None
    path = parts[1] if method and len(parts) >= 2 else None
    attributes = {"client_ip": m.group("client")}
    if m.group("user") not in ("-", ""):
        attributes["user"] = m.group("user")
    if m.group("bytes") not in ("-", None):
        attributes["bytes"] = m.group("bytes")
    if m.group("referer") not in (None, "-", ""):
        attributes["referer"] = m.group("referer")
    if m.group("agent") not in (None, "-", ""):
        attributes["user_agent"] = m.group("agent")
    if len(parts) >= 3:
        attributes["protocol"] = parts[2]
    rest = m.group("rest") or ""
    latency = None
    rt = _REQUEST_TIME.search(rest)
    if rt:
        latency = round(float(rt.group("secs")) * 1000, 3)
    upstream = _UPSTREAM.search(rest)
    if upstream:
        attributes["upstream"] = upstream.group("upstream")
    level = "ERROR" if status >= 500 else "WARN" if status >= 400 else "INFO"
    return {"timestamp": ts, "level": level, "logger": "access", "message": line, "http_method": method,
            "http_path": path, "http_status": status, "latency_ms": latency, "attributes": attributes}


# --- syslog ------------------------------------------------------------------------------------
_SEVERITY = ("FATAL", "FATAL", "FATAL", "ERROR", "WARN", "INFO", "INFO", "DEBUG")
_RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>(?P<version>\d{1,2}) (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) "
    r"(?P<msgid>\S+) (?P<sd>-|(?:\[.*?\])+)(?: (?P<msg>.*))?$"
)
_RFC3164 = re.compile(
    r"^(?:<(?P<pri>\d{1,3})>)?(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<time>\d{2}:\d{2}:\d{2}) "
    r"(?P<host>\S+) (?P<tag>[^:\[\s]+)(?:\[(?P<pid>[^\]]+)\])?: ?(?P<msg>.*)$"
)
_KEYWORD_LEVEL = (
    (re.compile(r"\b(panic|fatal|emerg(ency)?|out of memory|segfault|kernel bug)\b", re.I), "FATAL"),
    (re.compile(r"\b(error|err|fail(ed|ure)?|denied|refused|unreachable|timed? ?out|exception)\b", re.I), "ERROR"),
    (re.compile(r"\b(warn(ing)?|retry(ing)?|deprecated|degraded)\b", re.I), "WARN"),
)
_SD_PARAM = re.compile(r'(\w[\w.-]*)="((?:[^"\\]|\\.)*)"')


def level_from_text(message: str) -> str:
    """A level from keywords, for lines that carry no severity (syslog files without PRI)."""
    for pattern, level in _KEYWORD_LEVEL:
        if pattern.search(message):
            return level
    return "INFO"




def parse_syslog(line: str, now: datetime | None = None, year: int | None = None) -> dict[str, Any] | None:
    m = _RFC5424.match(line)
    if m:
        pri = int(m.group("pri"))
        ts = parse_iso(m.group("ts").replace("T", " ", 1)) if m.group("ts") != "-" else None
        if ts is None or pri > 191:
            return None
        attributes = {"facility": str(pri // 8)}
        for name in ("procid", "msgid"):
            if m.group(name) != "-":
                attributes[name] = m.group(name)
        if m.group("sd") != "-":
            for key, value in _SD_PARAM.findall(m.group("sd")):
                attributes[f"sd.{key}"] = value.replace('\\"', '"')
        app = m.group("app")
        host = m.group("host")
        return {"timestamp": ts, "level": _SEVERITY[pri % 8], "host": None if host == "-" else host,
                "service": None if app == "-" else app, "logger": None if app == "-" else app,
                "message": (m.group("msg") or "").lstrip("\ufeff"), "attributes": attributes}
    m = _RFC3164.match(line)
    if not m:
        return None
    month = _MONTHS.get(m.group("mon").lower())
    if month is None:
        return None
    now = now or datetime.now(tz=UTC)
    hh, mm, ss = (int(x) for x in m.group("time").split(":"))
    try:
        dt = datetime(year or now.year, month, int(m.group("day")), hh, mm, ss, tzinfo=UTC)
        if year is None and dt > now + timedelta(days=2):  # RFC 3164 has no year: a date ahead is last year's
            dt = dt.replace(year=now.year - 1)
    except ValueError:
        return None
    message = m.group("msg")
    attributes: dict[str, str] = {}
    if m.group("pid"):
        attributes["pid"] = m.group("pid")
    if m.group("pri") is not None:
        pri = int(m.group("pri"))
        if pri > 191:
            return None
        level = _SEVERITY[pri % 8]
        attributes["facility"] = str(pri // 8)
    else:
        level = level_from_text(message)
    return {"timestamp": to_ms(dt), "level": level, "host": m.group("host"), "service": m.group("tag"),
            "logger": m.group("tag"), "message": message, "attributes": attributes}


# --- JSON lines --------------------------------------------------------------------------------
_FIELDS: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "@timestamp", "time", "ts", "datetime", "date", "asctime", "eventTime"),
    "level": ("level", "severity", "log.level", "levelname", "loglevel", "lvl", "severity_text"),
    "message": ("message", "msg", "log", "text", "body", "event"),
    "service": ("service", "service.name", "service_name", "app", "application", "serviceName", "component"),
    "host": ("host", "host.name", "hostname", "host_name", "pod", "instance"),
    "logger": ("logger", "logger_name", "log.logger", "name", "loggerName", "category"),
    "trace_id": ("trace_id", "traceId", "trace.id", "traceid", "dd.trace_id"),
    "span_id": ("span_id", "spanId", "span.id", "spanid", "dd.span_id"),
    "http_method": ("http_method", "method", "http.method", "http.request.method", "request_method"),
    "http_path": ("http_path", "path", "url.path", "uri", "request_uri", "http.target", "url"),
    "http_status": ("http_status", "status", "status_code", "http.status_code", "http.response.status_code"),
    "latency_ms": ("latency_ms", "duration_ms", "event.duration_ms", "response_time_ms", "elapsed_ms", "took_ms",
                   "request_time_ms"),
    "error_type": ("error_type", "error.type", "exception", "exc_type", "exception.type", "error_kind"),
    "environment": ("environment", "env", "deployment.environment"),
    "event_id": ("event_id", "eventId", "id", "uuid"),
}
_SECONDS_LATENCY = ("duration", "request_time", "elapsed", "response_time")


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _take(flat: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in flat and flat[name] not in (None, ""):
            return flat.pop(name)
    return None


def _timestamp(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return parse_epoch(float(value))
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return parse_epoch(float(text))
        return parse_iso(text)
    return None


def _int_or_none(value: Any) -> int | None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if -(2**31) <= n < 2**31 else None


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_jsonl(line: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    flat = _flatten(obj)
    ts = _timestamp(_take(flat, _FIELDS["timestamp"]))
    message = _take(flat, _FIELDS["message"])
    if ts is None or message is None:
        return None
    record: dict[str, Any] = {"timestamp": ts, "message": message if isinstance(message, str) else json.dumps(message)}
    level_raw = _take(flat, _FIELDS["level"])
    record["level"] = normalize_level(level_raw) or "INFO"
    for name in ("service", "host", "logger", "trace_id", "span_id", "http_method", "http_path", "error_type",
                 "environment", "event_id"):
        value = _take(flat, _FIELDS[name])
        record[name] = None if value is None else str(value)
    record["http_status"] = _int_or_none(_take(flat, _FIELDS["http_status"]))
    latency = _float_or_none(_take(flat, _FIELDS["latency_ms"]))
    if latency is None:
        seconds = _float_or_none(_take(flat, _SECONDS_LATENCY))
        latency = None if seconds is None else round(seconds * 1000, 3)
    record["latency_ms"] = latency
    attributes = flat.pop("attributes", None)
    attrs = {k[len("attributes."):]: v for k, v in list(flat.items()) if k.startswith("attributes.")}
    for key in attrs:
        flat.pop(f"attributes.{key}")
    if isinstance(attributes, dict):
        attrs.update(attributes)
    attrs.update(flat)
    record["attributes"] = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in attrs.items()
                            if v is not None}
    return record


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    parse: Callable[[str], Any]
    multiline: bool = False


def make_formats(year: int | None = None, now: datetime | None = None) -> dict[str, Format]:
    return {
        "generic": Format("generic", "TIMESTAMP LEVEL [component] message (log4j/logback/Python logging)",
                          parse_generic, multiline=True),
        "access": Format("access", "Apache/Nginx access log, common or combined (+ optional request time)",
                         parse_access),
        "syslog": Format("syslog", "syslog: RFC 3164 (PRI optional) or RFC 5424",
                         lambda line: parse_syslog(line, now=now, year=year)),
        "jsonl": Format("jsonl", "JSON lines: one object per line, common field names mapped", parse_jsonl),
    }


FORMAT_ALIASES = {"nginx": "access", "apache": "access", "clf": "access", "combined": "access", "json": "jsonl",
                  "ndjson": "jsonl", "rfc5424": "syslog", "rfc3164": "syslog", "log4j": "generic",
                  "logback": "generic", "text": "generic"}
FORMAT_NAMES = ("generic", "access", "syslog", "jsonl")


def resolve_format(name: str) -> str:
    key = name.strip().lower()
    key = FORMAT_ALIASES.get(key, key)
    if key not in FORMAT_NAMES:
        raise ValueError(f"unknown log format {name!r}; choose one of: {', '.join(FORMAT_NAMES)} "
                         f"(aliases: {', '.join(sorted(FORMAT_ALIASES))})")
    return key
