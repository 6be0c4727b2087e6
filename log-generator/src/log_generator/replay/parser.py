"""Lines in, LogEvent records and rejected lines (with the reason) out: the parsing library.

Pure: no Kafka, no files, no settings. The replay reader and an ingest service feed it lines.

* :func:`parse` parses a finite sequence of lines at once.
* :class:`LogParser` is the streaming form: ``feed(line)`` returns the events completed by that line,
  ``flush()`` the entry still open (a multi-line entry waits for the line after it).
* :func:`detect_format` scores every detectable format on sample lines (``--format auto``).

Multi-line entries: in a format with ``multiline``, a line that does not match the format joins the
entry above it when it looks like a continuation (indented, ``Caused by:``, an exception class, a
Python traceback) or does not look like the start of an entry (a date, a syslog priority). Such a
line with no entry above, or one that looks like an entry start, is rejected.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from incident_contracts.codec import MAX_NAME_CHARS, NAME_CHARS
from log_generator.replay.formats import Format, TimeContext, exception_type, load_formats, resolve_format

MAX_MESSAGE_CHARS = 100_000
MAX_LINE_CHARS = 1_000_000  # longer lines are cut before matching (a regex over megabytes is a stall)
MAX_CONTINUATION_LINES = 2_000
MAX_LOGGER_CHARS = 200
MAX_SERVICES = 64  # distinct service names the lines of one stream may create
DETECT_LINES = 200
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")
_NAME = re.compile(f"[{NAME_CHARS}]{{1,{MAX_NAME_CHARS}}}")  # what the codec accepts as a host or environment


def valid_name(value: str | None) -> bool:
    """Whether `value` is a service, host or environment name the event codec accepts."""
    return bool(value) and _NAME.fullmatch(value) is not None
# What the start of an entry looks like, in any format: a date, a syslog priority, an epoch-prefixed RAS line.
_ENTRY_START = re.compile(
    r"^(?:\[?\d{2,4}[-/.]\d{1,2}[-/.]\d{1,2}[ T\d]|\d{6} \d{6} |<\d{1,3}>|\[?(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) "
    r"[A-Z][a-z]{2} |(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:|[A-Z_-]+ \d{9,10} \d{4}\.)"
)
_ROTATION_SUFFIX = re.compile(r"(?:\.(?:\d+|\d{4}-?\d{2}-?\d{2}(?:[_T-][\d:]+)?|gz|bz2|xz|zst|old))+$")
_LOG_SUFFIX = re.compile(r"\.(?:log|txt|jsonl|json|ndjson|out|err)$", re.I)


def service_from_filename(name: str) -> str | None:
    """A service name from a log file's name: ``nova-api.log.1.gz`` -> ``nova-api``, ``app.jsonl`` -> ``app``."""
    base = name.rsplit("/", 1)[-1]
    base = _ROTATION_SUFFIX.sub("", base)
    base = _LOG_SUFFIX.sub("", base)
    base = _ROTATION_SUFFIX.sub("", base)
    base = re.sub(r"[^A-Za-z0-9_.:-]", "-", base).strip("-.")[:63]
    return base if base and _SERVICE_NAME.match(base) else None


def stable_event_id(source: str, lineno: int, line: str) -> str:
    h = hashlib.sha1(f"{source}:{lineno}:{line}".encode("utf-8", "replace")).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-8{h[17:20]}-{h[20:32]}"


@dataclass
class ParseOptions:
    """How events are completed. `service` forces the service of every event; `default_service` is used
    when a line names none (the replay passes the file's name); `year` forces the year of yearless
    timestamps; `reference_ms` is when the lines were written by the latest (file mtime; default now);
    `timezone` overrides every format's zone, `default_timezone` applies when neither line nor format has one."""

    service: str | None = None
    default_service: str | None = None
    host: str | None = None
    environment: str = "prod"
    source: str = "stdin"  # names the stream in event ids and the source_file attribute
    retime: bool = False
    now_ms: int | None = None
    year: int | None = None
    reference_ms: int | None = None
    timezone: tzinfo | None = None
    default_timezone: tzinfo = UTC
    detect_lines: int = DETECT_LINES


@dataclass(frozen=True)
class Reject:
    lineno: int
    line: str
    reason: str


@dataclass
class ParseStats:
    lines_read: int = 0
    parsed: int = 0
    unparsed: int = 0
    blank: int = 0
    continuation: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Detection:
    """The outcome of `detect_format`: the chosen format, and (name, lines parsed) per format, best first."""

    name: str | None
    lines: int
    scores: tuple[tuple[str, int], ...]

    def describe(self) -> str:
        if self.name is None:
            return f"no format parses any of the first {self.lines} lines"
        best = self.scores[0][1]
        runners = ", ".join(f"{n} {c}" for n, c in self.scores[1:4] if c)
        return (f"format auto: {self.name} ({best}/{self.lines} sample lines parsed"
                + (f"; next: {runners}" if runners else "") + ")")


