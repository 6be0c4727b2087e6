"""Against the real embedded broker: what is produced decodes to what generate() gives, keyed and ordered
by service; the rate holds (measured on the delivered messages' timestamps); replays, back-pressure,
SIGTERM and an unreachable broker behave. (The pacing schedule at high rates is checked on a simulated
clock in test_units.py; the rate delivered at 50,000 events/s is measured by bench/generator_bench.py,
which needs the machine to itself.)"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from incident_contracts.codec import Codec
from incident_contracts.kafka import TopicMissing, end_offsets, partitions_of
from incident_stack.broker import free_port
from log_generator import api
from log_generator.ground_truth import load_ground_truth, load_summary
from log_generator.producer import EventProducer, ProducerConfig, partition_for
from log_generator.replay import LogFileReader

START_MS = 1_795_000_000_000
SAMPLES = Path(__file__).resolve().parents[2] / "log-generator" / "samples"
ROOT = Path(__file__).resolve().parents[2]


def as_ms(record: dict) -> dict:
    """Decoded records carry the timestamp as a datetime (Avro timestamp-millis); generate() gives ms."""
    return {**record, "timestamp": round(record["timestamp"].timestamp() * 1000)}


def consume_all(bootstrap: str, topic: str) -> list:
    """Every message of the topic (up to the end offsets), in partition order."""
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{time.time_ns()}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in ends if ends[p] > 0])
        out, remaining, deadline = [], {p: n for p, n in ends.items() if n > 0}, time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=0.5):
                if msg.error():
                    continue
                out.append(msg)
                if msg.offset() + 1 >= ends[msg.partition()]:
                    remaining.pop(msg.partition(), None)
        assert not remaining, f"could not read partitions {remaining}"
        return out
    finally:
        consumer.close()


@pytest.mark.integration
def test_run_delivers_exactly_what_generate_gives(broker: str, topic: str, tmp_path: Path) -> None:
    args = dict(rate=4000, duration_s=3, seed=5, start_ms=START_MS)
    summary = api.run("mixed", **args, speedup=None, bootstrap_servers=broker, topic=topic, data_dir=tmp_path)
    assert summary.ok and summary.events_sent == summary.delivered == 12_000 and summary.failed == 0
    assert sum(summary.partitions.values()) == 12_000 and set(summary.partitions) == {0, 1}
    assert summary.first_event_ms == START_MS and summary.last_event_ms < START_MS + 3000

    folder = Path(summary.run_dir)
    assert folder.parent == tmp_path / "runs" and folder.name == summary.run_id
    truth = load_ground_truth(folder)
    assert truth.run_id == summary.run_id and truth.seed == 5 and truth.rate == 4000
    assert truth.incidents and summary.incidents == len(truth.incidents)
    saved = load_summary(folder)
    assert saved["delivered"] == 12_000 and saved["manifest_path"] == str(folder / "ground_truth.json")

    expected, expected_truth = api.generate("mixed", **args)
    expected = list(expected)
    assert [i.to_dict() for i in expected_truth.incidents] == [i.to_dict() for i in truth.incidents]
    codec = Codec()
    messages = consume_all(broker, topic)
    assert len(messages) == 12_000
    decoded = {}
    by_partition = defaultdict(list)
    for msg in messages:
        record = as_ms(codec.decode(msg.value()))
        assert msg.key() == record["service"].encode()
        assert msg.partition() == partition_for(msg.key(), 2), "murmur2 key partitioning, like the Java client"
        decoded[record["event_id"]] = record
        by_partition[msg.partition()].append(record)
    assert decoded == {r["event_id"]: r for r in expected}
    order = {r["event_id"]: i for i, r in enumerate(expected)}
    for records in by_partition.values():
        positions = [order[r["event_id"]] for r in records]
        assert positions == sorted(positions), "each partition keeps the generation order"


@pytest.mark.integration
@pytest.mark.parametrize(("rate", "seconds"), [(100, 3), (2_000, 3)])
def test_rate_is_accurate_on_delivered_timestamps(broker: str, topic: str, tmp_path: Path, rate: int,
                                                 seconds: float) -> None:
    summary = api.run("mixed", rate=rate, duration_s=seconds, seed=1, bootstrap_servers=broker, topic=topic,
                      data_dir=tmp_path)
    assert summary.ok and summary.delivered == rate * seconds
    stamps = sorted(msg.timestamp()[1] for msg in consume_all(broker, topic))
    measured = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000)
    assert measured == pytest.approx(rate, rel=0.02), f"delivered at {measured:.1f}/s for a target of {rate}/s"
    assert summary.actual_rate == pytest.approx(rate, rel=0.02)


@pytest.mark.integration
@pytest.mark.parametrize(("name", "fmt"), [("generic.log", "generic"), ("access.log", "access"),
                                           ("syslog.log", "syslog"), ("app.jsonl", "jsonl")])
def test_replay_streams_every_parsed_line(broker: str, topic: str, tmp_path: Path, name: str, fmt: str) -> None:
    summary = api.replay(SAMPLES / name, fmt, bootstrap_servers=broker, topic=topic, data_dir=tmp_path)
    reader = LogFileReader(SAMPLES / name, fmt)
    expected = {r["event_id"]: r for r in reader}
    assert summary.ok and summary.delivered == len(expected) == summary.replay.parsed
    assert summary.replay.unparsed == reader.stats.unparsed > 0
    unparsed_file = Path(summary.replay.unparsed_file)
    assert len(unparsed_file.read_text().splitlines()) == summary.replay.unparsed
    codec = Codec()
    got = {r["event_id"]: r for r in (as_ms(codec.decode(m.value())) for m in consume_all(broker, topic))}
    assert got == expected
    assert summary.first_event_ms == min(r["timestamp"] for r in expected.values())


@pytest.mark.integration
def test_replay_retime_moves_the_file_to_now(broker: str, topic: str, tmp_path: Path) -> None:
    before = int(time.time() * 1000)
    summary = api.replay(SAMPLES / "access.log", "access", retime=True, bootstrap_servers=broker, topic=topic,
                         data_dir=tmp_path)
    assert before <= summary.first_event_ms <= int(time.time() * 1000)


def kafka_threads() -> int:
    """librdkafka's threads in this process (named "rdk:..."; invisible to `threading`)."""
    count = 0
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(FileNotFoundError):  # the thread ended while listing
            count += Path(f"/proc/self/task/{tid}/comm").read_text().startswith("rdk:")
    return count


