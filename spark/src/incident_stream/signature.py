"""Error signatures in the job: the vectorised (Arrow, RE2) and Spark implementations of the definition in
``incident_contracts.signature`` (masks, the reference :func:`mask_message`, :func:`signature_id`).

* :func:`mask_array`: vectorised over an Arrow array (RE2). The Kafka source computes the signature
  this way while a batch is still in Arrow form in its Python task: a small fraction of what eleven
  JVM regular expressions per row cost (each is tried at every position of the text);
* :func:`mask_column` / :func:`with_signature`: Spark built-ins, for frames that do not come from the
  source. ``with_signature`` (used by the job) runs a mask only on the texts holding a literal the mask
  cannot match without (``://`` for URLs, ``@`` for e-mail addresses...).

Signature ids: :func:`signature_ids` for an Arrow array, :func:`signature_id_column` on Spark.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from incident_contracts.signature import MASKS, MAX_SIGNATURE_CHARS, Mask, mask_message, signature_id

__all__ = ["MASKS", "MAX_SIGNATURE_CHARS", "Mask", "mask_array", "mask_column", "mask_message", "mask_messages",
           "signature_id", "signature_id_column", "signature_ids", "with_signature"]


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
