"""Log generator throughput: events generated, encoded and delivered per second to an embedded broker.

Each repeat runs, on fresh topics of the same broker:
  1. the generator end to end (`log_generator.api.run`, scenario mixed, as fast as possible), and
  2. a raw confluent-kafka produce loop of the very same pre-encoded messages (same keys, partitions
     and producer settings), the practical limit of one Python process on this machine and broker.
The two alternate so machine noise hits both. Reported: medians with min-max, and the ratio.
Also reported (no Kafka): in-memory `generate()` records/s and the engine + wire encoding alone.

    .venv/bin/python bench/generator_bench.py [--quick] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from measure import PeakMemory  # noqa: E402
from report import emit, median_metric  # noqa: E402

from incident_contracts.codec import Codec  # noqa: E402
from incident_contracts.kafka import TopicSpec, end_offsets, ensure_topics, wait_for_broker  # noqa: E402
from incident_stack.broker import free_port, start_broker  # noqa: E402
from log_generator import api, wire  # noqa: E402
from log_generator.producer import EventProducer, ProducerConfig  # noqa: E402
from log_generator.simulation import build_simulation  # noqa: E402

START_MS = 1_795_000_000_000  # fixed event time, so every repeat generates the same events
SCENARIO, SEED, RATE = "mixed", 7, 100_000.0


def pre_encode(count: int) -> list[tuple[bytes, bytes]]:
    """The generator's messages for the benchmark's arguments, with their keys (not timed)."""
    sim = build_simulation(SCENARIO, rate=RATE, count=count, seed=SEED, start_ms=START_MS)
    header = Codec()._header
    out: list[tuple[bytes, bytes]] = []
    for block in sim.blocks():
        values = wire.messages(block, header, sim.prefix)
        out.extend(zip(values, (v.service.encode() for v in block.variants), strict=True))
    return out


def raw_loop(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Produce pre-encoded messages with the generator's producer settings; events/s incl. the flush."""
    producer = EventProducer(ProducerConfig(bootstrap_servers=bootstrap, topic=topic))
    producer.check_broker()
    parts = {key: producer.partition_of(key) for key in {k for _, k in messages}}
    produce = producer._produce
    poll = producer.poll
    gc.disable()
    try:
        started = time.monotonic()
        for i, (value, key) in enumerate(messages):
            try:
                produce(topic, value, key, parts[key])
            except BufferError:
                producer.wait_for_room(value, key, parts[key])
            if i % 2000 == 0:
                poll(0)
        left = producer.flush(120)
        elapsed = time.monotonic() - started
    finally:
        gc.enable()
    if left:
        raise RuntimeError(f"raw loop: {left} messages undelivered")
    return len(messages) / elapsed


def generator_run(bootstrap: str, topic: str, count: int, data_dir: Path) -> float:
    summary = api.run(SCENARIO, rate=RATE, count=count, seed=SEED, start_ms=START_MS, speedup=None,
                      bootstrap_servers=bootstrap, topic=topic, data_dir=data_dir, progress=False)
    if not summary.ok:
        raise RuntimeError(f"generator run lost events: {summary.to_dict()}")
    return summary.delivered / summary.duration_s


def delivered_timestamps(bootstrap: str, topic: str) -> list[int]:
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
    stamps: list[int] = []
    deadline = time.monotonic() + 120
    try:
        while len(stamps) < sum(ends.values()) and time.monotonic() < deadline:
            stamps.extend(m.timestamp()[1] for m in consumer.consume(10_000, timeout=0.5) if not m.error())
    finally:
        consumer.close()
    return sorted(stamps)


def paced_rate_error(bootstrap: str, rate: float, seconds: float, data_dir: Path) -> float:
    """|delivered rate / target - 1| in percent, the delivered rate measured on the messages' Kafka
    timestamps (CreateTime, set when each event was sent)."""
    topic = f"bench.paced.{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [TopicSpec(topic, 2)])
    summary = api.run(SCENARIO, rate=rate, duration_s=seconds, seed=SEED, bootstrap_servers=bootstrap, topic=topic,
                      data_dir=data_dir, progress=False)
    stamps = delivered_timestamps(bootstrap, topic)
    if not summary.ok or len(stamps) != summary.delivered:
        raise RuntimeError(f"paced run lost events: {summary.to_dict()}")
    measured = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000)
    return abs(measured / rate - 1) * 100