def detect_format(lines: Iterable[str], formats: dict[str, Format] | None = None,
                  ctx: TimeContext | None = None) -> Detection:
    """The format that reads most of `lines`, as entries or as stack-trace lines of the entry above (ties:
    more fields captured, then the declared order)."""
    formats = formats or load_formats()
    ctx = ctx or TimeContext()
    sample = [line[:MAX_LINE_CHARS] for line in lines if line.strip()]
    ranked: list[tuple[int, int, int, str]] = []
    for order, fmt in enumerate(formats.values()):
        if not fmt.detect:
            continue
        parsed = fields = 0
        open_entry = False
        for line in sample:
            try:
                result = fmt.match(line, ctx)
            except (ValueError, OverflowError, TypeError, RecursionError):
                result = None
            if isinstance(result, dict):
                parsed += 1
                open_entry = True
                fields += sum(1 for k, v in result.items() if v not in (None, "", {}) and k != "attributes")
                fields += len(result.get("attributes") or {})
            elif open_entry and fmt.multiline and fmt.continuation is not None and fmt.continuation.match(line):
                parsed += 1  # a stack-trace line of the entry above: read by this format
            else:
                open_entry = False
        ranked.append((-parsed, -fields, order, fmt.name))
    ranked.sort()
    scores = tuple((name, -p) for p, _, _, name in ranked)
    name = scores[0][0] if scores and scores[0][1] > 0 else None
    return Detection(name, len(sample), scores)


