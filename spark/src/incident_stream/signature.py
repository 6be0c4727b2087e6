"""Error signatures: a log message with its variable parts masked, so the same failure groups together.

``mask_message`` (pure Python) and ``mask_column`` (Spark built-ins, no UDF) apply the same ordered
list of regular expressions, written in the subset where Python's ``re`` (ASCII mode) and Java's regex
agree: explicit ASCII classes, single-character look-arounds, no ``\\b`` (Java 17's word boundary is
Unicode-aware while its ``\\w`` is not). Tests check both give identical results on arbitrary text.

Masked, in this order: UUIDs, URLs, e-mail addresses, IPv4 addresses (with port), paths, hex numbers
and long hex tokens (trace ids, hashes), numbers with a unit (``812ms``), identifiers mixing letters
and digits (``req-8f3a2``, ``pay-1``), then any remaining number; whitespace is collapsed and trimmed,
and the result cut to 256 characters.

Three implementations give the same result for every text (property tests compare them):

* :func:`mask_message`: Python ``re``, one message at a time; the reference.
* :func:`mask_array`: vectorised over an Arrow array with Arrow's RE2 kernels. RE2 has no look-arounds,
  so a mask that needs one matches its context character as a group and writes it back; as the context
  character it consumed can be the context of the next match, such a mask runs a second time on the
  texts the first pass changed (a masked token never matches again, so two passes reach the same
  result as the look-around). This is what the Kafka source uses: the signature is computed while the
  batch is still in Arrow form in the Python task, at a fraction of the JVM's cost for eleven regular
  expressions per row (each tried at every position of the text).
* :func:`mask_column` / :func:`with_signature`: Spark built-ins (JVM regexes), for frames that do not
  come from the source. ``with_signature`` runs each mask only on texts holding a literal the mask
  cannot match without (``://`` for URLs, ``@`` for e-mail addresses...).

Signature ids: the first 16 hex digits of the signature's MD5 (:func:`signature_id`,
:func:`signature_ids` for an Arrow array, :func:`signature_id_column` on Spark).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
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

# Substrings a text must contain for the mask of the same index to match at all (None: no cheap test).
# Whitespace: `\s+` -> " " changes nothing unless some whitespace is not a single plain space.
GUARDS: tuple[tuple[str, ...] | None, ...] = (
    ("-",), ("://",), ("@",), (".",), ("/",), ("0x", "0X"), None, None, None, None,
    ("  ", "\t", "\n", "\x0b", "\f", "\r"),
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


def with_signature(df: DataFrame, message: str, signature: str) -> DataFrame:
    """`df` with a column `signature` = :func:`mask_column` of column `message`, computed the fast way."""
    work = f"__{signature}_masked"
    df = df.withColumn(work, F.coalesce(F.col(message), F.lit("")))
    text = F.col(work)
    for (pattern, replacement), guard in zip(MASKS, GUARDS, strict=True):
        masked = F.regexp_replace(text, F.lit(pattern), F.lit(replacement))
        if guard is not None:
            needed = text.contains(guard[0])
            for literal in guard[1:]:
                needed = needed | text.contains(literal)
            masked = F.when(needed, masked).otherwise(text)
        # One projection per mask: the text is computed once, whatever the mask's expression refers to it.
        df = df.withColumn(work, masked)
    return df.withColumn(signature, F.substring(F.trim(text), 1, MAX_SIGNATURE_CHARS)).drop(work)


def signature_id_column(signature: Column) -> Column:
    return F.substring(F.md5(signature), 1, 16)


# --- vectorised (Arrow, RE2) -------------------------------------------------------------------

_NOT_TOKEN = "[^A-Za-z0-9_-]"  # the look-arounds' class of the id, hex and number-with-unit masks


def _hex_token() -> str:
    """RE2 for a token of 8 or more hex digits holding at least one digit and one letter a-f."""
    digit, letter, anyhex = "[0-9]", "[a-fA-F]", "[0-9a-fA-F]"
    shapes = []
    for first, then in ((digit, letter), (letter, digit)):
        shapes += [f"{first}{{{k}}}{then}{anyhex}{{{7 - k},}}" for k in range(1, 7)]
        shapes.append(f"{first}{{7,}}{then}{anyhex}*")
    return "(?:" + "|".join(shapes) + ")"


@dataclass(frozen=True)
class VectorMask:
    pattern: str  # RE2
    replacement: str
    needs: tuple[str, ...] | None = None  # literals a text must hold for a match (None: no cheap test)
    needs_regex: str | None = None  # or: a cheaper RE2 a text must match
    passes: int = 1  # 2 when the pattern consumes a context character


VECTOR_MASKS: tuple[VectorMask, ...] = (
    VectorMask(MASKS[0][0], "<uuid>", needs=("-",)),
    VectorMask("[A-Za-z][A-Za-z0-9+.-]*://[^ \\t\\n\\x0b\\f\\r\"'<>]+", "<url>", needs=("://",)),
    VectorMask(MASKS[2][0], "<email>", needs=("@",)),
    VectorMask("(^|[^0-9.])((?:[0-9]{1,3}\\.){3}[0-9]{1,3}(?::[0-9]{1,5})?)([^0-9]|$)", "\\1<ip>\\3",
               needs=(".",), passes=2),
    VectorMask(f"(^|[^{_TOKEN}.~-])((?:/[{_TOKEN}.~%@+{{}}:-]+)+/?)", "\\1<path>", needs=("/",), passes=2),
    VectorMask(MASKS[5][0], "<hex>", needs=("0x", "0X")),
    VectorMask(f"(^|{_NOT_TOKEN})({_hex_token()})({_NOT_TOKEN}|$)", "\\1<hex>\\3", passes=2),
    VectorMask(f"(^|{_NOT_TOKEN})[0-9]+(?:\\.[0-9]+)?([A-Za-z]{{1,3}})({_NOT_TOKEN}|$)", "\\1<num>\\2\\3",
               passes=2),
    VectorMask(f"(^|{_NOT_TOKEN})([_-]*(?:[0-9][0-9_-]*[A-Za-z]|[A-Za-z][A-Za-z_-]*[0-9])[A-Za-z0-9_-]*)"
               f"({_NOT_TOKEN}|$)", "\\1<id>\\3", passes=2),
    VectorMask(MASKS[9][0], "<num>"),
    VectorMask("[ \\t\\n\\x0b\\f\\r]+", " ", needs_regex="[\\t\\n\\x0b\\f\\r]|  "),
)


def _where(text: pa.Array, rows: pa.Array, change: callable) -> pa.Array:
    """`text` with `change` applied to the rows where `rows` is true (all of them: no copy of the rest)."""
    count = pc.sum(rows).as_py() or 0
    if count == 0:
        return text
    if count == len(text):
        return change(text)
    return pc.replace_with_mask(text, rows, change(text.filter(rows)))


def _apply(text: pa.Array, mask: VectorMask) -> pa.Array:
    def replace(values: pa.Array) -> pa.Array:
        return pc.replace_substring_regex(values, mask.pattern, mask.replacement)

    def replace_all_passes(values: pa.Array) -> pa.Array:
        once = replace(values)
        if mask.passes == 1:
            return once
        return _where(once, pc.not_equal(values, once), replace)  # only texts the first pass changed

    if mask.needs is not None:
        rows = pc.match_substring(text, mask.needs[0])
        for literal in mask.needs[1:]:
            rows = pc.or_(rows, pc.match_substring(text, literal))
        return _where(text, rows, replace_all_passes)
    if mask.needs_regex is not None:
        return _where(text, pc.match_substring_regex(text, mask.needs_regex), replace_all_passes)
    return replace_all_passes(text)


def mask_array(messages: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Signatures of an Arrow string array (null messages give ""); same result as :func:`mask_message`."""
    if isinstance(messages, pa.ChunkedArray):
        messages = messages.combine_chunks()
    text = pc.fill_null(messages.cast(pa.string()), "")
    for mask in VECTOR_MASKS:
        text = _apply(text, mask)
    return pc.utf8_slice_codeunits(pc.utf8_trim(text, " "), 0, MAX_SIGNATURE_CHARS)


def mask_messages(messages: list[str | None]) -> list[str]:
    """:func:`mask_message` for many messages at once (much faster than one by one)."""
    return mask_array(pa.array(messages, type=pa.string())).to_pylist()


def signature_ids(signatures: pa.Array) -> pa.Array:
    """:func:`signature_id` of every signature of an Arrow string array (null stays null); each distinct
    signature is hashed once."""
    encoded = pc.dictionary_encode(signatures)
    ids = pa.array([signature_id(s) for s in encoded.dictionary.to_pylist()], type=pa.string())
    return ids.take(encoded.indices)