def in_memory(count: int) -> tuple[float, float]:
    """generate() records/s, and engine + wire encoding messages/s, without Kafka."""
    started = time.monotonic()
    events, _ = api.generate(SCENARIO, rate=RATE, count=count, seed=SEED, start_ms=START_MS)
    n = sum(1 for _ in events)
    records_rate = n / (time.monotonic() - started)
    sim = build_simulation(SCENARIO, rate=RATE, count=count, seed=SEED, start_ms=START_MS)
    header = Codec()._header
    started = time.monotonic()
    m = sum(len(wire.messages(b, header, sim.prefix)) for b in sim.blocks())
    return records_rate, m / (time.monotonic() - started)


def cli_peak_rss_mb(bootstrap: str, count: int, data_dir: Path) -> tuple[float, float]:
    """Peak RSS (MB) and wall seconds of the `log-generator` command producing `count` events as fast as it can."""
    topic = f"bench.cli.{uuid.uuid4().hex[:8]}"
    command = [str(Path(sys.executable).parent / "log-generator"), "--scenario", SCENARIO, "--count", str(count),
               "--rate", f"{RATE:.0f}", "--speedup", "max", "--seed", str(SEED), "--bootstrap-servers", bootstrap,
               "--topic", topic, "--data-dir", str(data_dir), "-q"]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # The kernel's high-water mark of the process, read every 0.1 s until it exits.
    with PeakMemory({"log-generator": lambda: [process.pid] if process.returncode is None else []},
                    interval=0.1, since_start=True) as memory:
        _, stderr = process.communicate()
    elapsed = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"log-generator exited with {process.returncode}: {stderr.decode()[-2000:]}")
    return memory.peak_mb["log-generator"], elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats (about a minute)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    count = 300_000 if args.quick else 1_000_000
    repeats = 2 if args.quick else 3

    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="generator-bench-"))
    broker = start_broker("127.0.0.1", port, work / "broker.log")
    bootstrap = f"127.0.0.1:{port}"
    gen_samples: list[float] = []
    raw_samples: list[float] = []
    try:
        wait_for_broker(bootstrap, timeout=30)
        messages = pre_encode(count)
        size = sum(len(v) for v, _ in messages) / len(messages)
        for i in range(repeats):
            for label in ("generator", "raw") if i % 2 == 0 else ("raw", "generator"):
                topic = f"bench.{label}.{uuid.uuid4().hex[:8]}"
                ensure_topics(bootstrap, [TopicSpec(topic, 2)])
                if label == "generator":
                    gen_samples.append(generator_run(bootstrap, topic, count, work / "data"))
                else:
                    raw_samples.append(raw_loop(bootstrap, topic, messages))
                latest = (gen_samples if label == "generator" else raw_samples)[-1]
                print(f"  repeat {i + 1}/{repeats} {label:<9} {latest:>10,.0f} ev/s", flush=True)
        del messages
        paced = [paced_rate_error(bootstrap, 50_000, 3 if args.quick else 5, work / "data") for _ in range(repeats)]
        mem_samples, enc_samples = zip(*(in_memory(count // 2) for _ in range(repeats)), strict=True)
        peak_mb, cli_s = cli_peak_rss_mb(bootstrap, count, work / "data")
    finally:
        os.killpg(broker.pid, signal.SIGTERM)
        broker.wait(timeout=10)

    raw = median_metric("raw produce loop, same bytes", raw_samples, "ev/s",
                        note=f"{count:,} pre-encoded messages, {size:.0f} B average")
    metrics = [
        median_metric("generator end-to-end (generated+encoded+delivered)", gen_samples, "ev/s", target=100_000,
                      limit=raw.value, note=f"scenario {SCENARIO}, {count:,} events, embedded broker, lz4"),
        raw,
        median_metric("paced 50,000 ev/s: delivered-rate error", paced, "%", target=2.0, op="<=",
                      note="rate from the delivered messages' Kafka timestamps"),
        median_metric("generate() in memory (dicts)", list(mem_samples), "ev/s"),
        median_metric("engine + wire encoding, no Kafka", list(enc_samples), "ev/s"),
        median_metric("log-generator process peak RSS", [peak_mb], "MB",
                      note=f"log-generator --count {count:,} --speedup max: {count / cli_s:,.0f} ev/s with start-up"),
    ]
    emit("generator", metrics, args.json, count=count, repeats=repeats, cpus=os.cpu_count(),
         load_average=os.getloadavg())
    return 0  # a missed target is the table's to report; a non-zero exit means the benchmark itself failed


if __name__ == "__main__":
    sys.exit(main())
