"""Error signatures: the Python, vectorised (Arrow) and Spark implementations agree, and group failures."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from enrich_oracle import mask_column, signature_id_column, with_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incident_stream.signature import mask_array, mask_message, mask_messages, signature_id, signature_ids

# Text rich in what the masks look for: digits, hex, separators, slashes, dots, '@', ':' and odd whitespace.
PIECES = st.sampled_from([
    "GET", "/api/v1/orders/", "id=", "req-", "0x", "ff", "deadBEEF", "9f1c", "-", "_", ".", ":", "@", "/", "?",
    "=", "ms", "s ", "10.0.0.", "255", "http://", "user@example.com", "8f14e45f-ceea-467a-9575-8b1f5e7e0b3c",
    " ", "  ", "\t", "\n", "\u00a0", "\u2028", "\u3000", "é", "日本", "🙂", "<", ">", "'", '"', "v2", "3rd", "%",
    "1.2.3.4", "1.2.3.4:80", "12345678", "abcdef12", "a1b2c3d4e5", "5ms", "1.5s", "//", "\x0b", "\r", "~",
])
MESSAGES = st.lists(PIECES | st.text(max_size=6), max_size=14).map("".join) | st.text(max_size=80)
# Short texts over the characters at the masks' edges: token borders, dots, slashes, hex, units.
EDGY = st.text(alphabet="0123456789abcdefgxAFms.:-_/ @~%", max_size=40)


def spark_signatures(spark: Any, messages: list[str | None]) -> list[tuple[str, str, str]]:
    """(mask_column, with_signature, signature id) of each message, computed by Spark."""
    frame = spark.createDataFrame([(i, m) for i, m in enumerate(messages)], "i int, message string")
    rows = (with_signature(frame, "message", "fast").select("i", "fast", mask_column(frame.message).alias("plain"))
            .select("i", "plain", "fast", signature_id_column("plain").alias("signature_id"))
            .orderBy("i").collect())
    return [(r.plain, r.fast, r.signature_id) for r in rows]


@pytest.mark.integration
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(st.lists(MESSAGES | EDGY, min_size=1, max_size=40))
def test_spark_expressions_match_python(spark: Any, messages: list[str]) -> None:
    expected = [(mask_message(m), mask_message(m), signature_id(mask_message(m))) for m in messages]
    assert spark_signatures(spark, messages) == expected


@pytest.mark.integration
def test_null_message_has_an_empty_signature(spark: Any) -> None:
    assert spark_signatures(spark, [None]) == [("", "", signature_id(""))]
    assert mask_messages([None]) == [""] and mask_message(None) == ""


@settings(max_examples=400, deadline=None)
@given(st.lists(MESSAGES | EDGY, min_size=1, max_size=30))
def test_vectorised_masking_matches_python(messages: list[str]) -> None:
    expected = [mask_message(m) for m in messages]
    assert mask_messages(messages) == expected
    ids = signature_ids(mask_array(pa.array(messages, type=pa.string()))).to_pylist()
    assert ids == [signature_id(s) for s in expected]


@pytest.mark.parametrize(("message", "signature"), [
    ("hosts 10.0.0.1 10.0.0.2:80,10.0.0.3", "hosts <ip> <ip>,<ip>"),  # neighbours sharing one border
    ("took 5ms then 10ms then 1.5s", "took <num>ms then <num>ms then <num>s"),
    ("ids a1 b2 c3-x", "ids <id> <id> <id>"),
    ("digest 12345678 and deadbeef and 1234abcd", "digest <num> and deadbeef and <hex>"),
    ("see /a/b//c and x/y", "see <path><path> and x/y"),
])
def test_masks_on_neighbouring_tokens(message: str, signature: str) -> None:
    assert mask_message(message) == signature
    assert mask_messages([message]) == [signature]
