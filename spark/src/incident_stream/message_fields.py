"""Level names, and the HTTP fields and latency found in a log message: the definitions of the enrichment.

For events whose producer left ``http_method``/``http_path``/``http_status``/``latency_ms`` empty. The
job's enrichment (enrich_arrow.py) and the offline detector (detection/offline.py) call these parsers,
only for the rows that need them. The patterns are written so that Java reads them the same way (Python
with ``re.ASCII``): a test enrichment in Spark SQL (tests/spark/enrich_oracle.py) runs them as JVM regular
expressions, and tests check both give the same rows.

The ``*_PROBE`` patterns (RE2 syntax, which Python's ``re`` also reads) are necessary conditions: every
message a parser finds a value in matches its probe. The Arrow enrichment tests a whole batch with them
(vectorised) and calls the Python parsers only on the messages that pass; most log lines of services
without HTTP fields pass none.
"""

from __future__ import annotations

import re

LEVEL_SYNONYMS = {
    "WARNING": "WARN", "ERR": "ERROR", "SEVERE": "ERROR", "CRITICAL": "FATAL", "CRIT": "FATAL",
    "EMERG": "FATAL", "EMERGENCY": "FATAL", "ALERT": "FATAL", "PANIC": "FATAL", "NOTICE": "INFO",
    "INFORMATION": "INFO", "INFORMATIONAL": "INFO", "FINE": "DEBUG", "FINER": "TRACE", "FINEST": "TRACE",
    "VERBOSE": "TRACE",
}
LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
HTTP_METHODS = "GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS|CONNECT|TRACE"
# A request line in a message: METHOD PATH [HTTP/x] [->|returned|status] STATUS
REQUEST_PATTERN = (f"(?:^|[^A-Za-z])({HTTP_METHODS}) +(/[^ ?\"]*)(?:\\?[^ \"]*)?(?: +HTTP/[0-9.]+)?\"?"
                   "(?: +(?:-> *|returned +|status[=: ]+|=> *)?([1-5][0-9][0-9])(?![0-9]))?")
STATUS_PATTERN = "(?i)(?:status|code)[=: ]+([1-5][0-9][0-9])(?![0-9])"
LATENCY_PATTERN = ("(?i)(?:latency|took|duration|elapsed|time|in|after)[=: ]+([0-9]+(?:\\.[0-9]+)?) *"
                   "(ms|msec|s|sec|us|µs)(?![A-Za-z])")

# re.ASCII: case-insensitive for ASCII letters only, as Java's (?i) (Python's would also match "ı" or "ſ" to
# "i" or "s").
_REQUEST_RE = re.compile(REQUEST_PATTERN, re.ASCII)
_STATUS_RE = re.compile(STATUS_PATTERN, re.ASCII)
_LATENCY_RE = re.compile(LATENCY_PATTERN, re.ASCII)
# A request line needs a method, spaces, then a path: " /" is in the text.
REQUEST_PROBE = " /"
STATUS_PROBE = "(?i)status|code| /"
LATENCY_PROBE = "(?i)(?:latency|took|duration|elapsed|time|in|after)[=: ]+[0-9]"
_UNIT_FACTOR = {"s": 1000.0, "sec": 1000.0, "us": 0.001, "µs": 0.001}


def normalise_level(level: str | None) -> str:
    """TRACE/DEBUG/INFO/WARN/ERROR/FATAL; synonyms mapped (WARNING, CRITICAL...), anything else INFO."""
    upper = (level or "").strip(" ").upper()
    mapped = LEVEL_SYNONYMS.get(upper, upper)
    return mapped if mapped in LEVELS else "INFO"


def _first_group(pattern: re.Pattern[str], text: str, group: int) -> str | None:
    match = pattern.search(text)
    return match.group(group) if match and match.group(group) else None


def parse_request(text: str) -> tuple[str | None, str | None]:
    """(method, path) of the first request line in a message (``GET /orders/12?x=1 ...``)."""
    if " /" not in text:
        return None, None
    match = _REQUEST_RE.search(text)
    if not match:
        return None, None
    return match.group(1) or None, match.group(2) or None


def parse_status(text: str) -> int | None:
    """The HTTP status in a message (a request line's, else ``status=``/``code:``), from a request line first."""
    parsed = _first_group(_REQUEST_RE, text, 3) or _first_group(_STATUS_RE, text, 1)
    return int(parsed) if parsed else None


def parse_latency(text: str) -> float | None:
    """The latency in a message in milliseconds (``took 1.5s``, ``latency: 250us``)."""
    match = _LATENCY_RE.search(text)
    if not match:
        return None
    return float(match.group(1)) * _UNIT_FACTOR.get(match.group(2).lower(), 1.0)
