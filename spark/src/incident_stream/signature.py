"""Error signatures: a log message with its variable parts masked, so the same failure groups together.

Masked, in this order: UUIDs, URLs, e-mail addresses, IPv4 addresses (with port), paths, hex numbers
and long hex tokens (trace ids, hashes), numbers with a unit (``812ms``), identifiers mixing letters
and digits (``req-8f3a2``, ``pay-1``), then any remaining number; whitespace is collapsed and trimmed,
and the result cut to 256 characters.

The masks are regular expressions written so that Python's ``re``, Java's regex and RE2 (Arrow's
string kernels) find exactly the same matches: ASCII classes only, no look-arounds (RE2 has none), no
``\\b``, the end of the text spelt per engine. Where a mask must see the character before or after a
token, it matches that character as a group and writes it back; since that character may also border
the next token, such a mask is applied twice (a masked token never matches again). Three
implementations follow the same definition, and tests check they agree on arbitrary text:

* :func:`mask_message`: Python, one message at a time (the reference);
* :func:`mask_array`: vectorised over an Arrow array (RE2). The Kafka source computes the signature
  this way while a batch is still in Arrow form in its Python task: a small fraction of what eleven
  JVM regular expressions per row cost (each is tried at every position of the text);
* :func:`mask_column` / :func:`with_signature`: Spark built-ins, for frames that do not come from the
  source. ``with_signature`` (used by the job) runs a mask only on the texts holding a literal the mask
  cannot match without (``://`` for URLs, ``@`` for e-mail addresses...).

Signature ids are the first 16 hex digits of the signature's MD5 (:func:`signature_id`,
:func:`signature_ids` for an Arrow array, :func:`signature_id_column` on Spark).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

MAX_SIGNATURE_CHARS = 256
_TOKEN = "A-Za-z0-9_"
_NOT_TOKEN = "[^A-Za-z0-9_-]"
_END = "{END}"  # the end of the text: \Z in Python, \z in Java, $ in RE2 (all three: absolute end)
_SPACE = "[ \\t\\n\\x0b\\f\\r]"


def _hex_token() -> str:
    """A token of 8 or more hex digits with at least one digit and one letter a-f."""
    digit, letter, anyhex = "[0-9]", "[a-fA-F]", "[0-9a-fA-F]"
    shapes = []
    for first, then in ((digit, letter), (letter, digit)):
        shapes += [f"{first}{{{k}}}{then}{anyhex}{{{7 - k},}}" for k in range(1, 7)]
        shapes.append(f"{first}{{7,}}{then}{anyhex}*")
    return "(?:" + "|".join(shapes) + ")"


@dataclass(frozen=True)
class Mask:
    pattern: str  # with _END for the end of the text
    replacement: str  # groups as \\1
    needs: tuple[str, ...] | None = None  # a match needs one of these literals in the text (None: no test)
    passes: int = 1  # 2 when the pattern consumes a bordering character
    probe: str | None = None  # a simpler regex every text with a match also matches (a quick test first)

    def regex(self, engine: str) -> str:
        return self.pattern.replace(_END, {"python": "\\Z", "java": "\\z", "re2": "$"}[engine])

    def java_replacement(self) -> str:
        return re.sub(r"\\(\d)", r"$\1", self.replacement)


MASKS: tuple[Mask, ...] = (
    Mask("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "<uuid>", ("-",)),
    Mask("[A-Za-z][A-Za-z0-9+.-]*://[^ \\t\\n\\x0b\\f\\r\"'<>]+", "<url>", ("://",)),
    Mask("[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}", "<email>", ("@",)),
    Mask(f"(^|[^0-9.])((?:[0-9]{{1,3}}\\.){{3}}[0-9]{{1,3}}(?::[0-9]{{1,5}})?)([^0-9]|{_END})", "\\1<ip>\\3",
         (".",), passes=2, probe="[0-9]\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]"),
    Mask(f"(^|[^{_TOKEN}.~-])((?:/[{_TOKEN}.~%@+{{}}:-]+)+/?)", "\\1<path>", ("/",), passes=2,
         probe=f"/[{_TOKEN}.~%@+{{}}:-]"),
    Mask("0[xX][0-9a-fA-F]+", "<hex>", ("0x", "0X")),
    Mask(f"(^|{_NOT_TOKEN})({_hex_token()})({_NOT_TOKEN}|{_END})", "\\1<hex>\\3", passes=2,
         probe="[0-9a-fA-F]{8}"),
    Mask(f"(^|{_NOT_TOKEN})[0-9]+(?:\\.[0-9]+)?([A-Za-z]{{1,3}})({_NOT_TOKEN}|{_END})", "\\1<num>\\2\\3",
         passes=2, probe="[0-9][A-Za-z]"),  # 812ms, 30s
    Mask(f"(^|{_NOT_TOKEN})([_-]*(?:[0-9][0-9_-]*[A-Za-z]|[A-Za-z][A-Za-z_-]*[0-9])[A-Za-z0-9_-]*)"
         f"({_NOT_TOKEN}|{_END})", "\\1<id>\\3", passes=2, probe="[0-9][_-]*[A-Za-z]|[A-Za-z][_-]*[0-9]"),
    Mask("[0-9]+(?:[.,][0-9]+)*", "<num>"),
    # Collapsing changes nothing unless some whitespace is not a single plain space.
    Mask(f"{_SPACE}+", " ", ("  ", "\t", "\n", "\x0b", "\f", "\r")),
)

_COMPILED = tuple((re.compile(m.regex("python")), m.replacement, m.passes, m.needs,
                   re.compile(m.probe) if m.probe else None) for m in MASKS)


# --- one message (Python) ----------------------------------------------------------------------

def mask_message(message: str | None) -> str:
    """The signature of a message (the reference; same result as :func:`mask_array`, :func:`mask_column`)."""
    text = message or ""
    for pattern, replacement, passes, needs, probe in _COMPILED:
        if (needs and not any(literal in text for literal in needs)) or (probe and not probe.search(text)):
            continue  # cannot match: skip the (slower) full pattern
        for _ in range(passes):
            text, count = pattern.subn(replacement, text)
            if not count:
                break
    return text.strip(" ")[:MAX_SIGNATURE_CHARS]


def signature_id(signature: str) -> str:
    """A short stable id of a signature: the first 16 hex digits of its MD5."""
    return hashlib.md5(signature.encode("utf-8")).hexdigest()[:16]


# --- vectorised (Arrow, RE2) -------------------------------------------------------------------

def _where(text: pa.Array, rows: pa.Array, change: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """`text` with `change` applied to the rows where `rows` is true."""
    count = pc.sum(rows).as_py() or 0
    if count == 0:
        return text
    if count == len(text):
        return change(text)
    return pc.replace_with_mask(text, rows, change(text.filter(rows)))


def _apply(text: pa.Array, mask: Mask) -> pa.Array:
    pattern = mask.regex("re2")

    def replace(values: pa.Array) -> pa.Array:
        return pc.replace_substring_regex(values, pattern, mask.replacement)

    def masked(values: pa.Array) -> pa.Array:
        once = replace(values)
        if mask.passes == 1:
            return once
        return _where(once, pc.not_equal(values, once), replace)  # unchanged texts stay unchanged

    if mask.needs is None:
        return masked(text)
    rows = pc.match_substring(text, mask.needs[0])
    for literal in mask.needs[1:]:
        rows = pc.or_(rows, pc.match_substring(text, literal))
    return _where(text, rows, masked)


def mask_array(messages: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Signatures of an Arrow string array (a null message gives ""); same result as :func:`mask_message`."""
    if isinstance(messages, pa.ChunkedArray):
        messages = messages.combine_chunks()
    text = pc.fill_null(messages.cast(pa.string()), "")
    for mask in MASKS:
        text = _apply(text, mask)
    return pc.utf8_slice_codeunits(pc.utf8_trim(text, " "), 0, MAX_SIGNATURE_CHARS)


