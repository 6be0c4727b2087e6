"""Replay of real log files as LogEvent records: formats declared as templates or regular expressions
(`formats.py`, `presets.yaml`), the pure line parser (`parser.py`) and the file reader (`reader.py`)."""

from log_generator.replay.formats import FORMAT_NAMES, FormatError, load_formats, resolve_format
from log_generator.replay.parser import LogParser, ParseOptions, ParseResult, Reject, detect_format, parse
from log_generator.replay.reader import LogFileReader, ReplayError, ReplayOptions

__all__ = ["FORMAT_NAMES", "FormatError", "LogFileReader", "LogParser", "ParseOptions", "ParseResult", "Reject",
           "ReplayError", "ReplayOptions", "detect_format", "load_formats", "parse", "resolve_format"]
