"""Reading a log file as LogEvent records: parse, join continuation lines, fill defaults, re-time.

Nothing is dropped silently: every line is either part of a record, blank, or unparsed; unparsed
lines are counted, the first few kept as samples, and all of them written to a file when asked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from log_generator.replay.formats import CONTINUATION, exception_type, make_formats, resolve_format
from log_generator.summary import ReplayStats

MAX_MESSAGE_CHARS = 100_000
MAX_SAMPLES = 20


class ReplayError(ValueError):
    """The file cannot be replayed (missing, unreadable); the message says why."""


@dataclass
class ReplayOptions:
    service: str | None = None  # forced service name; default: from the line, else the file name
    host: str | None = None  # forced host; default: from the line, else "unknown"
    environment: str = "prod"
    retime: bool = False  # shift timestamps so the first record is "now", keeping the gaps
    now_ms: int | None = None
    year: int | None = None  # for syslog lines without a year


def stable_event_id(source: str, lineno: int, line: str) -> str:
    h = hashlib.sha1(f"{source}:{lineno}:{line}".encode("utf-8", "replace")).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def _open(path: Path) -> TextIO:
    try:
        if path.suffix == ".gz":
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
        return open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ReplayError(f"log file {path} not found") from None
    except IsADirectoryError:
        raise ReplayError(f"{path} is a folder; pass a log file") from None
    except PermissionError:
        raise ReplayError(f"log file {path} is not readable (permission denied)") from None


class LogFileReader:
    """Iterate the records of one file; `stats` counts lines read, parsed, unparsed and blank."""

    def __init__(self, path: str | Path, fmt: str, options: ReplayOptions | None = None,
                 unparsed_path: Path | None = None):
        self.path = Path(path)
        self.format = resolve_format(fmt)
        self.options = options or ReplayOptions()
        if not self.path.exists():
            raise ReplayError(f"log file {self.path} not found")
        self.parser = make_formats(year=self.options.year)[self.format]
        self.stats = ReplayStats(source=str(self.path), format=self.format,
                                 unparsed_file=str(unparsed_path) if unparsed_path else None)
        self.unparsed_path = unparsed_path
        self._offset: int | None = None
        self._source = self.path.name

    def _complete(self, parsed: dict[str, Any], lineno: int, raw: str) -> dict[str, Any]:
        opts = self.options
        ts = int(parsed["timestamp"])
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
        attributes.setdefault("source_file", self._source)
        attributes.setdefault("source_line", str(lineno))
        return {
            "event_id": parsed.get("event_id") or stable_event_id(self._source, lineno, raw),
            "timestamp": ts,
            "service": opts.service or parsed.get("service") or parsed.get("component") or self.path.stem,
            "environment": parsed.get("environment") or opts.environment,
            "host": opts.host or parsed.get("host") or "unknown",
            "level": parsed.get("level") or "INFO",
            "logger": parsed.get("logger"),
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

    def _unparsed(self, lineno: int, line: str, sink: TextIO | None) -> None:
        self.stats.unparsed += 1
        if len(self.stats.unparsed_samples) < MAX_SAMPLES:
            self.stats.unparsed_samples.append(f"line {lineno}: {line[:300]}")
        if sink is not None:
            sink.write(f"{lineno}\t{line}\n")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        sink = open(self.unparsed_path, "w", encoding="utf-8") if self.unparsed_path else None  # noqa: SIM115
        pending: tuple[dict[str, Any], int, str] | None = None
        parse = self.parser.parse
        multiline = self.parser.multiline
        try:
            with _open(self.path) as handle:
                for lineno, raw in enumerate(handle, start=1):
                    line = raw.rstrip("\r\n")
                    self.stats.lines_read += 1
                    if not line.strip():
                        self.stats.blank += 1
                        continue
                    try:
                        parsed = parse(line)
                    except (ValueError, OverflowError, TypeError):
                        parsed = None
                    if parsed is CONTINUATION:
                        if multiline and pending is not None:
                            record = pending[0]
                            record["message"] = f"{record['message']}\n{line}"
                            if not record.get("error_type"):
                                record["error_type"] = exception_type(line)
                            self.stats.continuation += 1
                            continue
                        parsed = None  # a continuation with nothing to continue
                    if parsed is None:
                        self._unparsed(lineno, line, sink)
                        continue
                    if pending is not None:
                        yield self._complete(*pending)
                    self.stats.parsed += 1
                    pending = (parsed, lineno, line)
                    if not multiline:
                        yield self._complete(*pending)
                        pending = None
                if pending is not None:
                    yield self._complete(*pending)
        except OSError as exc:
            raise ReplayError(f"reading {self.path} failed: {exc}") from None
        finally:
            if sink is not None:
                sink.close()
