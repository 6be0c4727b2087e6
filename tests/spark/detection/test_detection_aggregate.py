"""The Arrow aggregation of events into partial buckets (aggregate.Reduced): checked against the pandas
reference (bucket_oracle.aggregate_frame) on random events split into batches in many ways, and on small
cases whose buckets are written out by hand."""

from __future__ import annotations

import random
import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
from bucket_oracle import aggregate_frame
from detection_synthetic import T0_MS
from hypothesis import given, settings
from hypothesis import strategies as st

from incident_stream.detection import histogram
from incident_stream.detection.aggregate import Reduced
from incident_stream.detection.buckets import INPUT_COLUMNS, BucketAgg, merge_into
from incident_stream.detection.partials import PartialBuckets, decode
from incident_stream.detection.view import VIEW_SCHEMA

ENVIRONMENTS = ("prod", "staging", "dev")
# service -> (tier, owner): the same on every line of a service, as the catalog gives them
SERVICES = {"api": ("1", "web-team"), "db": ("0", "data-team"), "mail": (None, "ops"), "queue": ("2", None)}
HOSTS = ("h1", "h2", "h3")
SIGNATURES = ("request ok", "timeout after <n> ms", "pool exhausted", "")
LATENCIES = (None, float("nan"), -1.0, 0.0, 0.05, 3.0, 3.0, 12.5, 250.0, 9e5)


def _signature_id(signature: str) -> str:
    return f"sig-{zlib.crc32(signature.encode()):08x}" if signature else ""


def _table(frame: pd.DataFrame) -> pa.Table:
    frame = frame if "ahead" in frame else frame.assign(ahead=False)
    return pa.Table.from_pandas(frame[VIEW_SCHEMA.names], schema=VIEW_SCHEMA, preserve_index=False)


def _fields(agg: BucketAgg) -> dict:
    """Every field of a bucket, comparable with ==."""
    return {"n": agg.n, "errors": agg.errors, "warns": agg.warns, "lat": agg.lat.tolist(), "sigs": agg.sigs,
            "hosts": agg.hosts, "slow": agg.slow, "first_err": agg.first_err, "last_err": agg.last_err,
            "first_warn": agg.first_warn, "last_warn": agg.last_warn, "tier": agg.tier, "owner": agg.owner}


def _by_env(parts: dict[str, dict]) -> dict[str, dict]:
    return {env: {key: _fields(agg) for key, agg in buckets.items()} for env, buckets in parts.items()}


def _oracle(frame: pd.DataFrame, bucket_ms: int, k: int) -> dict[str, dict]:
    out = {}
    for env, rows in frame.groupby("environment", sort=True):
        out[env] = {key: _fields(agg) for key, agg in
                    aggregate_frame(rows[list(INPUT_COLUMNS)].reset_index(drop=True), bucket_ms, k).items()}
    return out


def _reduce(rows: list[dict], k: int, bucket_ms: int = 1000) -> Reduced:
    frame = pd.DataFrame([{"environment": "prod", "service": "api", "host": "h1", "is_error": False,
                           "is_warn": False, "latency_ms": None, "signature": "s", "signature_id": "sig-s",
                           "message": "m", "tier": "1", "owner": "o", **row} for row in rows])
    return Reduced.of_events(_table(frame), bucket_ms, k)


def _every_split(rows: list[dict], k: int, bucket_ms: int = 1000) -> list[dict]:
    """The buckets of `rows` reduced at once, one row a batch (combined, and merged as BucketAggs), and in
    reverse order: all the same, or the test fails here."""
    whole = _by_env(_reduce(rows, k, bucket_ms).parts())
    singles = [_reduce([row], k, bucket_ms) for row in rows]
    assert _by_env(Reduced.combine(singles, k).parts()) == whole
    assert _by_env(Reduced.combine(singles[::-1], k).parts()) == whole
    merged: dict = {}
    for single in singles[::-1]:
        for key, agg in single.parts()["prod"].items():
            merge_into(merged, key, agg, k)
    assert {key: _fields(agg) for key, agg in merged.items()} == whole["prod"]
    return whole["prod"]


# --- against the oracle ---------------------------------------------------------------------------------
@st.composite
def event_frames(draw) -> pd.DataFrame:
    """Events of several environments and services; times on a coarse grid, so lines often share a time."""
    size = draw(st.integers(1, 80))
    rows = []
    for _ in range(size):
        service = draw(st.sampled_from(sorted(SERVICES)))
        signature = draw(st.sampled_from(SIGNATURES))
        variant = draw(st.sampled_from(("", " #1", " #2", None)))
        is_error = draw(st.sampled_from((False, False, True, None)))
        is_warn = draw(st.sampled_from((False, True, None)))
        # a line without a message has no signature (the view fills both with "")
        message = None if variant is None else f"line: {signature}{variant}"
        signature = "" if message is None else signature
        tier, owner = SERVICES[service]
        rows.append({
            "environment": draw(st.sampled_from(ENVIRONMENTS)),
            "t_ms": T0_MS + 50 * draw(st.integers(0, 40)),
            "service": service,
            "host": draw(st.sampled_from(HOSTS)),
            "is_error": is_error,
            "is_warn": is_warn,
            "latency_ms": draw(st.one_of(st.sampled_from(LATENCIES), st.floats(0, 5000, allow_nan=False))),
            "signature": signature, "signature_id": _signature_id(signature), "message": message,
            "tier": tier, "owner": owner,
        })
    return pd.DataFrame(rows)


