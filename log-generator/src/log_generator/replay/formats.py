"""Log formats, declared as data: a template with named fields, a regular expression with named
groups, JSON lines or logfmt. One implementation reads every format, the presets shipped in
``presets.yaml`` and the ones a user declares in the file named by ``LOG_FORMATS_FILE``.

A format turns one line into a dict of LogEvent fields (without event_id/environment, which the
parser adds) or a reason why the line is not in the format. The stateful parts (multi-line entries,
partial lines, choosing a format) are in :mod:`log_generator.replay.parser`.

Field names of a format have a meaning (see ``docs/log-formats.md``): ``timestamp`` (or ``date`` and
``time``, or ``epoch``), ``level``, ``message``, ``service``, ``host``, ``logger``, ``component``,
``trace_id``, ``span_id``, ``pri`` (syslog priority), ``status`` (HTTP status), ``request``
(``METHOD PATH PROTOCOL``), ``request_time`` (seconds), ``latency_ms``, ``error_type``, ``sd`` (RFC 5424
structured data). Every other field goes to the attributes; names starting with ``_`` are matched and
dropped. This module imports neither Kafka nor numpy.
"""

from __future__ import annotations

import calendar
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

PRESETS_FILE = Path(__file__).with_name("presets.yaml")
CONTINUATION = object()
LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
_LEVEL_ALIASES = {
    "TRACE": "TRACE", "TRC": "TRACE", "FINEST": "TRACE", "FINER": "TRACE", "VERBOSE": "TRACE",
    "DEBUG": "DEBUG", "DBG": "DEBUG", "FINE": "DEBUG",
    "INFO": "INFO", "INF": "INFO", "NOTICE": "INFO", "INFORMATION": "INFO", "INFORMATIONAL": "INFO",
    "CONFIG": "INFO", "NOTE": "INFO",
    "WARN": "WARN", "WARNING": "WARN", "WRN": "WARN",
    "ERROR": "ERROR", "ERR": "ERROR", "SEVERE": "ERROR", "FAILURE": "ERROR",
    "FATAL": "FATAL", "CRITICAL": "FATAL", "CRIT": "FATAL", "ALERT": "FATAL", "EMERG": "FATAL",
    "EMERGENCY": "FATAL", "PANIC": "FATAL", "DPANIC": "FATAL",
}
# Single letters (glog/klog, Android, some Go loggers): only for formats that declare `level_letters`.
_LETTER_LEVELS = {"T": "TRACE", "V": "TRACE", "D": "DEBUG", "I": "INFO", "N": "INFO", "W": "WARN", "E": "ERROR",
                  "F": "FATAL", "C": "FATAL"}
_TRACE_N = re.compile(r"^(?:TRACE|DEBUG)[1-8]$")  # Apache httpd trace1..trace8, debug1..
_SYSLOG_SEVERITY = ("FATAL", "FATAL", "FATAL", "ERROR", "WARN", "INFO", "INFO", "DEBUG")


class FormatError(ValueError):
    """A formats file or one format in it is invalid; the message names the file, the format and the key."""


