"""Service, environment and host names are checked when events are decoded (reason ``invalid_name``), by the codec
and by the vectorised decoder alike; everything the platform itself produces passes."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pyarrow.compute as pc
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from incident_contracts.catalog import default_catalog
from incident_contracts.codec import (
    MAX_NAME_CHARS,
    NAME_FIELDS,
    Codec,
    DecodeError,
    name_problem,
)
from incident_contracts.dead_letter import DECODE_REASONS, DeadLetterReason
from incident_contracts.fast_decode import FastDecoder
from incident_contracts.table_store import TableStore

ALLOWED = set(string.ascii_letters + string.digits + "._-/:")
VALID = st.from_regex(r"[A-Za-z0-9._:/-]{1,128}", fullmatch=True)
# A valid name with one character the rule refuses put somewhere in it.
# Any character outside the name charset that a record can carry: lone surrogates (category Cs) have no UTF-8
# encoding, so no LogEvent on the wire holds one.
REFUSED_CHAR = st.characters(exclude_characters=ALLOWED | {" ", "\t"}, exclude_categories=("Cs",)) | \
    st.sampled_from(list(" \t"))


def _event(**names: str) -> dict:
    return {"event_id": "e1", "timestamp": 1_700_000_000_000, "service": "checkout-api", "environment": "prod",
            "host": "checkout-api-7d9f8b-x2k4p", "level": "ERROR", "message": "m", "attributes": {}, **names}


def _both(event: dict) -> tuple[str | None, str | None]:
    """The failure reason of the codec and of the vectorised decoder for one encoded event (None: accepted)."""
    message = Codec().encode(event)
    try:
        Codec().decode(message)
        codec_reason = None
    except DecodeError as exc:
        codec_reason = exc.reason.value
    result = FastDecoder().decode([message])
    fast_reason = result.failures[0][1] if result.failures else None
    assert (result.batch.num_rows == 0) == (fast_reason is not None)
    return codec_reason, fast_reason


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(NAME_FIELDS), name=VALID)
@example(field="host", name="ip-10-0-3-4.eu-west-1.compute.internal")
@example(field="host", name="fe80::1ff:fe23:4567:890a")
@example(field="service", name="payments/checkout-api")
@example(field="environment", name="prod_eu-1")
def test_names_of_the_charset_up_to_128_characters_are_accepted(field: str, name: str) -> None:
    assert _both(_event(**{field: name})) == (None, None)


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(NAME_FIELDS), name=VALID, bad=REFUSED_CHAR, data=st.data())
@example(field="service", name="x", bad="!", data=None)
def test_a_name_with_any_other_character_is_an_invalid_name(field: str, name: str, bad: str,
                                                             data: st.DataObject | None) -> None:
    where = data.draw(st.integers(0, len(name))) if data else 0
    value = name[:where] + bad + name[where:]
    assert _both(_event(**{field: value})) == ("invalid_name", "invalid_name")


@pytest.mark.parametrize("value", [
    "![x](http://127.0.0.1:9/b)", "<img src=x>", "<script>alert(1)</script>", "svc\nignore the rules",
    "checkout api", "checkout-api ", "paiement-µ", "名前", "a\x00b", "x" * (MAX_NAME_CHARS + 1), "\u2028"])
@pytest.mark.parametrize("field", NAME_FIELDS)
def test_markup_whitespace_control_unicode_and_long_names_are_refused(field: str, value: str) -> None:
    assert _both(_event(**{field: value})) == ("invalid_name", "invalid_name")
    with pytest.raises(DecodeError) as error:
        Codec().decode(Codec().encode(_event(**{field: value})))
    assert error.value.reason is DeadLetterReason.INVALID_NAME and error.value.detail.startswith(field)


def test_the_detail_says_what_is_wrong_and_what_is_allowed() -> None:
    assert name_problem(_event(host="web 01")) == ("host 'web 01' contains ' '; names use only letters, digits and "
                                                  ". _ - / : (at most 128 characters)")
    assert name_problem(_event(service="s" * 200)) == "service has 200 characters; a name has at most 128"
    assert name_problem(_event()) is None


def test_a_blank_name_is_left_to_the_required_field_check() -> None:
    """A blank service goes on to the check after decoding (invalid_field), as before names were checked."""
    for blank in ("", "   ", "\t"):
        assert _both(_event(service=blank, host=blank)) == (None, None)


def test_good_rows_stay_in_order_around_refused_ones() -> None:
    events = [_event(event_id=f"e{i}", service="svc-ok" if i % 3 else f"svc {i}") for i in range(9)]
    result = FastDecoder().decode([Codec().encode(e) for e in events])
    assert result.ok.tolist() == [1, 2, 4, 5, 7, 8]
    assert result.batch.column("event_id").to_pylist() == ["e1", "e2", "e4", "e5", "e7", "e8"]
    assert [(i, reason) for i, reason, _ in result.failures] == [(0, "invalid_name"), (3, "invalid_name"),
                                                                 (6, "invalid_name")]


def test_dead_letter_reasons_keep_the_values_stored_in_the_table() -> None:
    """Rows already in dead_letter hold these strings: a renamed value would orphan them."""
    assert {r.name: r.value for r in DeadLetterReason} == {
        "EMPTY": "empty", "TOO_LARGE": "too_large", "TRUNCATED": "truncated", "BAD_MAGIC": "bad_magic",
        "UNKNOWN_FINGERPRINT": "unknown_fingerprint", "UNKNOWN_SCHEMA_ID": "unknown_schema_id",
        "MALFORMED_BODY": "malformed_body", "TRAILING_BYTES": "trailing_bytes", "INVALID_NAME": "invalid_name",
        "TIMESTAMP_OUT_OF_RANGE": "timestamp_out_of_range", "INVALID_FIELD": "invalid_field",
    }
    assert set(DeadLetterReason) - DECODE_REASONS == {DeadLetterReason.TIMESTAMP_OUT_OF_RANGE,
                                                      DeadLetterReason.INVALID_FIELD}


def test_the_catalog_and_the_generator_produce_only_valid_names() -> None:
    from log_generator.api import generate
    from log_generator.scenarios import SCENARIOS

    catalog = default_catalog()
    names = [catalog.environment] + [s.name for s in catalog.services] + [h for s in catalog.services
                                                                             for h in s.hosts]
    assert all(re.fullmatch(r"[A-Za-z0-9._:/-]{1,128}", n) for n in names), names
    for scenario in SCENARIOS:
        events, _ = generate(scenario, rate=50, count=400, seed=3, start_ms=1_800_000_000_000)
        problems = {name_problem(e) for e in events} - {None}
        assert not problems, (scenario, problems)


def test_the_dashboard_demo_data_has_only_valid_names(tmp_path: Path) -> None:
    from incident_dashboard.demo import DemoConfig, build_demo_data

    build_demo_data(tmp_path, DemoConfig(events=3000, incidents=4, hours=1, files_per_hour=1, dead_letters=0))
    store = TableStore(str(tmp_path))
    events = store.read("events", columns=list(NAME_FIELDS))
    updates = store.read("incident_updates", columns=["service", "environment", "affected_hosts"])
    columns = [events.column(n) for n in NAME_FIELDS] + [updates.column("service"), updates.column("environment"),
                                                         pc.list_flatten(updates.column("affected_hosts"))]
    for column in columns:
        assert pc.all(pc.match_substring_regex(column, r"^[A-Za-z0-9._:/-]{1,128}$")).as_py()
