"""The connector benchmark's pieces: run order, offsets from a Kafka checkpoint, the routing comparison,
Spark's from_avro path routing the bad records as the codec does (apart from what the benchmark documents),
and B's sink committing Spark's files to the Delta tables once per batch."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from incident_contracts.codec import Codec, DecodeError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
connector_bench = importlib.import_module("connector_bench")


def test_repeats_alternate_abba() -> None:
    assert connector_bench.abba(3) == [(0, "A"), (0, "B"), (1, "B"), (1, "A"), (2, "A"), (2, "B")]
    assert connector_bench.ratio_samples([200.0, 90.0], [100.0, 0.0]) == [2.0]


def test_offsets_of_a_batch_come_from_the_kafka_checkpoint(tmp_path: Path) -> None:
    # As Spark's Kafka source writes them: the initial offsets with a leading zero byte, the offset log with
    # its version and metadata lines.
    (tmp_path / "sources" / "0").mkdir(parents=True)
    (tmp_path / "sources" / "0" / "0").write_bytes(b'\x00v1\n{"bench.logs":{"0":0,"1":5}}')
    (tmp_path / "offsets").mkdir()
    for batch, offsets in ((0, '{"0":150,"1":155}'), (1, '{"1":300,"0":290}')):
        (tmp_path / "offsets" / str(batch)).write_text(
            f'v1\n{{"batchWatermarkMs":0,"batchTimestampMs":1}}\n{{"bench.logs":{offsets}}}')
    assert connector_bench.kafka_offsets(tmp_path, -1) == {"0": 0, "1": 5}
    assert connector_bench.offsets_in_batch(tmp_path, 0) == 300
    assert connector_bench.offsets_in_batch(tmp_path, 1) == 285
    assert connector_bench.offsets_in_batch(tmp_path, 2) is None  # not written yet: the sink reads dead letters


def test_routing_comparison_separates_placement_from_reasons() -> None:
    kinds = ["good", "trailing", "cut", "gone"]
    a = {0: "events", 1: "trailing_bytes", 2: "truncated", 3: "empty"}
    b = {0: "events", 1: "events", 2: "malformed_body"}
    result = connector_bench.compare_routing(kinds, a, b)
    assert result["placed_elsewhere"] == ["trailing: A trailing_bytes, B events", "gone: A empty, B missing"]
    assert result["other_reason"] == ["cut: A truncated, B malformed_body"]
    assert (result["a_events"], result["b_events"]) == (1, 2)


def test_bad_records_cover_every_kind_once() -> None:
    records = connector_bench.bad_records(int(time.time() * 1000))
    kinds = [kind for kind, _ in records]
    assert len(kinds) == len(set(kinds))
    assert {"tombstone", "trailing bytes", "schema v1 event", "unknown fingerprint"} <= set(kinds)


# What Spark's path says of each bad record (None: an event). Where the codec rejects a record, it gives the
# same reason, except the two the benchmark's docstring names (trailing bytes, a body that ends early).
EXPECTED = {
    "tombstone": "empty", "empty": "empty", "bad magic": "bad_magic", "one byte": "bad_magic",
    "short header": "truncated", "unknown fingerprint": "unknown_fingerprint", "header only": "truncated",
    "body cut short": "malformed_body", "garbage body": "malformed_body", "trailing bytes": None,
    "confluent framing": "unknown_schema_id", "confluent short": "truncated",
    "30 days old": "timestamp_out_of_range", "a day ahead": "timestamp_out_of_range",
    "blank service": "invalid_field", "blank event id": "invalid_field", "schema v1 event": None,
}
DIFFERS_FROM_CODEC = {"trailing bytes": "trailing_bytes", "body cut short": "truncated"}

SCRIPT = r"""
import datetime as dt, json, os, sys
sys.path.insert(0, sys.argv[1])
os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
import connector_bench as cb
from incident_contracts.settings import Settings
from incident_stack.jars import classpath, fetch
from incident_stream.session import build_session

fetch("spark-kafka")
settings = Settings(_env_file=None)
spark = build_session(settings, master="local[1]", ui=False,
                      extra={"spark.jars": classpath("spark-kafka").replace(os.pathsep, ",")})
