"""Error signatures: a log message with its variable parts masked, so the same failure groups together.

``mask_message`` (pure Python) and ``mask_column`` (Spark built-ins, no UDF) apply the same ordered
list of regular expressions, written in the subset where Python's ``re`` (ASCII mode) and Java's regex
agree: explicit ASCII classes, single-character look-arounds, no ``\\b`` (Java 17's word boundary is
Unicode-aware while its ``\\w`` is not). Tests check both give identical results on arbitrary text.

Masked, in this order: UUIDs, URLs, e-mail addresses, IPv4 addresses (with port), paths, hex numbers
and long hex tokens (trace ids, hashes), numbers with a unit (``812ms``), identifiers mixing letters
and digits (``req-8f3a2``, ``pay-1``), then any remaining number; whitespace is collapsed and trimmed,
and the result cut to 256 characters.
"""

from __future__ import annotations

import hashlib
import re

from pyspark.sql import Column
from pyspark.sql import functions as F

MAX_SIGNATURE_CHARS = 256
_TOKEN = "A-Za-z0-9_"

# (pattern, replacement), applied in order.
MASKS: tuple[tuple[str, str], ...] = (
    ("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "<uuid>"),
    ("[A-Za-z][A-Za-z0-9+.-]*://[^\\s\"'<>]+", "<url>"),
    ("[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}", "<email>"),
    ("(?<![0-9.])(?:[0-9]{1,3}\\.){3}[0-9]{1,3}(?::[0-9]{1,5})?(?![0-9])", "<ip>"),
    (f"(?<![{_TOKEN}.~-])(?:/[{_TOKEN}.~%@+{{}}:-]+)+/?", "<path>"),
    ("0[xX][0-9a-fA-F]+", "<hex>"),
    (f"(?<![{_TOKEN}-])(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{{8,}}(?![{_TOKEN}-])", "<hex>"),
    (f"(?<![{_TOKEN}-])[0-9]+(?:\\.[0-9]+)?(?=[A-Za-z]{{1,3}}(?![{_TOKEN}-]))", "<num>"),  # 812ms, 30s
    (f"(?<![{_TOKEN}-])(?=[A-Za-z_-]*[0-9])(?=[0-9_-]*[A-Za-z])[{_TOKEN}-]+(?![{_TOKEN}-])", "<id>"),
    ("[0-9]+(?:[.,][0-9]+)*", "<num>"),
    ("\\s+", " "),
)

_COMPILED = tuple((re.compile(pattern, re.ASCII), replacement) for pattern, replacement in MASKS)


def mask_message(message: str | None) -> str:
    """The signature of a message (pure Python; same result as :func:`mask_column`)."""
    text = message or ""
    for pattern, replacement in _COMPILED:
        text = pattern.sub(replacement, text)
    return text.strip(" ")[:MAX_SIGNATURE_CHARS]


def signature_id(signature: str) -> str:
    """A short stable id of a signature: the first 16 hex digits of its MD5."""
    return hashlib.md5(signature.encode("utf-8")).hexdigest()[:16]


def mask_column(message: Column) -> Column:
    """The signature of a message column, with Spark built-in functions only."""
    text = F.coalesce(message, F.lit(""))
    for pattern, replacement in MASKS:
        text = F.regexp_replace(text, F.lit(pattern), F.lit(replacement))
    return F.substring(F.trim(text), 1, MAX_SIGNATURE_CHARS)


def signature_id_column(signature: Column) -> Column:
    return F.substring(F.md5(signature), 1, 16)