@settings(max_examples=60, deadline=None)
@given(frame=event_frames(), bucket_ms=st.sampled_from((250, 300, 1000)), k=st.integers(1, 4),
       split=st.sampled_from(("contiguous", "interleaved", "shuffled")), batches=st.integers(1, 6),
       seed=st.integers(0, 2**16))
def test_arrow_aggregation_equals_the_oracle_however_the_events_are_batched(frame, bucket_ms, k, split, batches,
                                                                             seed):
    expected = _oracle(frame, bucket_ms, k)
    table = _table(frame)
    rng = random.Random(seed)
    order = list(range(len(frame)))
    if split == "shuffled":
        rng.shuffle(order)
    if split == "interleaved":
        pieces = [order[i::batches] for i in range(batches)]
    else:
        cuts = sorted(rng.sample(range(1, len(order)), min(batches - 1, len(order) - 1)))
        pieces = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)]
    reduced = [Reduced.of_events(table.take(pa.array(piece, pa.int64())), bucket_ms, k) for piece in pieces if piece]

    assert _by_env(Reduced.of_events(table, bucket_ms, k).parts()) == expected
    assert _by_env(Reduced.combine(reduced, k).parts()) == expected
    # as a task combines: a few batches at a time, then the partial combinations
    nested = [Reduced.combine(reduced[i:i + 2], k) for i in range(0, len(reduced), 2)]
    assert _by_env(Reduced.combine(nested, k).parts()) == expected
    # as the detector merges the partial buckets of several tasks (BucketAgg.merge)
    merged: dict[str, dict] = {}
    for part in reduced:
        for env, buckets in part.parts().items():
            for key, agg in buckets.items():
                merge_into(merged.setdefault(env, {}), key, agg, k)
    assert _by_env(merged) == expected
    newest = frame.groupby("environment")["t_ms"].max()
    assert Reduced.combine(reduced, k).newest() == {env: int(t) for env, t in newest.items()}