spark.sparkContext.setLogLevel("ERROR")
now = int(sys.argv[2])
records = cb.bad_records(now)
stamp = dt.datetime.fromtimestamp(now / 1000, dt.timezone.utc)
rows = [(None, None if v is None else bytearray(v), "t", 0, i, stamp, 0) for i, (_, v) in enumerate(records)]
raw = spark.createDataFrame(rows, "key binary, value binary, topic string, partition int, offset long, "
                                  "timestamp timestamp, timestampType int")
out = cb.builtin_decoded(raw, settings).orderBy("kafka_offset").collect()
print("RESULT " + json.dumps([[kind, r.reject_reason, r.event_id, r.span_id, r.value_size]
                              for (kind, _), r in zip(records, out)]))

from pathlib import Path
from incident_contracts.catalog import default_catalog
from incident_contracts.table_store import TableStore
work = Path(sys.argv[3])
store = TableStore(str(work / "data"))
checkpoint = work / "checkpoint"
checkpoint.mkdir(parents=True)
(checkpoint / "metadata").write_text('{"id":"5d1f2c3a-0000-4000-8000-000000000001"}')
sink = cb.BuiltinSink(store, checkpoint)
frame = cb.builtin_events(raw, settings, default_catalog())
sink(frame, 0)
sink(frame, 0)  # a replay of the batch: already in the tables
print("SINK " + json.dumps({"rows": sink.rows, "routing": cb.routing(work / "data"),
                            "versions": {t: store.open(t).version() for t in ("events", "dead_letter")}}))
spark.stop()
"""


@pytest.fixture(scope="module")
def spark_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, dict]:
    """One Spark session over the bad records: what from_avro's path says of each, and B's sink given the
    batch twice. Returns (the records' time, {kind: (reason, event_id, span_id, value_size)}, the sink's report)."""
    now = int(time.time() * 1000)
    work = tmp_path_factory.mktemp("connector")
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT / "bench"), str(now), str(work)], cwd=ROOT,
                         capture_output=True, text=True, timeout=540)
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in run.stdout.splitlines()
             if line.startswith(("RESULT ", "SINK "))}
    assert run.returncode == 0 and len(lines) == 2, (run.stdout + run.stderr)[-4000:]
    decoded = {kind: (reason, event_id, span_id, size) for kind, reason, event_id, span_id, size
               in json.loads(lines["RESULT"])}
    return now, decoded, json.loads(lines["SINK"])


@pytest.mark.integration
@pytest.mark.beside
@pytest.mark.timeout(600)
def test_spark_from_avro_path_routes_bad_records_like_the_codec(spark_run: tuple[int, dict, dict]) -> None:
    now, decoded, _ = spark_run
    records = dict(connector_bench.bad_records(now))
    codec = Codec()
    for kind, value in records.items():
        reason = decoded[kind][0]
        assert reason == EXPECTED.get(kind), kind
        assert decoded[kind][3] == len(value or b"")
        try:
            codec.decode(value)
            codec_reason = None
        except DecodeError as exc:
            codec_reason = exc.reason.value
        if codec_reason is not None:
            assert DIFFERS_FROM_CODEC.get(kind, reason) == codec_reason, kind
    # An event of the older schema version resolves to the newest: span_id (added in v2) is null.
    v1 = codec.decode(records["schema v1 event"])
    assert decoded["schema v1 event"][1:3] == (v1["event_id"], None)
    assert decoded["good 0"][1] == codec.decode(records["good 0"])["event_id"]


@pytest.mark.integration
@pytest.mark.beside
@pytest.mark.timeout(600)
def test_builtin_sink_commits_sparks_files_once_per_batch(spark_run: tuple[int, dict, dict]) -> None:
    now, decoded, sink = spark_run
    records = connector_bench.bad_records(now)
    good = sum(1 for kind, _ in records if decoded[kind][0] is None)
    assert sink["rows"] == {"events": good, "dead_letter": len(records) - good}  # the replay added nothing
    assert sink["versions"] == {"events": 1, "dead_letter": 1}  # created, then one commit each
    placed = {int(offset): where for offset, where in sink["routing"].items()}
    assert placed == {offset: decoded[kind][0] or "events" for offset, (kind, _) in enumerate(records)}
