"""generate(): determinism, the event-time grid, the record shape, and wire bytes equal to the codec's."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from incident_contracts.codec import Codec
from incident_contracts.fast_encode import FastEncoder
from log_generator import api, wire
from log_generator.simulation import build_simulation

START_MS = 1_795_000_000_000
FIELDS = {"event_id", "timestamp", "service", "environment", "host", "level", "logger", "message", "trace_id",
          "span_id", "http_method", "http_path", "http_status", "latency_ms", "error_type", "attributes"}


def test_same_seed_same_events_and_ground_truth() -> None:
    a, truth_a = api.generate("mixed", rate=800, duration_s=30, seed=11, start_ms=START_MS)
    b, truth_b = api.generate("mixed", rate=800, duration_s=30, seed=11, start_ms=START_MS)
    assert list(a) == list(b)
    assert truth_a.to_dict() == truth_b.to_dict()


def test_different_seed_different_events() -> None:
    a, _ = api.generate("none", rate=500, count=2000, seed=1, start_ms=START_MS)
    b, _ = api.generate("none", rate=500, count=2000, seed=2, start_ms=START_MS)
    a_list, b_list = list(a), list(b)
    assert [e["message"] for e in a_list] != [e["message"] for e in b_list]
    assert {e["event_id"] for e in a_list}.isdisjoint({e["event_id"] for e in b_list})


def test_count_is_a_prefix_of_the_duration_run() -> None:
    by_count, _ = api.generate("none", rate=700, count=1234, seed=5, start_ms=START_MS)
    by_duration, _ = api.generate("none", rate=700, duration_s=5, seed=5, start_ms=START_MS)
    assert list(by_count) == list(itertools.islice(by_duration, 1234))


@pytest.mark.parametrize(("rate", "duration"), [(100, 7), (2500, 4), (333.3, 3)])
def test_exact_rate_on_the_event_time_grid(rate: float, duration: float) -> None:
    events, truth = api.generate("none", rate=rate, duration_s=duration, seed=1, start_ms=START_MS)
    ts = np.array([e["timestamp"] for e in events])
    assert len(ts) == int(np.ceil(rate * duration - 1e-9))
    assert np.all(np.diff(ts) >= 0), "events must come in event-time order"
    assert ts[0] == START_MS and ts[-1] < START_MS + duration * 1000
    per_second = np.bincount((ts - START_MS) // 1000)
    assert per_second.min() >= int(rate) and per_second.max() <= int(np.ceil(rate))
    assert truth.end_ms == START_MS + int(np.ceil(len(ts) * 1000 / rate))


def test_endless_stream_grows_its_ground_truth() -> None:
    events, truth = api.generate("mixed", rate=2, seed=2, start_ms=START_MS)
    assert truth.end_ms is None and truth.incidents == []
    consumed = list(itertools.islice(events, 2 * 400))  # 400 s of event time: two 300 s cycles
    assert consumed[-1]["timestamp"] >= START_MS + 399_000
    assert len(truth.incidents) >= 2, "incidents are planned cycle by cycle as the stream goes on"


def test_records_have_the_schema_shape_and_encode(generated) -> None:
    events, _ = generated("mixed")
    codec = Codec()
    for event in events[:3000]:
        assert set(event) == FIELDS
        codec.decode(codec.encode(event))  # fits the schema
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == len(ids), "event ids are unique within a run"
    assert all(len(i) == 36 and i.count("-") == 4 for i in ids[:100])


def test_realistic_mix_of_services_levels_and_lines(generated) -> None:
    events, _ = generated("none")
    services = Counter(e["service"] for e in events)
    assert len(services) >= 12
    assert services.most_common(1)[0][0] == "api-gateway"  # every request passes the edge
    levels = Counter(e["level"] for e in events)
    assert levels["INFO"] > levels["DEBUG"] > levels["WARN"] > levels["ERROR"] > 0
    error_share = (levels["ERROR"] + levels["FATAL"]) / len(events)
    assert 0.0005 < error_share < 0.01, "normal traffic has a small baseline error rate"
    access = [e for e in events if e["http_status"] is not None]
    assert 0.4 < len(access) / len(events) < 0.8
    assert all(e["http_method"] and e["http_path"].startswith("/") and e["latency_ms"] > 0 for e in access)
    assert all(e["message"].strip() for e in events)
    assert not any(e["attributes"].get("scenario") for e in events), "no incident tags without incidents"
    messages = {e["message"] for e in events}
    assert len(messages) > len(events) / 3, "lines vary, they are not a handful of fixed strings"
    assert any("\n\tat " in m for m in messages), "application errors carry stack traces"
    assert any("[gc] GC(" in m for m in messages) and any("rolled out to" in m for m in messages)


def test_latency_follows_the_catalog_percentiles(generated) -> None:
    events, _ = generated("none", rate=1000, duration_s=40)
    lat = np.array([e["latency_ms"] for e in events if e["service"] == "order-service"
                    and e["http_status"] is not None and e["http_status"] < 500])
    assert len(lat) > 2000
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    assert 33 < p50 < 44 and 125 < p95 < 180 and 320 < p99 < 560  # catalog: 38 / 150 / 420 ms


def test_wire_messages_are_the_codec_bytes_of_the_records() -> None:
    """The fast path (pre-encoded variants + numpy heads) writes what Codec.encode writes for each dict."""
    # 40k events/s reuses pooled variants (the high-rate path), and the short run still has incidents.
    codec = Codec()
    header = FastEncoder.for_codec(codec).header
    sim_a = build_simulation("mixed", rate=40_000, duration_s=1.2, seed=9, start_ms=START_MS)
    sim_b = build_simulation("mixed", rate=40_000, duration_s=1.2, seed=9, start_ms=START_MS)
    records = list(sim_a.records())
    messages = [m for block in sim_b.blocks() for m in wire.messages(block, header, sim_b.prefix)]
    assert len(records) == len(messages) == 48_000
    assert any(r["attributes"].get("scenario") for r in records)
    for i in range(0, len(records), 11):
        assert messages[i] == codec.encode(records[i]), f"event {i} differs"
    # Confluent framing (schema registry): only the header differs
    confluent = Codec(registry_id=7)
    sim_c = build_simulation("bad_deploy", rate=500, count=3000, seed=9, start_ms=START_MS)
    block = next(sim_c.blocks())
    records = wire.records(block, sim_c.prefix, sim_c.environment)
    framed = wire.messages(block, FastEncoder.for_codec(confluent).header, sim_c.prefix)
    assert framed == [confluent.encode(r) for r in records]


def test_catalog_argument_accepts_a_file(tmp_path) -> None:
    catalog = tmp_path / "tiny.yaml"
    catalog.write_text(
        "services:\n"
        "  - {name: web, tier: 1, owner: me, hosts: [web-1], depends_on: [db], endpoints: ['GET /x/{id}']}\n"
        "  - {name: db, kind: database, runtime: native, tier: 1, owner: me, hosts: [db-1]}\n",
        encoding="utf-8",
    )
    events, truth = api.generate("db_pool_exhaustion", rate=200, duration_s=60, seed=1, start_ms=START_MS,
                                 catalog=str(catalog))
    seen = Counter(e["service"] for e in events)
    assert set(seen) == {"web", "db"}
    assert truth.incidents[0].origin_service == "db" and truth.incidents[0].affected_services == ["db", "web"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rate": 0}, "rate must be a positive"),
    ({"rate": 10, "duration_s": -1}, "duration must be a positive"),
    ({"rate": 10, "count": 0}, "count must be a positive"),
    ({"rate": 10, "scenario": "meteor_strike"}, "unknown scenario 'meteor_strike'"),
    ({"rate": 10, "scenario": "bad_deploy", "origin": "nope"}, "origin service 'nope' is not in the catalog"),
])
def test_bad_arguments_are_explained(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        events, _ = api.generate(**kwargs)
        next(events)
