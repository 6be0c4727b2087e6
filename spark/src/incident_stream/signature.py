"""Error signatures in the job, vectorised over Arrow arrays (RE2), of the definition in
``incident_contracts.signature`` (masks, the reference :func:`mask_message`, :func:`signature_id`).

:func:`mask_array`: the Kafka source computes the signature this way while a batch is still in Arrow
form in its Python task: a small fraction of what eleven JVM regular expressions per row cost (each is
tried at every position of the text). A mask only runs on the texts holding a literal it cannot match
without (``://`` for URLs, ``@`` for e-mail addresses...). :func:`signature_ids` hashes each distinct
signature once. (tests/spark/enrich_oracle.py has the same with Spark built-ins, as a check.)
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from incident_contracts.signature import MASKS, MAX_SIGNATURE_CHARS, Mask, mask_message, signature_id

__all__ = ["MASKS", "MAX_SIGNATURE_CHARS", "Mask", "mask_array", "mask_message", "mask_messages", "signature_id",
           "signature_ids"]


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
