"""Python API of the log generator (used by the CLI, the Airflow DAG, tests and benchmarks).

* :func:`generate` - pure and in memory: LogEvent dicts plus the ground truth, no Kafka.
* :func:`run` - generate and produce to Kafka; writes ``ground_truth.json`` and ``summary.json`` in
  ``DATA_DIR/runs/<run_id>/`` and returns a :class:`RunSummary`.
* :func:`replay` - stream a real log file to Kafka as the same Avro events.

Events of injected incidents carry ``attributes["scenario"]``, ``attributes["incident_id"]`` and
``attributes["incident_role"]`` so tests can tell them apart. Real logs have no such labels:
detection must never read them (score it against ground_truth.json instead).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from incident_contracts.catalog import Catalog
from incident_contracts.codec import Codec, default_codec
from incident_contracts.settings import Settings, get_settings
from log_generator.ground_truth import GroundTruth
from log_generator.replay import LogFileReader, ReplayError, ReplayOptions, load_formats, resolve_format
from log_generator.runner import RunOptions, StopFlag, make_run_dir, produce_records, produce_simulation
from log_generator.simulation import build_simulation, total_events
from log_generator.summary import RunSummary

__all__ = ["GroundTruth", "RunSummary", "StopFlag", "generate", "replay", "run"]


def generate(scenario: str = "mixed", *, rate: float, duration_s: float | None = None, count: int | None = None,
             seed: int = 0, start_ms: int | None = None, catalog: Catalog | str | None = None,
             origin: str | None = None) -> tuple[Iterator[dict], GroundTruth]:
    """LogEvent records in event-time order at `rate` events per simulated second, and the ground truth.

    Deterministic: the same arguments (with an explicit `start_ms`) give the same events. Without
    `duration_s` and `count` the iterator never ends (the ground truth then grows as it goes).
    `catalog` is a Catalog, a path to a catalog file, or None for the default.
    """
    sim = build_simulation(scenario, rate=rate, duration_s=duration_s, count=count, seed=seed, start_ms=start_ms,
                           catalog=catalog, origin=origin)

    def events() -> Iterator[dict]:
        for record in sim.records():
            yield record
            if sim.total is None:
                sim.sync_truth()

    return events(), sim.truth


def _options(settings: Settings, bootstrap_servers: str | None, topic: str | None, data_dir: str | Path | None,
             run_id: str | None, speedup: float | None, progress: bool, create_topic: bool,
             codec: Codec | None) -> RunOptions:
    return RunOptions(
        bootstrap_servers=bootstrap_servers or settings.kafka_bootstrap_servers,
        topic=topic or settings.kafka_topic_logs,
        data_dir=Path(data_dir) if data_dir else settings.files_dir,
        codec=codec or default_codec(settings.schema_registry_url, topic or settings.kafka_topic_logs),
        run_id=run_id,
        speedup=speedup,
        progress=progress,
        create_topic=create_topic,
        partitions=settings.kafka_topic_partitions,
        replication_factor=settings.kafka_replication_factor,
        compression=str(settings.kafka_compression),
    )


def run(scenario: str = "mixed", *, rate: float = 1000.0, duration_s: float | None = None,
        count: int | None = None, seed: int = 0, start_ms: int | None = None, speedup: float | None = 1.0,
        catalog: Catalog | str | None = None, origin: str | None = None, bootstrap_servers: str | None = None,
        topic: str | None = None, data_dir: str | Path | None = None, run_id: str | None = None,
        progress: bool = False, create_topic: bool = True, settings: Settings | None = None,
        codec: Codec | None = None, stop: StopFlag | None = None) -> RunSummary:
    """Generate a scenario and produce it to Kafka; returns the run summary.

    `rate` is events per second of event time; `speedup` how many event-time seconds pass per wall
    second (None: as fast as possible). Without `start_ms`, a run at speedup 1 starts now, and a faster
    one ends now (it writes history). Bootstrap servers, topic and data folder default to the settings.
    """
    settings = settings or get_settings()
    if speedup is not None and not speedup > 0:
        raise ValueError(f"speedup must be positive (or None for as fast as possible), got {speedup!r}")
    total = total_events(rate, duration_s, count)
    if start_ms is None:
        now = int(time.time() * 1000)
        start_ms = now if (speedup == 1.0 or total is None) else now - int(total * 1000 / rate)
    sim = build_simulation(scenario, rate=rate, duration_s=duration_s, count=count, seed=seed, start_ms=start_ms,
                           catalog=catalog, origin=origin)
    options = _options(settings, bootstrap_servers, topic, data_dir, run_id, speedup, progress, create_topic, codec)
    return produce_simulation(sim, options, stop)


def replay(path: str | Path, fmt: str = "auto", *, retime: bool = False, rate: float | None = None,
           service: str | None = None, host: str | None = None, environment: str | None = None,
           year: int | None = None, timezone: str | None = None, follow: bool = False,
           bootstrap_servers: str | None = None, topic: str | None = None,
           data_dir: str | Path | None = None, run_id: str | None = None, progress: bool = False,
           create_topic: bool = True, settings: Settings | None = None, codec: Codec | None = None,
           stop: StopFlag | None = None) -> RunSummary:
    """Stream a log file (``-``: standard input) to Kafka as LogEvents. `fmt`: a format name or alias
    (`log-generator --list-formats`), or ``auto`` to pick the one that parses most of the first lines.

    Original timestamps are kept unless `retime` (then the first line is now and the gaps are kept).
    `rate` paces the replay (events per second); without it the file goes as fast as the broker takes
    it. With `follow` the file is tailed (across rotation and truncation) until `stop` is set. Unparsed
    lines are counted in the summary and written, with the reason, to unparsed_lines.tsv in the run folder.
    """
    settings = settings or get_settings()
    stop = stop or StopFlag()
    reader_options = ReplayOptions(service=service, host=host, environment=environment or settings.environment,
                                   retime=retime, year=year, timezone=timezone,
                                   default_timezone=settings.log_timezone, formats_file=settings.log_formats_path,
                                   follow=follow, stop=lambda: bool(stop))
    try:
        fmt = resolve_format(fmt, load_formats(settings.log_formats_path))
    except ValueError as exc:
        raise ReplayError(str(exc)) from None
    options = _options(settings, bootstrap_servers, topic, data_dir, run_id, None, progress, create_topic, codec)
    run_id, folder = make_run_dir(options.data_dir, run_id, f"replay-{fmt}", None)
    reader = LogFileReader(path, fmt, reader_options, unparsed_path=folder / "unparsed_lines.tsv")
    summary = produce_records(iter(reader), options, run_id=run_id, folder=folder, replay=reader.stats, rate=rate,
                              stop=stop)
    return summary
