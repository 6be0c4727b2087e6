"""Why a Kafka record did not become an event: the one vocabulary of the ``reason`` column of dead_letter.

The codec raises the decode reasons (:class:`incident_contracts.codec.DecodeError` carries one), the
checks after decoding (the Spark job's event checks, the batch decoder) add the last two. The
dashboard, the Airflow reconciliation and the benchmarks read the column as these values.
"""

from __future__ import annotations

from enum import StrEnum


class DeadLetterReason(StrEnum):
    # Decode: the bytes are not a log event the codec can read.
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    TRUNCATED = "truncated"
    BAD_MAGIC = "bad_magic"
    UNKNOWN_FINGERPRINT = "unknown_fingerprint"
    UNKNOWN_SCHEMA_ID = "unknown_schema_id"
    MALFORMED_BODY = "malformed_body"
    TRAILING_BYTES = "trailing_bytes"
    INVALID_NAME = "invalid_name"  # service, environment or host outside the name rule (codec.NAME_PATTERN)
    # After decoding: the event reads but its values are not acceptable.
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    INVALID_FIELD = "invalid_field"


DECODE_REASONS = frozenset(DeadLetterReason) - {DeadLetterReason.TIMESTAMP_OUT_OF_RANGE,
                                                 DeadLetterReason.INVALID_FIELD}
"""The reasons the codec itself raises; the others come from the checks after decoding."""