def mask_messages(messages: list[str | None]) -> list[str]:
    """:func:`mask_message` of many messages at once (vectorised, much faster than one by one)."""
    return mask_array(pa.array(messages, type=pa.string())).to_pylist()


def signature_ids(signatures: pa.Array) -> pa.Array:
    """:func:`signature_id` of each signature of an Arrow string array (each distinct one hashed once)."""
    encoded = pc.dictionary_encode(signatures)
    ids = pa.array([signature_id(s) for s in encoded.dictionary.to_pylist()], type=pa.string())
    return ids.take(encoded.indices)


# --- Spark built-ins ---------------------------------------------------------------------------

def _java_mask(text: Column, mask: Mask) -> Column:
    pattern, replacement = F.lit(mask.regex("java")), F.lit(mask.java_replacement())
    for _ in range(mask.passes):
        text = F.regexp_replace(text, pattern, replacement)
    return text


def mask_column(message: Column) -> Column:
    """The signature of a message column, with Spark built-in functions only."""
    text = F.coalesce(message, F.lit(""))
    for mask in MASKS:
        text = _java_mask(text, mask)
    return F.substring(F.trim(text), 1, MAX_SIGNATURE_CHARS)


def with_signature(df: DataFrame, message: str, signature: str, computed: str | None = None) -> DataFrame:
    """`df` with a column `signature` = :func:`mask_column` of column `message`, computed the fast way.

    `computed`: a column that already holds the signature for some rows (the source's); the masks then
    only run where it is null.
    """
    work = f"__{signature}_masked"
    start = F.coalesce(F.col(message), F.lit(""))
    if computed is not None:
        start = F.when(F.col(computed).isNull(), start)  # null text: every mask below skips the row
    df = df.withColumn(work, start)
    text = F.col(work)
    for mask in MASKS:
        masked = _java_mask(text, mask)
        if mask.needs is not None:
            needed = text.contains(mask.needs[0])
            for literal in mask.needs[1:]:
                needed = needed | text.contains(literal)
            masked = F.when(needed, masked).otherwise(text)
        # One projection per mask, so that the text is computed once however often a mask refers to it.
        df = df.withColumn(work, masked)
    result = F.substring(F.trim(text), 1, MAX_SIGNATURE_CHARS)
    if computed is not None:
        result = F.coalesce(F.col(computed), result)
    return df.withColumn(signature, result).drop(work)


def signature_id_column(signature: Column) -> Column:
    return F.substring(F.md5(signature), 1, 16)
