"""The Arrow enrichment of the source's ``events`` format (enrich_arrow.py) against enrich() on Spark."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest
from enrich_oracle import enrich
from enrichment_cases import START_MS, odd_records, spark_row
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql.pandas.types import to_arrow_schema

from incident_contracts.catalog import default_catalog
from incident_contracts.tables import EVENTS
from incident_stream.dead_letter import events_of
from incident_stream.enrich_arrow import ServiceLookup, enrich_batch
from incident_stream.kafka_source import logevent_schema
from incident_stream.signature import mask_messages, signature_id
from log_generator import api

pytestmark = pytest.mark.integration

CATALOG = default_catalog()
SERVICES = ServiceLookup.of(CATALOG)
ARROW = to_arrow_schema(logevent_schema(), timezone="UTC")


def _source_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as the Kafka source yields them: signature computed, read_time set."""
    rows = [spark_row(r, i) for i, r in enumerate(records)]
    for row, signature in zip(rows, mask_messages([r["message"] for r in rows]), strict=True):
        row.update(signature=signature, signature_id=signature_id(signature),
                   read_time=dt.datetime.fromtimestamp(START_MS / 1000 + 60.123456, dt.UTC))  # microseconds
    return rows


def _compare(spark: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    expected = [r.asDict() for r in enrich(events_of(spark.createDataFrame(rows, logevent_schema())), CATALOG)
                .orderBy("kafka_offset").collect()]
    got = enrich_batch(pa.RecordBatch.from_pylist(rows, schema=ARROW), SERVICES)
    assert got.schema.names == EVENTS.names
    got_rows = sorted(pa.Table.from_batches([got]).to_pylist(), key=lambda r: r["kafka_offset"])
    for row in (*expected, *got_rows):
        row["attributes"] = dict(row["attributes"] or {})
        for name in ("event_time", "ingest_time"):  # Spark collects naive UTC datetimes
            if row[name] is not None and row[name].tzinfo is not None:
                row[name] = row[name].astimezone(dt.UTC).replace(tzinfo=None)
        if row["latency_ms"] is not None:
            row["latency_ms"] = round(row["latency_ms"], 9)
    differences = [(e["event_id"], k, g[k], e[k]) for g, e in zip(got_rows, expected, strict=True) for k in e
                   if g[k] != e[k]]
    assert not differences and len(got_rows) == len(expected), differences[:10]
    return got_rows


def test_enrich_batch_gives_the_rows_of_enrich_on_spark(spark: Any) -> None:
    events, _truth = api.generate("mixed", rate=40, duration_s=30, seed=9, start_ms=START_MS)
    records = list(events) + odd_records()
    records.append({**records[0], "event_id": "late-night", "timestamp": 1_796_083_199_999})  # 23:59:59.999 UTC
    got = _compare(spark, _source_rows(records))
    assert {r["http_method"] for r in got} >= {"GET", "POST"}
    assert any(r["http_path"] == "/orders/12" for r in got)  # parsed from the message, query string cut
    assert {r["event_hour"] for r in got if r["event_id"] == "late-night"} == {23}


LEVELS = st.sampled_from([None, "", "info", " Warning ", "ERR", "fatal", "NOTICE", "bogus"])
MESSAGES = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.builds(lambda m, p, s, n, u: f"{m} {p} {s} in {n}{u}", st.sampled_from(["GET", "post", "DELETE"]),
              st.sampled_from(["/a", "/b/1?x=2", "/c?"]), st.integers(100, 599), st.integers(0, 5000),
              st.sampled_from(["ms", "s", "us", "µs", "sec", "m"])),
    st.builds(lambda s, t: f"upstream status={s} took {t}s", st.integers(100, 999), st.floats(0, 10).map(
        lambda f: round(f, 3))),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(LEVELS, MESSAGES, st.one_of(st.none(), st.integers(100, 599)),
                          st.one_of(st.none(), st.floats(0, 1e5)), st.sampled_from([" payment-service", "x"])),
                min_size=1, max_size=25))
def test_enrich_batch_matches_spark_on_any_fields(spark: Any, fields: list[tuple]) -> None:
    base = {"event_id": "e", "timestamp": START_MS, "environment": "prod", "host": "h", "logger": None,
            "trace_id": None, "span_id": None, "http_method": None, "http_path": None, "error_type": None,
            "attributes": {}}
    records = [{**base, "event_id": f"e{i}", "level": level, "message": message, "http_status": status,
                "latency_ms": latency, "service": service}
               for i, (level, message, status, latency, service) in enumerate(fields)]
    _compare(spark, _source_rows(records))


def test_the_event_date_is_strftimes_text_for_any_instant() -> None:
    import pyarrow.compute as pc

    from incident_stream.enrich_arrow import iso_date

    utc = dt.UTC
    instants = [dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=utc), dt.datetime(1970, 1, 1, tzinfo=utc),
                dt.datetime(2000, 2, 29, 12, tzinfo=utc), dt.datetime(2026, 12, 7, 23, 59, 59, 999_999, tzinfo=utc),
                dt.datetime(2038, 1, 19, 3, 14, 8, tzinfo=utc), None]
    for unit in ("s", "ms", "us"):
        stamps = pa.array(instants, pa.timestamp("us", tz="UTC")).cast(pa.timestamp(unit, tz="UTC"), safe=False)
        assert iso_date(stamps).to_pylist() == pc.strftime(stamps, format="%Y-%m-%d").to_pylist()
    assert iso_date(pa.array(instants, pa.timestamp("us", tz="UTC"))).to_pylist() == [
        "1969-12-31", "1970-01-01", "2000-02-29", "2026-12-07", "2038-01-19", None]
