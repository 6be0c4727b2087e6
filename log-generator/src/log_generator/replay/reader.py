"""Reading a log file (or standard input) as LogEvent records, optionally following it as it grows.

Nothing is dropped silently: every line is either part of a record, blank, or unparsed; unparsed
lines are counted by reason, the first few kept as samples, and all of them written to a file when asked.
The parsing itself is :mod:`log_generator.replay.parser`.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from log_generator.replay.formats import load_formats, resolve_format, zone_of
from log_generator.replay.parser import (
    MAX_MESSAGE_CHARS,
    LogParser,
    ParseOptions,
    Reject,
    service_from_filename,
    stable_event_id,
    valid_name,
)
from log_generator.summary import ReplayStats

__all__ = ["MAX_MESSAGE_CHARS", "LogFileReader", "ReplayError", "ReplayOptions", "stable_event_id"]
MAX_SAMPLES = 20
POLL_SECONDS = 0.2


class ReplayError(ValueError):
    """The file cannot be replayed (missing, unreadable, bad format name); the message says why."""


@dataclass
class ReplayOptions:
    service: str | None = None  # forced service name; default: from the line, else the file name
    host: str | None = None  # forced host; default: from the line, else "unknown"
    environment: str = "prod"
    retime: bool = False  # shift timestamps so the first record is "now", keeping the gaps
    now_ms: int | None = None
    year: int | None = None  # for timestamps without a year (default: the file's mtime year, see docs)
    timezone: str | None = None  # zone of timestamps without one, over the format's (default: the format's, else
    default_timezone: str = "UTC"  # this one: LOG_TIMEZONE)
    formats_file: str | Path | None = None  # LOG_FORMATS_FILE
    follow: bool = False  # keep reading as the file grows, across rotation and truncation
    stop: Callable[[], bool] | None = None  # when following: stop once this returns True
    idle_flush_s: float = 0.5  # when following: complete an open multi-line entry after this long without lines


def _open_text(path: Path) -> TextIO:
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
    """Iterate the records of one file (``-``: standard input); `stats` counts lines read, parsed, unparsed
    and blank. `fmt` is a format name, an alias or ``auto`` (then `stats.format` is the detected one)."""

    def __init__(self, path: str | Path, fmt: str = "auto", options: ReplayOptions | None = None,
                 unparsed_path: Path | None = None, stdin: BinaryIO | None = None):
        self.options = options or ReplayOptions()
        self.stdin = path == "-" or str(path) == "-"
        self.path = Path(path)
        try:
            self.formats = load_formats(self.options.formats_file)
            self.format = resolve_format(fmt, self.formats)
            timezone = zone_of(self.options.timezone)
            default_timezone = zone_of(self.options.default_timezone)
        except ValueError as exc:
            raise ReplayError(str(exc)) from None
        for flag, value in (("--service", self.options.service), ("--host", self.options.host),
                            ("environment", self.options.environment)):
            if value is not None and not valid_name(value):
                raise ReplayError(f"{flag} {value!r} is not a valid name: use letters, digits and . _ - / : "
                                  "(at most 128 characters)")
        if not self.stdin and not self.path.exists():
            raise ReplayError(f"log file {self.path} not found")
        if not self.stdin and self.path.is_dir():
            raise ReplayError(f"{self.path} is a folder; pass a log file")
        if self.options.follow and not self.stdin and self.path.suffix == ".gz":
            raise ReplayError(f"{self.path}: --follow reads growing plain-text files, not .gz")
        self._stdin_stream = stdin
        self._source = "stdin" if self.stdin else self.path.name
        reference_ms = None
        if not self.stdin and not self.options.follow:
            reference_ms = int(self.path.stat().st_mtime * 1000)  # lines are older than the file's last write
        opts = self.options
        self.parse_options = ParseOptions(
            service=opts.service, default_service=None if self.stdin else service_from_filename(self.path.name),
            host=opts.host, environment=opts.environment, source=self._source, retime=opts.retime,
            now_ms=opts.now_ms, year=opts.year, reference_ms=reference_ms, timezone=timezone,
            default_timezone=default_timezone or zone_of("UTC"))
        self.stats = ReplayStats(source="-" if self.stdin else str(self.path), format=self.format,
                                 unparsed_file=str(unparsed_path) if unparsed_path else None)
        self.unparsed_path = unparsed_path
        self.parser: LogParser | None = None

    # -- lines ------------------------------------------------------------------------------------
    def _lines(self) -> Iterator[str]:
        if self.stdin:
            stream = self._stdin_stream or sys.stdin.buffer
            for raw in stream:
                yield raw.decode("utf-8", "replace")
            return
        if self.options.follow:
            yield from self._follow()
            return
        with _open_text(self.path) as handle:
            yield from handle

    def _follow(self) -> Iterator[str]:
        """Lines of the file as it grows. Rotation (the path now names another file) is followed to the new
        file once the old one is read to its end; truncation (the file shrank) restarts at its beginning.
        Yields "" when idle, so the caller can complete an open entry and check `stop`."""
        stop = self.options.stop or (lambda: False)
        handle = open(self.path, "rb")  # noqa: SIM115 (reopened on rotation)
        partial = b""
        try:
            while not stop():
                chunk = handle.readline()
                if chunk:
                    if chunk.endswith(b"\n"):
                        yield (partial + chunk).decode("utf-8", "replace")
                        partial = b""
                    else:
                        partial += chunk  # the writer has not finished the line yet
                    continue
                try:
                    current = os.stat(self.path)
                except FileNotFoundError:
                    current = None  # between the rename and the new file: keep waiting
                opened = os.fstat(handle.fileno())
                if current is not None and (current.st_ino, current.st_dev) != (opened.st_ino, opened.st_dev):
                    if partial:
                        yield partial.decode("utf-8", "replace")
                        partial = b""
                    handle.close()
                    handle = open(self.path, "rb")  # noqa: SIM115
                    continue
                if current is not None and current.st_size < handle.tell():
                    partial = b""
                    handle.seek(0)  # truncated in place (copytruncate): start over
                    continue
                yield ""
                time.sleep(POLL_SECONDS)
        finally:
            handle.close()

    # -- records ----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        sink = open(self.unparsed_path, "w", encoding="utf-8") if self.unparsed_path else None  # noqa: SIM115
        parser = LogParser(self.format, self.parse_options, self.formats, keep_rejects=0)
        self.parser = parser

        def on_reject(reject: Reject) -> None:
            if len(self.stats.unparsed_samples) < MAX_SAMPLES:
                self.stats.unparsed_samples.append(f"line {reject.lineno}: {reject.line[:300]} ({reject.reason})")
            if sink is not None:
                sink.write(f"{reject.lineno}\t{reject.line}\t{reject.reason}\n")

        parser.on_reject = on_reject
        follow = self.options.follow
        idle_since: float | None = None
        try:
            for line in self._lines():
                if follow and line == "":
                    now = time.monotonic()
                    idle_since = idle_since or now
                    if now - idle_since >= self.options.idle_flush_s:
                        yield from self._account(parser.flush())
                        idle_since = None
                    continue
                idle_since = None
                yield from self._account(parser.feed(line))
            yield from self._account(parser.flush())
        except OSError as exc:
            raise ReplayError(f"reading {self.path} failed: {exc}") from None
        finally:
            self._sync_stats()
            if sink is not None:
                sink.close()

    def _account(self, events: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        self._sync_stats()
        yield from events

    def _sync_stats(self) -> None:
        parser = self.parser
        if parser is None:
            return
        s = parser.stats
        self.stats.lines_read, self.stats.parsed, self.stats.unparsed = s.lines_read, s.parsed, s.unparsed
        self.stats.blank, self.stats.continuation = s.blank, s.continuation
        self.stats.unparsed_reasons = dict(s.reasons)
        if parser.format_name is not None:
            self.stats.format = parser.format_name
        if parser.detection is not None:
            self.stats.detected = parser.detection.describe()