def settled_kafka_threads(at_most: int, seconds: float = 5.0) -> int:
    """librdkafka's threads once they are down to `at_most` (or `seconds` later): clients that earlier tests
    closed may still be winding down their own threads."""
    deadline = time.monotonic() + seconds
    while (count := kafka_threads()) > at_most and time.monotonic() < deadline:
        time.sleep(0.1)
    return count


@pytest.mark.integration
def test_runs_release_their_kafka_client(broker: str, topic: str, tmp_path: Path) -> None:
    before = settled_kafka_threads(0)
    summary = api.run("none", rate=1000, count=2000, seed=1, speedup=None, bootstrap_servers=broker, topic=topic,
                      data_dir=tmp_path)
    assert summary.delivered == 2000
    assert settled_kafka_threads(before) <= before, "the run left librdkafka threads behind"
    with pytest.raises(TopicMissing, match="does not exist"):
        api.run("none", rate=1000, count=10, bootstrap_servers=broker, topic=f"{topic}-absent",
                create_topic=False, data_dir=tmp_path)
    assert settled_kafka_threads(before) <= before, "a failed run left librdkafka threads behind"


@pytest.mark.integration
def test_back_pressure_waits_instead_of_failing(broker: str, topic: str) -> None:
    producer = EventProducer(ProducerConfig(bootstrap_servers=broker, topic=topic, queue_max_messages=200,
                                            linger_ms=50))
    producer.check_broker()
    value = b"x" * 300
    for i in range(20_000):
        producer.send(value, b"k%d" % (i % 7))
    assert producer.flush(60) == 0
    stats = producer.stats
    assert stats.backpressure_waits > 0, "a 200-message queue must fill up"
    assert stats.sent == stats.delivered == 20_000 and stats.failed == 0
    assert sum(end_offsets(broker, topic).values()) == 20_000


@pytest.mark.integration
def test_sigterm_flushes_and_prints_the_summary(broker: str, topic: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path), "ENV_FILE": str(tmp_path / "none.env")}
    process = subprocess.Popen(
        [sys.executable, "-m", "log_generator.cli", "--scenario", "mixed", "--rate", "3000", "--seed", "4",
         "--bootstrap-servers", broker, "--topic", topic, "--json", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT, text=True,
    )
    deadline = time.monotonic() + 60
    while not list((tmp_path / "runs").glob("*/ground_truth.json")) and time.monotonic() < deadline:
        time.sleep(0.1)  # the manifest is written just before the first event is sent
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err  # interrupted runs exit 1
    summary = json.loads(out)
    assert summary["interrupted"] and summary["failed"] == 0
    assert summary["delivered"] == summary["events_sent"] > 1000
    assert sum(end_offsets(broker, topic).values()) == summary["delivered"]
    truth = load_ground_truth(summary["run_dir"])
    assert truth.end_ms == summary["last_event_ms"]
    assert partitions_of(broker, topic) == [0, 1]


def test_unreachable_broker_is_a_clear_error_within_seconds(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    env = {**os.environ, "DATA_DIR": str(tmp_path), "ENV_FILE": str(tmp_path / "none.env")}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "log_generator.cli", "--scenario", "none", "--count", "10",
         "--bootstrap-servers", f"127.0.0.1:{port}", "-q"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )
    assert result.returncode == 3
    assert time.monotonic() - started < 15
    assert f"Kafka broker at 127.0.0.1:{port} did not answer" in result.stderr
    assert "Is it running?" in result.stderr
