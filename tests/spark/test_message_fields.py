"""The probes of message_fields.py: every message a parser finds a value in matches its probe (RE2, as the
Arrow enrichment runs it), so filtering on the probe never loses a value."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from incident_stream.message_fields import (
    LATENCY_PROBE,
    REQUEST_PROBE,
    STATUS_PROBE,
    parse_latency,
    parse_request,
    parse_status,
)

FRAGMENTS = st.sampled_from([
    "GET", "post", "DELETE", "PATCH", " ", "  ", "/", "/orders/12", "?x=1", "HTTP/1.1", '"', "->", "=>",
    "returned", "status", "STATUS", "Status", "ſtatus", "code", "CODE", "Kode", "=", ":", "200", "503", "5030",
    "99", "latency", "took", "TOOK", "duration", "elapsed", "time", "in", "IN", "after", "1.5", "250", "ms",
    "s", "sec", "us", "µs", "msec", "x", "é", "\t", "ı", "İ", "ſ", "K",
])
MESSAGES = st.one_of(st.lists(FRAGMENTS, max_size=12).map("".join),
                     st.lists(FRAGMENTS, max_size=12).map(" ".join),
                     st.text(max_size=40))


def probe_matches(texts: list[str], probe: str) -> list[bool]:
    return pc.match_substring_regex(pa.array(texts, pa.string()), probe).to_pylist()


def test_probes_match_the_messages_with_values() -> None:
    texts = ['GET /orders/12 HTTP/1.1" 503', "upstream status=502", "error code: 404", "took 1.5s",
             "latency=250us", "request done in 12ms", "cache hit key=session:abc", "retrying call to db:5432"]
    assert probe_matches(texts, REQUEST_PROBE) == [True, False, False, False, False, False, False, False]
    assert probe_matches(texts, STATUS_PROBE) == [True, True, True, False, False, False, False, False]
    assert probe_matches(texts, LATENCY_PROBE) == [False, False, False, True, True, True, False, False]
    assert [parse_status(t) for t in texts[:3]] == [503, 502, 404]
    assert [parse_latency(t) for t in texts[3:6]] == [1500.0, 0.25, 12.0]


def test_parsers_fold_case_for_ascii_letters_only_as_java_does() -> None:
    assert parse_status("STATUS=503") == 503 and parse_latency("TOOK 5ms") == 5.0
    assert parse_status("ſtatus=503") is None  # Java's (?i) in enrich.py: ASCII letters only
    assert parse_latency("ıN 5ms") is None and parse_latency("İn 5ms") is None


@settings(max_examples=400, deadline=None)
@given(st.lists(MESSAGES, min_size=1, max_size=20))
def test_a_message_with_a_value_always_matches_the_probe(texts: list[str]) -> None:
    for probe, found in ((REQUEST_PROBE, lambda t: parse_request(t) != (None, None)),
                         (STATUS_PROBE, lambda t: parse_status(t) is not None),
                         (LATENCY_PROBE, lambda t: parse_latency(t) is not None)):
        missed = [t for t, matched in zip(texts, probe_matches(texts, probe), strict=True)
                  if found(t) and not matched]
        assert not missed, (probe, missed)