def normalize_level(value: Any, letters: bool = False, scale: str = "python") -> str | None:
    """A LogEvent level for a level name or number.

    Numbers are Python logging numbers (10 DEBUG ... 50 CRITICAL) unless ``scale`` is ``syslog``
    (0 emerg ... 7 debug). Single letters (W, E, I, ...) count only with ``letters``.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int | float):
        n = int(value)
        if scale == "syslog":
            return _SYSLOG_SEVERITY[n] if 0 <= n <= 7 else None
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
    key = str(value).strip().upper()
    level = _LEVEL_ALIASES.get(key)
    if level is None and letters and len(key) == 1:
        level = _LETTER_LEVELS.get(key)
    if level is None and _TRACE_N.match(key):
        level = key[:5]
    return level


_KEYWORD_LEVEL = (
    (re.compile(r"\b(panic|fatal|emerg(ency)?|out of memory|segfault|kernel bug)\b", re.I), "FATAL"),
    (re.compile(r"\b(error|err|fail(ed|ure)?|denied|refused|unreachable|timed? ?out|exception)\b", re.I), "ERROR"),
    (re.compile(r"\b(warn(ing)?|retry(ing)?|deprecated|degraded)\b", re.I), "WARN"),
)


def level_from_text(message: str) -> str:
    """A level from keywords, for lines that carry no severity (syslog without PRI, container output)."""
    for pattern, level in _KEYWORD_LEVEL:
        if pattern.search(message):
            return level
    return "INFO"


# --- timestamps --------------------------------------------------------------------------------
def to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})(?:[.,](?P<frac>\d{1,9}))?"
    r"\s?(?P<tz>Z|[+-]\d{2}:?\d{2}|UTC)?$"
)


def _iso_datetime(text: str, zone: tzinfo | None = UTC) -> datetime | None:
    m = _ISO.match(text.strip())
    if not m:
        return None
    try:
        y, mo, d = (int(x) for x in m.group("date").split("-"))
        hh, mm, ss = (int(x) for x in m.group("time").split(":"))
        dt = datetime(y, mo, d, hh, mm, ss, int((m.group("frac") or "0")[:6].ljust(6, "0")))
    except ValueError:
        return None
    tz = m.group("tz")
    if tz and tz not in ("Z", "UTC"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        return dt.replace(tzinfo=timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))))
    if tz:
        return dt.replace(tzinfo=UTC)
    return dt.replace(tzinfo=zone) if zone is not None else dt


def parse_iso(text: str) -> int | None:
    """ms since epoch for ISO-8601-like timestamps (T or space, . or , before fractions, Z/offset/none=UTC)."""
    dt = _iso_datetime(text)
    return None if dt is None else to_ms(dt)


def parse_epoch(value: float) -> int:
    """Epoch seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude."""
    if value > 1e17:
        return int(value / 1_000_000)
    if value > 1e14:
        return int(value / 1000)
    if value > 1e11:
        return int(value)
    return int(value * 1000)


def zone_of(name: str | None) -> tzinfo | None:
    """A tzinfo for ``UTC``, an IANA name (``Europe/Paris``) or an offset (``+02:00``); None for None."""
    if name is None or name == "":
        return None
    text = str(name).strip()
    if text.upper() in ("UTC", "Z", "GMT"):
        return UTC
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", text)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use UTC, an IANA name such as Europe/Paris, "
                         "or an offset such as +02:00") from None


@dataclass(frozen=True)
class TimeContext:
    """What a timestamp without a year, a date or a zone is completed with.

    ``reference`` is the moment the lines are known to be older than (the file's mtime, else now);
    ``year`` forces the year of yearless timestamps; ``zone`` overrides every format's zone and
    ``default_zone`` applies when neither the line nor the format says.
    """

    reference: datetime | None = None
    year: int | None = None
    zone: tzinfo | None = None
    default_zone: tzinfo = UTC

    def now(self) -> datetime:
        return self.reference or datetime.now(tz=UTC)


_MONTH_NUMBER = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep",
                                                  "oct", "nov", "dec"))}
# strptime directives read by the compiled fast path (anything else falls back to datetime.strptime).
_DIRECTIVES = {"Y": r"(?P<Y>\d{4})", "y": r"(?P<y>\d{2})", "m": r"(?P<m>\d{1,2})", "d": r"\s?(?P<d>\d{1,2})",
               "H": r"(?P<H>\d{1,2})", "M": r"(?P<M>\d{2})", "S": r"(?P<S>\d{2})", "f": r"(?P<f>\d{1,9})",
               "b": r"(?P<b>[A-Za-z]{3})", "a": r"[A-Za-z]{3}", "z": r"(?P<z>Z|[+-]\d{2}:?\d{2})", "%": "%"}


def _fast_regex(layout: str) -> re.Pattern[str] | None:
    out, i = [], 0
    while i < len(layout):
        ch = layout[i]
        if ch == "%" and i + 1 < len(layout):
            directive = _DIRECTIVES.get(layout[i + 1])
            if directive is None:
                return None
            out.append(directive)
            i += 2
        elif ch.isspace():
            out.append(r"\s+")
            i += 1
            while i < len(layout) and layout[i].isspace():
                i += 1
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("^" + "".join(out) + "$")


class TimestampParser:
    """One of a format's timestamp layouts: ``iso8601``, ``epoch`` or a strptime layout (``%d/%b/%Y:%H:%M:%S %z``).

    A layout without a year takes the year of the reference (the file's mtime, else now), or the year
    before when that puts the line more than a day after the reference; a layout without a date takes the
    reference's date, or the day before when that puts the line more than an hour after it. A time
    without a zone is in `zone`."""

    def __init__(self, layout: str):
        self.layout = layout
        self.kind = layout if layout in ("iso8601", "epoch") else "strptime"
        self.has_year = any(d in layout for d in ("%Y", "%y", "%G"))
        self.has_date = any(d in layout for d in ("%d", "%j", "%m", "%b", "%B"))
        self.has_zone = "%z" in layout or "%Z" in layout
        pattern = layout
        if self.kind == "strptime" and not self.has_date:
            pattern = "%Y-%m-%d " + pattern
        elif self.kind == "strptime" and not self.has_year:
            pattern = "%Y " + pattern
        self.pattern = pattern
        self.fast = _fast_regex(layout) if self.kind == "strptime" else None
        unknown = sorted(set(re.findall(r"%(.)", layout)) - set("aAbBcdfGHIjmMpSuUVwWxXyYzZ%"))
        if self.kind == "strptime" and ("%" not in layout or unknown):
            raise ValueError(f"timestamp layout {layout!r}: " + (
                f"unknown directive(s) {', '.join('%' + u for u in unknown)}" if unknown else
                "no strptime directive; use iso8601, epoch or a layout such as '%Y-%m-%d %H:%M:%S'"))

    def parse(self, text: str, ctx: TimeContext, zone: tzinfo) -> int | None:
        if self.kind == "epoch":
            try:
                value = float(text)
            except ValueError:
                return None
            return parse_epoch(value) if value == value and abs(value) < 1e20 else None
        if self.kind == "iso8601":
            dt = _iso_datetime(text, zone)
            return None if dt is None else to_ms(dt)
        text = text.strip()
        try:
            if self.fast is not None:
                return self._parse_fast(text, ctx, zone)
            return self._parse_strptime(text, ctx, zone)
        except (ValueError, OverflowError):
            return None

    def _parse_fast(self, text: str, ctx: TimeContext, zone: tzinfo) -> int | None:
        m = self.fast.match(text)  # type: ignore[union-attr]
        if m is None:
            return None
        g = m.groupdict()
        tz = zone
        if g.get("z"):
            z = g["z"]
            if z == "Z":
                tz = UTC
            else:
                digits = z[1:].replace(":", "")
                sign = 1 if z[0] == "+" else -1
                tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        hour, minute, second = int(g.get("H") or 0), int(g.get("M") or 0), int(g.get("S") or 0)
        micro = int(g["f"][:6].ljust(6, "0")) if g.get("f") else 0
        if not self.has_date:
            now = ctx.now()
            local = now.astimezone(tz)
            dt = datetime(local.year, local.month, local.day, hour, minute, second, micro, tzinfo=tz)
            if dt > now + timedelta(hours=1):  # a time of day ahead of the reference: the day before
                dt -= timedelta(days=1)
            return to_ms(dt)
        if g.get("b"):
            month = _MONTH_NUMBER.get(g["b"].lower())
            if month is None:
                return None
        else:
            month = int(g.get("m") or 1)
        day = int(g.get("d") or 1)
        if g.get("Y"):
            year = int(g["Y"])
        elif g.get("y"):
            yy = int(g["y"])
            year = 2000 + yy if yy < 69 else 1900 + yy
        else:
            now = ctx.now()
            year = ctx.year or now.astimezone(tz).year
            if ctx.year is None and month == 2 and day == 29:
                while not calendar.isleap(year):  # Feb 29 without a year: the latest leap year up to the reference
                    year -= 1
            dt = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
            if ctx.year is None and dt > now + timedelta(days=1):  # a date ahead: last year's (last leap year's)
                year -= 1
                while month == 2 and day == 29 and not calendar.isleap(year):
                    year -= 1
                dt = dt.replace(year=year)
            return to_ms(dt)
        return to_ms(datetime(year, month, day, hour, minute, second, micro, tzinfo=tz))

    def _parse_strptime(self, text: str, ctx: TimeContext, zone: tzinfo) -> int | None:
        now = ctx.now()
        if not self.has_date:
            local_now = now.astimezone(zone)
            dt = datetime.strptime(f"{local_now:%Y-%m-%d} {text}", self.pattern)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=zone)
            if dt > now + timedelta(hours=1):
                dt -= timedelta(days=1)
            return to_ms(dt)
        if not self.has_year:
            year = ctx.year or now.astimezone(zone).year
            dt = datetime.strptime(f"{year} {text}", self.pattern)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=zone)
            if ctx.year is None and dt > now + timedelta(days=1):
                dt = datetime.strptime(f"{year - 1} {text}", self.pattern)
                if dt.tzinfo is None:
                    dt = dt.replace(tzinfo=zone)
            return to_ms(dt)
        dt = datetime.strptime(text, self.pattern)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=zone)
        return to_ms(dt)


# --- templates ---------------------------------------------------------------------------------
_DEFAULT_FIELD = {"message": ".*", "level": r"[A-Za-z]+\d?", "timestamp": r"\S+", "thread": r"[^\]]*"}
_TOKEN = re.compile(r"<(?P<name>[A-Za-z_]\w*)(?::(?P<regex>[^<>]+))?>|(?P<opt_open>\[\[)|(?P<opt_close>\]\])|"
                    r"(?P<space>\s+)")


def compile_template(template: str, fields: dict[str, str] | None = None) -> str:
    """The regular expression of a template: ``<name>`` or ``<name:regex>`` fields, a run of spaces
    matching any run of whitespace, ``[[ ... ]]`` an optional part, everything else literal."""
    fields = fields or {}
    out: list[str] = []
    pos = 0
    depth = 0
    for m in _TOKEN.finditer(template):
        out.append(re.escape(template[pos:m.start()]))
        pos = m.end()
        if m.group("name"):
            name = m.group("name")
            regex = m.group("regex") or fields.get(name) or _DEFAULT_FIELD.get(name, r"\S+")
            out.append(f"(?P<{name}>{regex})")
        elif m.group("opt_open"):
            depth += 1
            out.append("(?:")
        elif m.group("opt_close"):
            if depth == 0:
                raise ValueError("']]' closes no '[['")
            depth -= 1
            out.append(")?")
        else:
            out.append(r"\s+")
    if depth:
        raise ValueError("'[[' is never closed by ']]'")
    out.append(re.escape(template[pos:]))
    return "^" + "".join(out) + "$"


# --- logfmt ------------------------------------------------------------------------------------
_LOGFMT_PAIR = re.compile(r'\s*([^\s=]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))')


def parse_logfmt(line: str) -> dict[str, str] | None:
    """key=value pairs (values quoted with escapes, or bare); None unless the whole line is pairs."""
    out: dict[str, str] = {}
    pos = 0
    n = len(line)
    while pos < n:
        m = _LOGFMT_PAIR.match(line, pos)
        if not m:
            if line[pos:].strip():
                return None
            break
        quoted, bare = m.group(2), m.group(3)
        out[m.group(1)] = bare if quoted is None else quoted.replace('\\"', '"').replace("\\n", "\n").replace(
            "\\\\", "\\")
        pos = m.end()
    return out or None


# --- field roles --------------------------------------------------------------------------------
_JSON_FIELDS: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "@timestamp", "time", "ts", "datetime", "date", "asctime", "eventTime", "t"),
    "level": ("level", "severity", "log.level", "levelname", "loglevel", "lvl", "severity_text"),
    "message": ("message", "msg", "log", "text", "body", "event"),
    "service": ("service", "service.name", "service_name", "app", "application", "serviceName"),
    "host": ("host", "host.name", "hostname", "host_name", "pod", "instance"),
    "logger": ("logger", "logger_name", "log.logger", "name", "loggerName", "category", "component"),
    "trace_id": ("trace_id", "traceId", "trace.id", "traceid", "dd.trace_id"),
    "span_id": ("span_id", "spanId", "span.id", "spanid", "dd.span_id"),
    "http_method": ("http_method", "method", "http.method", "http.request.method", "request_method"),
    "http_path": ("http_path", "path", "url.path", "uri", "request_uri", "http.target", "url"),
    "http_status": ("http_status", "status", "status_code", "http.status_code", "http.response.status_code"),
    "latency_ms": ("latency_ms", "duration_ms", "event.duration_ms", "response_time_ms", "elapsed_ms", "took_ms",
                   "request_time_ms"),
    "request_time": ("duration", "request_time", "elapsed", "response_time"),
    "error_type": ("error_type", "error.type", "exception", "exc_type", "exception.type", "error_kind"),
    "environment": ("environment", "env", "deployment.environment"),
    "event_id": ("event_id", "eventId", "id", "uuid"),
}
_STRING_FIELDS = ("service", "host", "logger", "trace_id", "span_id", "http_method", "http_path", "error_type",
                  "environment", "event_id")
_REQUEST = re.compile(r"^(?P<method>[A-Z]{3,10}) (?P<path>\S+)(?: (?P<protocol>\S+))?")
_SD_PARAM = re.compile(r'(\w[\w.-]*)="((?:[^"\\]|\\.)*)"')
_EMPTY = (None, "", "-")

# Lines of a stack trace that follow an entry: an exception class line (Java or Python), "Caused by:",
# a Python traceback header, or anything indented.
DEFAULT_CONTINUATION = (r"^(?:[ \t]|Caused by:|Suppressed:|Traceback \(most recent call last\)|"
                        r"(?:[A-Za-z_$][\w$]*\.)*[A-Za-z_$][\w$]*(?:Exception|Error|Throwable|Fault)(?::|$)|"
                        r"\.\.\. \d+ more)")
_EXCEPTION_CLASS = re.compile(r"^((?:[A-Za-z_$][\w$]*\.)*[A-Za-z_$][\w$]*(?:Exception|Error|Throwable|Fault))(?::|$)")


def exception_type(line: str) -> str | None:
    """The exception class a stack-trace line names (``java.sql.SQLException: ...`` -> the class)."""
    m = _EXCEPTION_CLASS.match(line.removeprefix("Caused by: "))
    return m.group(1) if m else None


def _int_or_none(value: Any) -> int | None:
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return n if -(2**31) <= n < 2**31 else None


def _float_or_none(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if f == f and abs(f) < 1e15 else None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value).decode("utf-8", "replace")  # journald exports non-UTF-8 messages as byte arrays
    return json.dumps(value, ensure_ascii=False)


def _flatten(obj: dict[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < 8:
            flat.update(_flatten(value, name + ".", depth + 1))
        else:
            flat[name] = value
    return flat


# --- formats -----------------------------------------------------------------------------------
_KINDS = ("template", "regex", "json", "logfmt", "any_of")
_KEYS = {"description", "template", "regex", "json", "logfmt", "any_of", "fields", "timestamp", "timezone",
         "multiline", "continuation", "level_letters", "level_default", "level_scale", "levels", "message",
         "extract", "json_fields", "require", "drop", "partial", "detect", "aliases", "service"}


@dataclass
class Format:
    """One compiled format. `match(line, ctx)` returns the line's fields or the reason it does not match."""

    name: str
    description: str
    kind: str
    regex: re.Pattern[str] | None = None
    timestamps: tuple[TimestampParser, ...] = ()
    zone: tzinfo | None = None
    multiline: bool = False
    continuation: re.Pattern[str] | None = None
    level_letters: bool = False
    level_default: str | None = None  # a level, "keywords" (from the message) or "http_status"
    level_scale: str = "python"
    levels: dict[str, str] = field(default_factory=dict)
    message_is_line: bool = False
    extract: dict[str, tuple[re.Pattern[str], ...]] = field(default_factory=dict)
    json_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    require: tuple[str, ...] = ()
    drop: frozenset[str] = frozenset()
    partial: tuple[str, str] | None = None  # (field, value): the line continues in the next one
    detect: bool = True
    aliases: tuple[str, ...] = ()
    service: str | None = None  # a fixed service name for every line of the format
    members: tuple[Format, ...] = ()
    source: str = "presets"

    # -- matching ---------------------------------------------------------------------------------
    def match(self, line: str, ctx: TimeContext) -> dict[str, Any] | str:
        if self.kind == "any_of":
            reasons = []
            for member in self.members:
                result = member.match(line, ctx)
                if isinstance(result, dict):
                    return result
                reasons.append(result)
            return min(reasons, key=lambda r: r.startswith("does not match"))
        if self.kind in ("json", "logfmt"):
            return self._match_structured(line, ctx)
        assert self.regex is not None
        m = self.regex.match(line)
        if m is None:
            return f"does not match the {self.name} format"
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        for source, patterns in self.extract.items():
            text = groups.get(source)
            if text is None:
                continue
            for pattern in patterns:
                found = pattern.search(text)
                if found:
                    for k, v in found.groupdict().items():
                        if v is not None:
                            groups.setdefault(k, v)
        return self._build(groups, line, ctx)

    def _timestamp(self, groups: dict[str, Any], ctx: TimeContext) -> int | str:
        zone = ctx.zone or self.zone or ctx.default_zone
        if "epoch" in groups:
            try:
                ms = parse_epoch(float(groups.pop("epoch")))
            except ValueError:
                return "the epoch field is not a number"
            fraction = groups.pop("fraction", None)
            if fraction and fraction.isdigit() and ms % 1000 == 0:
                ms += int(fraction[:3].ljust(3, "0"))
            return ms
        text = groups.pop("timestamp", None)
        if text is None and "time" in groups:
            text = f"{groups.pop('date')} {groups.pop('time')}" if "date" in groups else groups.pop("time")
        if text is None:
            if not self.timestamps:
                return -1  # the format has no time: the parser stamps the line with the time it was read
            return "no timestamp in the line"
        if isinstance(text, int | float) and not isinstance(text, bool):
            return parse_epoch(float(text))
        text = str(text)
        for parser in self.timestamps:
            ms = parser.parse(text, ctx, zone)
            if ms is not None:
                return ms
        layouts = ", ".join(p.layout for p in self.timestamps)
        return f"timestamp {text[:60]!r} is not in the format's layout ({layouts})"

    def _level(self, groups: dict[str, Any], message: str) -> str | bool | None:
        if "pri" in groups:
            pri = _int_or_none(groups.pop("pri"))
            if pri is None or not 0 <= pri <= 191:
                return False
            groups["facility"] = str(pri // 8)
            groups.pop("level", None)
            return _SYSLOG_SEVERITY[pri % 8]
        raw = groups.pop("level", None)
        if raw is not None:
            if isinstance(raw, str) and raw.strip().upper() in self.levels:
                return self.levels[raw.strip().upper()]
            level = normalize_level(raw, self.level_letters, self.level_scale)
            if level is None:
                groups["_bad_level"] = raw
                return False
            return level
        if self.level_default == "keywords":
            return level_from_text(message)
        if self.level_default == "http_status":
            return None  # decided from the status below
        return self.level_default or "INFO"

    def _build(self, groups: dict[str, Any], line: str, ctx: TimeContext,
               extra: dict[str, str] | None = None) -> dict[str, Any] | str:
        if self.partial is not None:
            flag_field, flag_value = self.partial
            partial = groups.get(flag_field) == flag_value
        else:
            partial = False
        ts = self._timestamp(groups, ctx)
        if isinstance(ts, str):
            return ts
        message = line if self.message_is_line else groups.pop("message", "")
        message = _text(message)
        level = self._level(groups, message)
        if level is False:
            bad = groups.get("_bad_level")
            return f"unknown level {str(bad)[:30]!r}" if bad is not None else "syslog priority out of range (0-191)"
        record: dict[str, Any] = {"timestamp": ts, "message": message}
        attributes: dict[str, str] = {}
        status = _int_or_none(groups.pop("status", None))
        record["http_status"] = status
        if level is None:
            level = "INFO" if status is None else "ERROR" if status >= 500 else "WARN" if status >= 400 else "INFO"
        record["level"] = level
        request = groups.pop("request", None)
        if isinstance(request, str):
            rm = _REQUEST.match(request)
            if rm:
                groups.setdefault("http_method", rm.group("method"))
                groups.setdefault("http_path", rm.group("path"))
                if rm.group("protocol"):
                    attributes["protocol"] = rm.group("protocol")
        latency = _float_or_none(groups.pop("latency_ms", None))
        seconds = groups.pop("request_time", None)
        if latency is None and seconds is not None:
            s = _float_or_none(seconds)
            latency = None if s is None else round(s * 1000, 3)
        record["latency_ms"] = latency
        component = groups.pop("component", None)
        if component not in _EMPTY and "logger" not in groups:
            groups["logger"] = component
        elif component not in _EMPTY:
            attributes["component"] = str(component)
        app = groups.pop("app", None)
        if app not in _EMPTY:
            groups.setdefault("service", app)
            groups.setdefault("logger", app)
        if self.service:
            groups["service"] = self.service
        for name in _STRING_FIELDS:
            value = groups.pop(name, None)
            record[name] = None if value in _EMPTY else str(value).strip() or None
        sd = groups.pop("sd", None)
        if isinstance(sd, str) and sd != "-":
            for key, value in _SD_PARAM.findall(sd):
                attributes[f"sd.{key}"] = value.replace('\\"', '"')
        for key, value in groups.items():
            if key.startswith("_") or key in self.drop or value in _EMPTY:
                continue
            attributes[key] = value.strip() if isinstance(value, str) else _text(value)
        if extra:
            for key, value in extra.items():
                attributes.setdefault(key, value)
        record["attributes"] = attributes
        if record["message"].startswith("\ufeff"):
            record["message"] = record["message"][1:]
        if partial:
            record["_partial"] = True
        return record

    def _match_structured(self, line: str, ctx: TimeContext) -> dict[str, Any] | str:
        if self.kind == "json":
            text = line.strip()
            if not text.startswith("{"):
                return "not a JSON object"
            try:
                obj = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                return "not valid JSON"
            if not isinstance(obj, dict):
                return "not a JSON object"
            flat = _flatten(obj)
        else:
            pairs = parse_logfmt(line)
            if pairs is None:
                return "not key=value pairs"
            flat = dict(pairs)
        missing = [k for k in self.require if k not in flat]
        if missing:
            return f"no {', '.join(missing)} field"
        groups: dict[str, Any] = {}
        for role, names in (self.json_fields or _JSON_FIELDS).items():
            for name in names:
                if name in flat and flat[name] not in (None, ""):
                    groups[role] = flat.pop(name)
                    break
        if "timestamp" not in groups:
            return "no timestamp field"
        if "message" not in groups:
            return "no message field"
        ts = groups["timestamp"]
        if isinstance(ts, str) and re.fullmatch(r"\d+(\.\d+)?", ts.strip()):
            groups["timestamp"] = parse_epoch(float(ts))
        elif isinstance(ts, bool) or not isinstance(ts, str | int | float):
            return "the timestamp field is neither a time nor a number"
        if isinstance(groups.get("message"), str):
            groups["message"] = groups["message"].rstrip("\n")
        if groups.get("level") is None and self.level_default is None:
            groups["level"] = "INFO"
        for key in ("http_status",):
            if key in groups:
                groups["status"] = groups.pop(key)
        attributes = {k[len("attributes."):]: v for k, v in flat.items() if k.startswith("attributes.")}
        for key, value in flat.items():
            if not key.startswith("attributes."):
                attributes.setdefault(key, value)
        extra = {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                 for k, v in attributes.items() if v is not None and k not in self.drop}
        if isinstance(groups.get("level"), str | int | float) and str(groups["level"]).strip().upper() not in \
                self.levels and normalize_level(groups["level"], self.level_letters, self.level_scale) is None:
            groups["level"] = "INFO"  # structured logs with an odd level name are still read
        return self._build(groups, line, ctx, extra)


# --- loading -----------------------------------------------------------------------------------
def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise FormatError(f"{where}: invalid regular expression: {exc}") from None


def _timestamp_parsers(layouts: list[Any], where: str) -> tuple[TimestampParser, ...]:
    try:
        return tuple(TimestampParser(str(t)) for t in layouts)
    except ValueError as exc:
        raise FormatError(f"{where}: {exc}") from None


def build_format(name: str, spec: dict[str, Any], known: dict[str, Format], source: str = "presets") -> Format:
    """A Format from its declaration (one entry of a formats file)."""
    where = f"{source}: format {name!r}"
    if not isinstance(spec, dict):
        raise FormatError(f"{where}: expected a table of keys, got {type(spec).__name__}")
    unknown = set(spec) - _KEYS
    if unknown:
        raise FormatError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_KEYS))}")
    kinds = [k for k in _KINDS if spec.get(k) not in (None, False)]
    if len(kinds) != 1:
        raise FormatError(f"{where}: give exactly one of template, regex, json: true, logfmt: true, any_of "
                          f"(got {', '.join(kinds) or 'none'})")
    kind = kinds[0]
    common: dict[str, Any] = {"name": name, "description": str(spec.get("description", "")), "kind": kind,
                              "source": source, "detect": bool(spec.get("detect", True)),
                              "aliases": tuple(str(a).lower() for a in _as_list(spec.get("aliases")))}
    if kind == "any_of":
        members = []
        for member in _as_list(spec["any_of"]):
            if member not in known:
                raise FormatError(f"{where}: any_of names {member!r}, which is not declared before it")
            members.append(known[member])
        multiline = spec.get("multiline", any(m.multiline for m in members))
        return Format(members=tuple(members), multiline=bool(multiline),
                      continuation=_compile(spec.get("continuation", DEFAULT_CONTINUATION), where), **common)
    regex = None
    if kind == "template":
        fields = spec.get("fields") or {}
        if not isinstance(fields, dict):
            raise FormatError(f"{where}: fields must map field names to regular expressions")
        try:
            regex = _compile(compile_template(str(spec["template"]), {str(k): str(v) for k, v in fields.items()}),
                             where)
        except ValueError as exc:
            raise FormatError(f"{where}: template: {exc}") from None
    elif kind == "regex":
        regex = _compile(str(spec["regex"]), where)
    timestamps = _as_list(spec.get("timestamp"))
    if kind in ("template", "regex") and not timestamps:
        raise FormatError(f"{where}: timestamp is required: a strptime layout such as '%Y-%m-%d %H:%M:%S,%f', "
                          "'iso8601', 'epoch', a list of them, or 'none' for lines without a time")
    if timestamps == ["none"]:
        timestamps = []
    if kind in ("json", "logfmt") and not timestamps:
        timestamps = ["iso8601"]
    try:
        zone = zone_of(spec.get("timezone"))
    except ValueError as exc:
        raise FormatError(f"{where}: timezone: {exc}") from None
    extract = {}
    for source_field, patterns in (spec.get("extract") or {}).items():
        extract[str(source_field)] = tuple(_compile(str(p), f"{where} extract {source_field}")
                                           for p in _as_list(patterns))
    json_fields = None
    if spec.get("json_fields"):
        json_fields = dict(_JSON_FIELDS)
        for role, names in spec["json_fields"].items():
            json_fields[str(role)] = tuple(str(n) for n in _as_list(names))
    partial = spec.get("partial")
    if partial is not None:
        if not (isinstance(partial, dict) and {"field", "value"} <= set(partial)):
            raise FormatError(f"{where}: partial must be {{field: NAME, value: VALUE}}")
        partial = (str(partial["field"]), str(partial["value"]))
    level_scale = str(spec.get("level_scale", "python"))
    if level_scale not in ("python", "syslog"):
        raise FormatError(f"{where}: level_scale must be python or syslog")
    levels = {}
    for raw, level in (spec.get("levels") or {}).items():
        if str(level).upper() not in LEVELS:
            raise FormatError(f"{where}: levels maps {raw!r} to {level!r}; levels are {', '.join(LEVELS)}")
        levels[str(raw).upper()] = str(level).upper()
    level_default = spec.get("level_default")
    if level_default is not None and level_default not in ("keywords", "http_status") and \
            str(level_default).upper() not in LEVELS:
        raise FormatError(f"{where}: level_default must be keywords, http_status or one of {', '.join(LEVELS)}")
    return Format(
        regex=regex,
        timestamps=_timestamp_parsers(timestamps, where),
        zone=zone,
        multiline=bool(spec.get("multiline", False)),
        continuation=_compile(spec.get("continuation", DEFAULT_CONTINUATION), where),
        level_letters=bool(spec.get("level_letters", False)),
        level_default=None if level_default is None else
        (level_default if level_default in ("keywords", "http_status") else str(level_default).upper()),
        level_scale=level_scale,
        levels=levels,
        message_is_line=spec.get("message") == "line",
        extract=extract,
        json_fields=json_fields or {},
        require=tuple(str(r) for r in _as_list(spec.get("require"))),
        drop=frozenset(str(d) for d in _as_list(spec.get("drop"))),
        partial=partial,
        service=str(spec["service"]) if spec.get("service") else None,
        **common,
    )


