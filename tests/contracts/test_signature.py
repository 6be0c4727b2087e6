"""The signature definition (the reference implementation): the same failure with other values groups
together, different failures stay apart. That the Arrow and Spark implementations agree with it is
tested in tests/spark/test_signature_engines.py."""

from __future__ import annotations

import pytest

from incident_contracts.signature import MAX_SIGNATURE_CHARS, mask_message, signature_id


@pytest.mark.parametrize(("a", "b"), [
    ("Timeout after 3000ms calling payments at 10.0.0.12:8443 (req-8f3a2)",
     "Timeout after 250ms calling payments at 10.0.3.7:8443 (req-0c11d)"),
    ("user 8f14e45f-ceea-467a-9575-8b1f5e7e0b3c not found", "user 1d3a9b2c-0000-4000-8000-000000000001 not found"),
    ("GET /api/v1/orders/123 returned 503", "GET /api/v1/orders/98765 returned 503"),
    ("segfault at 0x7ffd5a2b in worker pay-1", "segfault at 0x00ab in worker pay-7"),
    ("trace 4bf92f3577b34da6a3ce929d0e0e4736 failed", "trace 00f067aa0ba902b7 failed"),
    ("mail to alice@example.com bounced", "mail to bob.smith@corp.example.org bounced"),
])
def test_same_failure_with_different_values_groups_together(a: str, b: str) -> None:
    assert mask_message(a) == mask_message(b)
    assert signature_id(mask_message(a)) == signature_id(mask_message(b))


def test_different_failures_stay_apart() -> None:
    assert mask_message("connection refused by postgres-primary") != mask_message("connection reset by redis-cache")
    assert mask_message("GET /orders returned 503 in 81ms") == "GET <path> returned <num> in <num>ms"


def test_signature_is_bounded_and_trimmed() -> None:
    assert mask_message("  spaced \t out \n ") == "spaced out"
    assert len(mask_message("word " * 200)) == MAX_SIGNATURE_CHARS == 256


def test_signature_id_is_the_first_sixteen_hex_digits_of_the_md5() -> None:
    # Known values, computed outside this code base (`printf %s "GET <path> returned <num>" | md5sum`): the
    # id is the same in every process, language and release, so stored ids keep matching new ones.
    assert signature_id("GET <path> returned <num>") == "cef6d83f537c6e85"
    assert signature_id("") == "d41d8cd98f00b204"
    assert signature_id("é") == "66ddcd97cfdeabb2"  # hashed as UTF-8 (Latin-1 would give 34068776...)
    assert signature_id("a") != signature_id("b")
