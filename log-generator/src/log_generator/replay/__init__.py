"""Replay of real log files (generic, access, syslog, JSON lines) as LogEvent records."""

from log_generator.replay.formats import FORMAT_NAMES, resolve_format
from log_generator.replay.reader import LogFileReader, ReplayError, ReplayOptions

__all__ = ["FORMAT_NAMES", "LogFileReader", "ReplayError", "ReplayOptions", "resolve_format"]