def read_formats_file(path: str | Path) -> dict[str, Any]:
    """The `formats` table of a YAML (.yaml/.yml) or TOML (.toml) formats file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FormatError(f"formats file {path} not found (LOG_FORMATS_FILE)") from None
    except OSError as exc:
        raise FormatError(f"formats file {path} cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise FormatError(f"formats file {path} is not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: "
                          f"{exc}") from None
    formats = (data or {}).get("formats") if isinstance(data, dict) else None
    if not isinstance(formats, dict):
        raise FormatError(f"formats file {path}: expected a top-level 'formats' table mapping names to formats")
    return formats


@lru_cache(maxsize=8)
def _load(user_file: str | None, mtime: float | None) -> dict[str, Format]:
    known: dict[str, Format] = {}
    for name, spec in read_formats_file(PRESETS_FILE).items():
        known[name] = build_format(name, spec, known)
    if user_file:
        for name, spec in read_formats_file(user_file).items():
            if not re.fullmatch(r"[a-z][a-z0-9_.-]{0,40}", str(name)) or name == "auto":
                raise FormatError(f"{user_file}: format name {name!r}: use lower-case letters, digits, '-', '_' "
                                  "(and not 'auto')")
            user = build_format(str(name), spec, known, source=str(user_file))
            known.pop(name, None)  # a user format replaces the preset and goes first in detection
            known = {name: user, **known}
    return known


def load_formats(user_file: str | Path | None = None) -> dict[str, Format]:
    """The presets, plus the formats of `user_file` (which add to them or replace same-named ones)."""
    if user_file in (None, ""):
        return _load(None, None)
    path = Path(user_file)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = None
    return _load(str(path), mtime)


FORMAT_NAMES = (*load_formats(), "auto")


def resolve_format(name: str, formats: dict[str, Format] | None = None) -> str:
    """The canonical name of a format name or alias (case-insensitive); ``auto`` stays ``auto``."""
    formats = formats or load_formats()
    key = name.strip().lower()
    if key == "auto" or key in formats:
        return key
    for fmt in formats.values():
        if key in fmt.aliases:
            return fmt.name
    aliases = sorted(a for f in formats.values() for a in f.aliases)
    raise ValueError(f"unknown log format {name!r}; choose auto or one of: {', '.join(formats)} "
                     f"(aliases: {', '.join(aliases)})")


# --- single-line helpers (kept for callers of the former per-format functions) --------------------
def _line_parser(name: str) -> Callable[..., Any]:
    def parse(line: str, now: datetime | None = None, year: int | None = None) -> dict[str, Any] | object | None:
        fmt = load_formats()[name]
        result = fmt.match(line, TimeContext(reference=now, year=year))
        if isinstance(result, dict):
            result.pop("_partial", None)
            return result
        if fmt.multiline and fmt.continuation is not None and fmt.continuation.match(line):
            return CONTINUATION
        return None

    parse.__name__ = f"parse_{name}"
    parse.__doc__ = f"One line in the {name} format: its fields, CONTINUATION, or None."
    return parse


parse_generic = _line_parser("generic")
parse_access = _line_parser("access")
parse_syslog = _line_parser("syslog")
parse_jsonl = _line_parser("jsonl")

