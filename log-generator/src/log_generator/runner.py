"""Running a generation or a replay against Kafka: pacing, progress, signals, run folder, summary."""

from __future__ import annotations

import gc
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from incident_contracts.codec import Codec
from incident_contracts.fast_encode import FastEncoder
from incident_contracts.kafka import TopicMissing, TopicSpec, ensure_topics
from log_generator import wire
from log_generator.engine import Block, fill
from log_generator.ground_truth import check_run_id, run_dir, save_ground_truth, save_summary
from log_generator.pacing import Pacer
from log_generator.producer import EventProducer, ProducerConfig
from log_generator.progress import Progress
from log_generator.simulation import Simulation
from log_generator.summary import ReplayStats, RunSummary


@dataclass
class RunOptions:
    bootstrap_servers: str
    topic: str
    data_dir: Path
    codec: Codec
    run_id: str | None = None
    speedup: float | None = 1.0  # wall-clock pacing factor; None = as fast as possible
    progress: bool = True
    create_topic: bool = True
    partitions: int = 2
    replication_factor: int = 1
    compression: str = "lz4"
    flush_timeout_s: float = 30.0
    connect_timeout_s: float = 5.0


class StopFlag:
    """Set by SIGINT/SIGTERM (or by the caller) to end a run cleanly: flush and summarise."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    def set(self, name: str = "stop") -> None:
        self.signal_name = name
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()


@contextmanager
def signals_stop(stop: StopFlag) -> Iterator[None]:
    """SIGINT/SIGTERM set `stop` (a second SIGINT interrupts at once). Only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set(name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def _no_gc() -> Iterator[None]:
    """The send loop creates no reference cycles; full collections over the variant pools only cost time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def new_run_id(kind: str, seed: int | None = None, now: datetime | None = None) -> str:
    now = now or datetime.now(tz=UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{kind}" + (f"-s{seed}" if seed is not None else "")


def make_run_dir(data_dir: Path, run_id: str | None, kind: str, seed: int | None) -> tuple[str, Path]:
    """Create DATA_DIR/runs/<run_id>/; a generated id gets a -N suffix if the folder exists."""
    if run_id:
        folder = run_dir(data_dir, check_run_id(run_id))
        folder.mkdir(parents=True, exist_ok=True)
        return run_id, folder
    base = new_run_id(kind, seed)
    candidate, n = base, 1
    while run_dir(data_dir, candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    folder = run_dir(data_dir, candidate)
    folder.mkdir(parents=True, exist_ok=False)
    return candidate, folder


def _producer(options: RunOptions) -> EventProducer:
    producer = EventProducer(ProducerConfig(
        bootstrap_servers=options.bootstrap_servers, topic=options.topic, compression=options.compression,
        connect_timeout_s=options.connect_timeout_s,
    ))
    try:
        _ensure_topic(producer, options)
    except BaseException:
        producer.close()
        raise
    return producer


def _ensure_topic(producer: EventProducer, options: RunOptions) -> None:
    if producer.check_broker() == 0:
        if not options.create_topic:
            raise TopicMissing(f"topic {options.topic!r} does not exist on {options.bootstrap_servers}; create it "
                               "(make up creates the platform's topics) or drop --no-create-topic")
        ensure_topics(options.bootstrap_servers, [TopicSpec(options.topic, options.partitions,
                                                            options.replication_factor)],
                      timeout=max(5.0, options.connect_timeout_s))
        if producer.check_broker() == 0:
            raise TopicMissing(f"topic {options.topic!r} was created but the broker lists no partitions for it")


def _finish(producer: EventProducer, options: RunOptions, stop: StopFlag, started: float) -> tuple[int, float]:
    undelivered = producer.flush(options.flush_timeout_s)
    if undelivered:
        producer.abandon()
    producer.poll(0)
    return undelivered, time.monotonic() - started


def _summary(producer: EventProducer, *, run_id: str, mode: str, scenario: str, options: RunOptions,
             wall_s: float, undelivered: int, stop: StopFlag, folder: Path, manifest: Path | None,
             first_ms: int | None, last_ms: int | None, target_rate: float | None, seed: int | None,
             send_span_s: float, incidents: int = 0, replay: ReplayStats | None = None) -> RunSummary:
    stats = producer.stats
    if stats.delivered > 1 and send_span_s > 0:
        rate = (stats.delivered - 1) / send_span_s  # n events span n-1 intervals
    else:
        rate = stats.delivered / wall_s if wall_s > 0 else 0.0
    failed = stats.failed + stats.outstanding
    return RunSummary(
        run_id=run_id, mode=mode, scenario=scenario, topic=options.topic,
        bootstrap_servers=options.bootstrap_servers, events_sent=stats.sent, delivered=stats.delivered,
        failed=failed, duration_s=round(wall_s, 3), actual_rate=round(rate, 2), target_rate=target_rate,
        speedup=options.speedup, seed=seed, partitions=dict(stats.partitions), first_event_ms=first_ms,
        last_event_ms=last_ms, manifest_path=str(manifest) if manifest else None, run_dir=str(folder),
        interrupted=bool(stop), undelivered=undelivered, errors=dict(stats.errors), incidents=incidents,
        replay=replay,
    )


def _event_partitions(block: Block, routes: dict[str, tuple[bytes, int]]) -> np.ndarray:
    """The partition of each event of a block (a pool belongs to one service, so to one partition)."""
    pool_partition = np.fromiter((routes[p.spec.service.name][1] for p in block.pools), dtype=np.int64,
                                 count=len(block.pools))
    return pool_partition[np.asarray(block.pool_index, dtype=np.int64)]


def _add_counts(counts: Counter, partitions: np.ndarray) -> None:
    for partition, n in enumerate(np.bincount(partitions).tolist()):
        if n:
            counts[partition] += n


def _active_note(sim: Simulation, t_ms: int) -> str:
    active = [i for i in sim.schedule.incidents if i.start_ms <= t_ms < i.last_ms]
    return ("incidents: " + ", ".join(f"{i.scenario.name}@{i.origin.name}" for i in active)) if active else ""


def produce_simulation(sim: Simulation, options: RunOptions, stop: StopFlag | None = None,
                       on_folder: Callable[[str, Path], None] | None = None) -> RunSummary:
    """Stream a simulation to Kafka, paced by event time; write ground truth and summary in the run folder."""
    with _producer(options) as producer:
        return _stream_simulation(sim, options, stop or StopFlag(), on_folder, producer)


def _stream_simulation(sim: Simulation, options: RunOptions, stop: StopFlag,
                       on_folder: Callable[[str, Path], None] | None, producer: EventProducer) -> RunSummary:
    run_id, folder = make_run_dir(options.data_dir, options.run_id, sim.scenario, sim.seed)
    sim.truth.run_id = run_id
    manifest = save_ground_truth(sim.sync_truth(), folder)
    if on_folder:
        on_folder(run_id, folder)
    encoder = FastEncoder.for_codec(options.codec)
    header = encoder.header
    pacer = Pacer(None if options.speedup is None else sim.rate * options.speedup)
    progress = Progress(options.progress, total=sim.total)
    chunk = pacer.chunk()
    first_ms = last_ms = None
    send = producer.send
    raw_produce = producer._produce
    topic = producer.topic
    stats = producer.stats
    poll = producer.poll
    routes = {s.name: (s.name.encode(), producer.partition_of(s.name.encode())) for s in sim.topology.services}
    sent_by_partition = stats.sent_by_partition
    join = b"".join
    started = time.monotonic()
    first_send = last_send = None
    with signals_stop(stop), _no_gc():
        try:
            for block in sim.blocks():  # the pacer's clock starts at the first send
                n = len(block)
                if first_ms is None and n:
                    first_ms = int(block.ts[0])
                if encoder.fast:
                    heads = wire.heads(header, sim.prefix, block.seq0, block.ts)
                    traces = wire.traces(block.trace)
                    pools, pool_index, rs, slots = block.pools, block.pool_index, block.rs, block.slots
                    event_partitions = _event_partitions(block, routes)
                else:
                    encoded = [encoder.encode(r) for r in wire.records(block, sim.prefix, sim.environment)]
                    variants = block.variants
                i = 0
                while i < n:
                    if stop:
                        break
                    j = min(n, i + chunk)
                    pacer.wait_for(block.seq0 + i)
                    if first_send is None:
                        first_send = time.monotonic()
                    if encoder.fast:
                        # Same choice of variant as Block.variants, fused with encoding and sending.
                        for pi, slot, r, head, trace in zip(pool_index[i:j], slots[i:j], rs[i:j], heads[i:j],
                                                            traces[i:j], strict=True):
                            pool = pools[pi]
                            items = pool.items
                            v = items[slot] if slot < len(items) else fill(pool, r, slot)
                            value = join((head, v.a, trace, v.b)) if v.traced else head + v.ab
                            key, part = routes[v.service]
                            try:
                                raw_produce(topic, value, key, part)
                            except BufferError:
                                producer.wait_for_room(value, key, part)
                        stats.sent += j - i
                        _add_counts(sent_by_partition, event_partitions[i:j])
                    else:
                        for k in range(i, j):
                            send(encoded[k], routes[variants[k].service][0])
                    last_send = time.monotonic()
                    poll(0)
                    last_ms = int(block.ts[j - 1])
                    i = j
                    if progress.due():
                        producer.refresh_outstanding()
                        progress.update(stats, last_ms, _active_note(sim, last_ms))
                if stop:
                    break
        except KeyboardInterrupt:
            stop.set("SIGINT")
        finally:
            progress.close()
    undelivered, wall_s = _finish(producer, options, stop, started)
    send_span = (last_send - first_send) if first_send is not None and last_send is not None else 0.0
    if sim.total is None or stop:
        sim.truth.end_ms = last_ms
        sim.truth.incidents = [i for i in sim.sync_truth().incidents
                               if last_ms is None or i.start_ms <= last_ms]
        save_ground_truth(sim.truth, folder)
    summary = _summary(producer, run_id=run_id, mode="generate", scenario=sim.scenario, options=options,
                       wall_s=wall_s, undelivered=undelivered, stop=stop, folder=folder, manifest=manifest,
                       first_ms=first_ms, last_ms=last_ms, target_rate=sim.rate, seed=sim.seed,
                       send_span_s=send_span, incidents=len(sim.truth.incidents))
    save_summary(summary.to_dict(), folder)
    return summary


def produce_records(records: Iterator[dict], options: RunOptions, *, run_id: str, folder: Path,
                    replay: ReplayStats, rate: float | None, stop: StopFlag | None = None) -> RunSummary:
    """Stream already-built LogEvent records (a replay) to Kafka, optionally paced at `rate`."""
    with _producer(options) as producer:
        return _stream_records(records, options, run_id=run_id, folder=folder, replay=replay, rate=rate,
                               stop=stop or StopFlag(), producer=producer)


def _stream_records(records: Iterator[dict], options: RunOptions, *, run_id: str, folder: Path,
                    replay: ReplayStats, rate: float | None, stop: StopFlag, producer: EventProducer) -> RunSummary:
    encoder = FastEncoder.for_codec(options.codec)
    pacer = Pacer(rate)
    progress = Progress(options.progress)
    first_ms = last_ms = None
    started = time.monotonic()
    k = 0
    first_send = last_send = None
    with signals_stop(stop), _no_gc():
        try:
            for record in records:
                if stop:
                    break
                if pacer.paced:
                    pacer.wait_for(k)
                if first_send is None:
                    first_send = time.monotonic()
                producer.send(encoder.encode(record), record["service"].encode())
                last_send = time.monotonic()
                ts = record["timestamp"]
                first_ms = ts if first_ms is None else min(first_ms, ts)
                last_ms = ts if last_ms is None else max(last_ms, ts)
                k += 1
                if k % 1000 == 0:
                    producer.poll(0)
                    if progress.due():
                        producer.refresh_outstanding()
                        progress.update(producer.stats, last_ms, f"{replay.lines_read:,} lines read")
        except KeyboardInterrupt:
            stop.set("SIGINT")
        finally:
            progress.close()
    undelivered, wall_s = _finish(producer, options, stop, started)
    send_span = (last_send - first_send) if first_send is not None and last_send is not None else 0.0
    summary = _summary(producer, run_id=run_id, mode="replay", scenario="replay", options=options, wall_s=wall_s,
                       undelivered=undelivered, stop=stop, folder=folder, manifest=None, first_ms=first_ms,
                       last_ms=last_ms, target_rate=rate, seed=None, send_span_s=send_span, replay=replay)
    save_summary(summary.to_dict(), folder)
    return summary