class LogParser:
    """Streaming parser of one source's lines. Not thread-safe; one per stream."""

    def __init__(self, fmt: str = "auto", options: ParseOptions | None = None,
                 formats: dict[str, Format] | None = None, keep_rejects: int | None = None):
        self.formats = formats or load_formats()
        self.options = options or ParseOptions()
        name = resolve_format(fmt, self.formats)
        self.format: Format | None = None if name == "auto" else self.formats[name]
        self.detection: Detection | None = None
        self.stats = ParseStats()
        self.rejects: list[Reject] = []
        self.keep_rejects = keep_rejects  # None keeps every reject; N keeps the first N
        self.on_reject = None  # optional callable(Reject)
        opts = self.options
        self.ctx = TimeContext(
            reference=None if opts.reference_ms is None else datetime.fromtimestamp(opts.reference_ms / 1000, tz=UTC),
            year=opts.year, zone=opts.timezone, default_zone=opts.default_timezone)
        self._buffer: list[tuple[int, str]] = []  # lines held back until the format is detected
        self._pending: tuple[dict[str, Any], int, str] | None = None
        self._pending_lines = 0
        self._offset: int | None = None
        self._services: set[str] = set()
        self._lineno = 0
        self._default_service = opts.service or opts.default_service or "unknown"

    @property
    def format_name(self) -> str | None:
        return None if self.format is None else self.format.name

    # -- public -----------------------------------------------------------------------------------
    def feed(self, line: str) -> list[dict[str, Any]]:
        """Events completed by this line (usually the entry before it, for multi-line formats)."""
        self._lineno += 1
        line = line.rstrip("\r\n")
        if self.format is None:
            self._buffer.append((self._lineno, line))
            if sum(1 for _, text in self._buffer if text.strip()) < self.options.detect_lines:
                return []
            return self._decide()
        return self._line(self._lineno, line)

    def flush(self) -> list[dict[str, Any]]:
        """Decide the format if still undecided, then complete the entry still open."""
        out: list[dict[str, Any]] = []
        if self.format is None and self._buffer:
            out.extend(self._decide())
        if self._pending is not None:
            out.append(self._complete(*self._pending))
            self._pending = None
        return out

    # -- internals --------------------------------------------------------------------------------
    def _decide(self) -> list[dict[str, Any]]:
        detection = detect_format((text for _, text in self._buffer), self.formats, self.ctx)
        self.detection = detection
        buffered, self._buffer = self._buffer, []
        if detection.name is None:
            # Nothing parses: keep detecting on the next lines, but account for these as rejected.
            for lineno, text in buffered:
                self.stats.lines_read += 1
                if not text.strip():
                    self.stats.blank += 1
                else:
                    self._reject(lineno, text, "no known format parses this line (format auto)")
            return []
        self.format = self.formats[detection.name]
        out: list[dict[str, Any]] = []
        for lineno, text in buffered:
            out.extend(self._line(lineno, text))
        return out

    def _reject(self, lineno: int, line: str, reason: str) -> None:
        self.stats.unparsed += 1
        self.stats.reasons[reason] = self.stats.reasons.get(reason, 0) + 1
        reject = Reject(lineno, line, reason)
        if self.keep_rejects is None or len(self.rejects) < self.keep_rejects:
            self.rejects.append(reject)
        if self.on_reject is not None:
            self.on_reject(reject)

    def _line(self, lineno: int, line: str) -> list[dict[str, Any]]:
        self.stats.lines_read += 1
        if not line.strip():
            self.stats.blank += 1
            return []
        fmt = self.format
        assert fmt is not None
        text = line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS]
        try:
            result = fmt.match(text, self.ctx)
        except (ValueError, OverflowError, TypeError, RecursionError) as exc:
            result = f"could not be read ({type(exc).__name__})"
        if isinstance(result, dict):
            return self._record(result, lineno, line)
        pending = self._pending
        if fmt.multiline and pending is not None and self._pending_lines < MAX_CONTINUATION_LINES and (
                (fmt.continuation is not None and fmt.continuation.match(line)) or not _ENTRY_START.match(line)):
            record = pending[0]
            record["message"] = f"{record['message']}\n{line}"
            if not record.get("error_type"):
                record["error_type"] = exception_type(line.strip())
            self._pending_lines += 1
            self.stats.continuation += 1
            return []
        if fmt.multiline and pending is None and fmt.continuation is not None and fmt.continuation.match(line):
            result = "continuation line with no entry above it"
        self._reject(lineno, line, result)
        return []

    def _record(self, parsed: dict[str, Any], lineno: int, line: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        pending = self._pending
        if pending is not None and pending[0].get("_partial"):
            # A partial line (CRI "P"): this line carries on its message.
            record = pending[0]
            record["message"] += parsed.get("message") or ""
            if not parsed.get("_partial"):
                record.pop("_partial", None)
            self.stats.continuation += 1
            if not record.get("_partial") and not self.format.multiline:
                self._pending = None
                out.append(self._complete(*pending))
            return out
        if pending is not None:
            out.append(self._complete(*pending))
            self._pending = None
        self.stats.parsed += 1
        if self.format.multiline or parsed.get("_partial"):
            self._pending = (parsed, lineno, line)
            self._pending_lines = 0
        else:
            out.append(self._complete(parsed, lineno, line))
        return out

    def _service(self, parsed: dict[str, Any], attributes: dict[str, str]) -> str:
        opts = self.options
        if opts.service:
            return opts.service
        name = parsed.get("service")
        if name:
            if name in self._services:
                return name
            if _SERVICE_NAME.match(name) and len(self._services) < MAX_SERVICES:
                self._services.add(name)
                return name
            attributes["service_in_line"] = name[:200]  # kept, but it does not create a service
        return self._default_service

    def _complete(self, parsed: dict[str, Any], lineno: int, raw: str) -> dict[str, Any]:
        opts = self.options
        parsed.pop("_partial", None)
        ts = int(parsed["timestamp"])
        if ts < 0:  # a format without time: the moment the line is read
            ts = opts.now_ms if opts.now_ms is not None else int(time.time() * 1000)
        if opts.retime:
            if self._offset is None:
                now = opts.now_ms if opts.now_ms is not None else int(time.time() * 1000)
                self._offset = now - ts
            ts += self._offset
        message = parsed.get("message") or ""
        attributes = {str(k): str(v) for k, v in (parsed.get("attributes") or {}).items()}
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + " ...[truncated]"
            attributes["truncated"] = "true"
        attributes.setdefault("source_file", opts.source)
        attributes.setdefault("source_line", str(lineno))
        logger = parsed.get("logger")
        if logger and len(logger) > MAX_LOGGER_CHARS:
            logger = logger[:MAX_LOGGER_CHARS]
        host = opts.host or parsed.get("host") or "unknown"
        if not valid_name(host):
            attributes["host_in_line"] = host[:200]
            host = "unknown"
        environment = parsed.get("environment") or opts.environment
        if not valid_name(environment):
            attributes["environment_in_line"] = environment[:200]
            environment = opts.environment
        return {
            "event_id": parsed.get("event_id") or stable_event_id(opts.source, lineno, raw),
            "timestamp": ts,
            "service": self._service(parsed, attributes),
            "environment": environment,
            "host": host,
            "level": parsed.get("level") or "INFO",
            "logger": logger,
            "message": message,
            "trace_id": parsed.get("trace_id"),
            "span_id": parsed.get("span_id"),
            "http_method": parsed.get("http_method"),
            "http_path": parsed.get("http_path"),
            "http_status": parsed.get("http_status"),
            "latency_ms": parsed.get("latency_ms"),
            "error_type": parsed.get("error_type"),
            "attributes": attributes,
        }


@dataclass
class ParseResult:
    events: list[dict[str, Any]]
    rejects: list[Reject]
    stats: ParseStats
    format: str | None
    detection: Detection | None = None


def iter_events(parser: LogParser, lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        yield from parser.feed(line)
    yield from parser.flush()


def parse(lines: Iterable[str], fmt: str = "auto", options: ParseOptions | None = None,
          formats: dict[str, Format] | None = None) -> ParseResult:
    """Parse every line: the LogEvent records, the rejected lines with their reasons, counts, the format."""
    parser = LogParser(fmt, options, formats)
    events = list(iter_events(parser, lines))
    return ParseResult(events, parser.rejects, parser.stats, parser.format_name, parser.detection)