# --- small cases ------------------------------------------------------------------------------------------
def test_slowest_ties_are_broken_by_time_then_host_then_message():
    rows = [
        {"t_ms": T0_MS + 5, "host": "h1", "latency_ms": 80.0, "message": "b"},
        {"t_ms": T0_MS + 5, "host": "h1", "latency_ms": 80.0, "message": None},
        {"t_ms": T0_MS + 5, "host": "h1", "latency_ms": 80.0, "message": "a"},
        {"t_ms": T0_MS + 5, "host": "h0", "latency_ms": 80.0, "message": "z"},
        {"t_ms": T0_MS + 3, "host": "h9", "latency_ms": 80.0, "message": "z"},
        {"t_ms": T0_MS + 1, "host": "h0", "latency_ms": 79.9, "message": "a"},  # faster: never before the 80s
        {"t_ms": T0_MS + 9, "host": "h0", "latency_ms": 81.0, "message": "q"},
        {"t_ms": T0_MS + 2, "host": "h0", "latency_ms": None, "message": "a"},  # no latency: not a request
    ]
    slow = _every_split(rows, 5)[("api", T0_MS // 1000)]["slow"]
    assert [(s[0], s[1] - T0_MS, s[2], s[5]) for s in slow] == [
        (81.0, 9, "h0", "q"), (80.0, 3, "h9", "z"), (80.0, 5, "h0", "z"), (80.0, 5, "h1", "a"), (80.0, 5, "h1", "b")]
    assert slow[0][3:5] == ["sig-s", "s"]
    k7 = _every_split(rows, 7)[("api", T0_MS // 1000)]["slow"]
    assert [(s[1] - T0_MS, s[5]) for s in k7[5:]] == [(5, None), (1, "a")]  # a null message after any text


def test_the_sample_of_a_signature_is_its_earliest_line_ties_by_message():
    rows = [
        {"t_ms": T0_MS + 7, "is_error": True, "signature_id": "x", "signature": "X", "message": "a early?"},
        {"t_ms": T0_MS + 4, "is_error": True, "signature_id": "x", "signature": "X", "message": "c"},
        {"t_ms": T0_MS + 4, "is_warn": True, "signature_id": "x", "signature": "X", "message": "b"},
        {"t_ms": T0_MS + 4, "is_error": True, "signature_id": "x", "signature": "X", "message": None},
        {"t_ms": T0_MS + 2, "is_warn": True, "signature_id": "y", "signature": "Y", "message": None},
        {"t_ms": T0_MS + 1, "signature_id": "y", "signature": "Y", "message": "not a problem line"},
    ]
    sigs = _every_split(rows, 1)[("api", T0_MS // 1000)]["sigs"]
    # [signature, lines, sample, sample time, error lines]
    assert sigs == {"x": ["X", 4, "b", T0_MS + 4, 3], "y": ["Y", 1, None, T0_MS + 2, 0]}


def test_a_null_message_on_the_earliest_line_is_its_sample():
    rows = [{"t_ms": T0_MS + 3, "is_error": True, "message": "later"},
            {"t_ms": T0_MS + 1, "is_error": True, "message": None}]
    sigs = _every_split(rows, 1)[("api", T0_MS // 1000)]["sigs"]
    assert sigs == {"sig-s": ["s", 2, None, T0_MS + 1, 2]}  # the message and time of one line, the earliest


def test_warnings_leave_out_error_lines():
    rows = [
        {"t_ms": T0_MS + 10, "is_error": True, "is_warn": True, "host": "h1"},
        {"t_ms": T0_MS + 20, "is_error": False, "is_warn": True, "host": "h2"},
        {"t_ms": T0_MS + 30, "is_error": None, "is_warn": True, "host": "h2"},
        {"t_ms": T0_MS + 40, "is_error": True, "is_warn": None, "host": "h1"},
        {"t_ms": T0_MS + 50, "is_error": None, "is_warn": None, "host": "h3"},
        {"t_ms": T0_MS + 1010, "is_error": True, "is_warn": True, "host": "h3"},
    ]
    buckets = _every_split(rows, 1)
    first, second = buckets[("api", T0_MS // 1000)], buckets[("api", T0_MS // 1000 + 1)]
    assert (first["n"], first["errors"], first["warns"]) == (5, 2, 2)
    assert (first["first_err"], first["last_err"]) == (T0_MS + 10, T0_MS + 40)
    assert (first["first_warn"], first["last_warn"]) == (T0_MS + 20, T0_MS + 30)
    assert first["hosts"] == {"h1": 2, "h2": 2}  # problem lines, each counted once
    assert first["sigs"]["sig-s"][1] == 4 and first["sigs"]["sig-s"][4] == 2
    assert (second["n"], second["errors"], second["warns"], second["first_warn"]) == (1, 1, 0, None)


def test_latency_histogram_counts_only_measured_non_negative_latencies():
    rows = [{"t_ms": T0_MS + i, "latency_ms": lat} for i, lat in
            enumerate([None, float("nan"), float("inf"), -0.5, 0.0, 0.05, 1.0, 1.0, 400.0])]
    agg = _every_split(rows, 2)[("api", T0_MS // 1000)]
    expected = np.bincount(histogram.bin_index(np.array([0.0, 0.05, 1.0, 1.0, 400.0])), minlength=histogram.NUM_BINS)
    assert agg["lat"] == expected.tolist() and agg["lat"][0] == 2 and sum(agg["lat"]) == 5
    assert [s[0] for s in agg["slow"]] == [400.0, 1.0]


def test_newest_event_time_per_environment():
    rows = [{"environment": "prod", "t_ms": T0_MS + 5}, {"environment": "staging", "t_ms": T0_MS + 9_000},
            {"environment": "prod", "t_ms": T0_MS + 2_500, "service": "db"}, {"environment": "dev", "t_ms": T0_MS}]
    reduced = _reduce(rows, 1)
    assert reduced.newest() == {"prod": T0_MS + 2_500, "staging": T0_MS + 9_000, "dev": T0_MS}
    halves = Reduced.combine([_reduce(rows[:2], 1), _reduce(rows[2:], 1)], 1)
    assert halves.newest() == reduced.newest()
    assert {env: sorted(b) for env, b in halves.parts().items()} == {
        "prod": [("api", T0_MS // 1000), ("db", T0_MS // 1000 + 2)], "staging": [("api", T0_MS // 1000 + 9)],
        "dev": [("api", T0_MS // 1000)]}


def test_no_events_no_buckets():
    empty = Reduced.of_events(VIEW_SCHEMA.empty_table(), 1000, 3)
    assert empty.parts() == {} and empty.newest() == {}
    assert Reduced.combine([empty, empty], 3).parts() == {}
    one = _reduce([{"t_ms": T0_MS, "latency_ms": 2.0}], 3)
    assert _by_env(Reduced.combine([empty, one, empty], 3).parts()) == _by_env(one.parts())
    buckets = PartialBuckets(1000, 3)
    buckets.add(pa.RecordBatch.from_pylist([], schema=VIEW_SCHEMA))
    assert buckets.batch() is None
    buckets.add(_table(pd.DataFrame([{"environment": "prod", "t_ms": T0_MS, "service": "api", "host": "h",
                                      "is_error": True, "is_warn": False, "latency_ms": None, "signature": "s",
                                      "signature_id": "i", "message": "m", "tier": None, "owner": None}]))
                .to_batches()[0])
    batch = buckets.batch()
    assert batch.num_rows == 1 and decode(batch.column("agg")[0].as_py()).errors == 1
