"""`incident-stream`: run the Spark streaming job (also what spark/submit_stream.py runs under spark-submit).

The last line printed on stdout is a JSON summary of the run (rows written per table, batches, end
offsets per partition, throughput); with `--summary-file PATH` the job also writes it to that file
(incident_contracts.stream_summary), which is what the Airflow operator reads. Exit status: 0 when the run ended
as asked (finished, idle, or stopped by SIGTERM/SIGINT), 1 when a query failed, 2 on bad settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from incident_contracts.settings import SettingsError, StartingOffsets, load_settings
from incident_contracts.stream_summary import SUMMARY_KIND, write_summary
from incident_contracts.tables import TABLES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="incident-stream",
        description="Spark Structured Streaming job: Kafka log events -> enriched events, dead letters and "
                    "incident updates as Parquet under the data directory. Defaults come from the settings "
                    "(.env / environment, see .env.example).",
    )
    mode = parser.add_argument_group("run mode (default: continuous)")
    mode.add_argument("--once", "--available-now", dest="once", action="store_true",
                      help="process everything already in the topic, then exit (Trigger.AvailableNow)")
    mode.add_argument("--idle-stop", type=float, metavar="SECONDS", default=None,
                      help="exit once no new record arrived for this many seconds "
                           "(default STREAM_IDLE_STOP_SECONDS; 0 = run until stopped)")
    mode.add_argument("--trigger-seconds", type=float, metavar="SECONDS", default=None,
                      help="micro-batch interval in continuous mode (default STREAM_TRIGGER_SECONDS)")
    source = parser.add_argument_group("source")
    source.add_argument("--starting-offsets", choices=[s.value for s in StartingOffsets], default=None,
                        help="where a query without a checkpoint starts (default STREAM_STARTING_OFFSETS)")
    source.add_argument("--max-records-per-trigger", type=int, metavar="N", default=None,
                        help="most Kafka records per micro-batch (default STREAM_MAX_RECORDS_PER_TRIGGER)")
    source.add_argument("--no-fail-on-data-loss", action="store_true",
                        help="continue from the earliest available offset when records were lost "
                             "(default: STREAM_FAIL_ON_DATA_LOSS)")
    paths = parser.add_argument_group("locations")
    paths.add_argument("--checkpoint", type=Path, default=None,
                       help="checkpoint folder of the job (default CHECKPOINT_DIR/incident_stream)")
    paths.add_argument("--data-dir", type=Path, default=None, help="Parquet tables folder (default DATA_DIR)")
    spark = parser.add_argument_group("spark")
    spark.add_argument("--master", default=None, help="Spark master, e.g. local[*] or spark://host:7077 "
                                                      "(default SPARK_MASTER; ignored under spark-submit)")
    spark.add_argument("--no-detection", action="store_true", help="only write events and dead letters")
    parser.add_argument("--run-id", default=None, help="label of this run, stored with its metrics rows")
    parser.add_argument("--summary-file", type=Path, default=None, metavar="PATH",
                        help="also write the run's JSON summary to this file (written whole, or not at all)")
    return parser


# Levels of other libraries' loggers in the job's log: py4j logs a line per call from the JVM at INFO.
# incident_stream.spark carries what Spark's Python processes print (jvm_output.py), at DEBUG.
LOGGER_LEVELS = {"py4j": logging.WARNING}


def configure_logging(level: int = logging.INFO) -> None:
    """The job's log on standard error: its own progress lines at `level`, the libraries' as LOGGER_LEVELS says."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for name, logger_level in LOGGER_LEVELS.items():
        logging.getLogger(name).setLevel(logger_level)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    overrides: dict[str, object] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.master is not None:
        overrides["spark_master"] = args.master
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    for name, value in (("--trigger-seconds", args.trigger_seconds), ("--idle-stop", args.idle_stop),
                        ("--max-records-per-trigger", args.max_records_per_trigger)):
        if value is not None and value <= 0 and name != "--idle-stop":
            print(f"{name} must be greater than 0 (got {value})", file=sys.stderr)
            return 2
        if value is not None and value < 0:
            print(f"{name} must not be negative (got {value})", file=sys.stderr)
            return 2

    from incident_contracts.table_store import TableLayoutError, TableStore
    from incident_contracts.writer_lock import WriterBusy, writer_lock
    from incident_stream.job import JobOptions, run_job
    from incident_stream.jvm_output import filter_jvm_stderr
    from incident_stream.prometheus import JobMetrics
    from incident_stream.session import build_session, ui_url

    checkpoint = args.checkpoint or (settings.checkpoint_root / "incident_stream")
    store = TableStore.from_settings(settings)
    options = JobOptions(
        data_dir=store.root,
        checkpoint=checkpoint.resolve(),
        once=args.once,
        idle_stop_seconds=args.idle_stop if args.idle_stop is not None else settings.stream_idle_stop_seconds,
        trigger_seconds=args.trigger_seconds or settings.stream_trigger_seconds,
        starting_offsets=args.starting_offsets or settings.stream_starting_offsets.value,
        max_records_per_trigger=args.max_records_per_trigger or settings.stream_max_records_per_trigger,
        fail_on_data_loss=settings.stream_fail_on_data_loss and not args.no_fail_on_data_loss,
        run_id=args.run_id,
        detection=not args.no_detection,
    )
    try:  # refused before Spark starts: the running job keeps its UI port and its resources
        with writer_lock(options.checkpoint, store, options.run_id or "manual"):
            for table in TABLES:
                store.open(table)  # TableLayoutError for a folder in the layout before Delta Lake
            spark = build_session(settings)
            jvm_stderr = filter_jvm_stderr(spark)
            url = ui_url(spark)
            print(f"Spark UI: {url}" if url else "Spark UI: disabled", flush=True)
            print(f"incident-stream: {options.mode} run, master {spark.sparkContext.master}, topic "
                  f"{settings.kafka_topic_logs} at {settings.kafka_bootstrap_servers}, data {options.data_dir}, "
                  f"checkpoint {options.checkpoint}", flush=True)
            prometheus = JobMetrics()
            if prometheus.serve(settings.metrics_host, settings.stream_metrics_port):
                print(f"Job metrics: http://{settings.metrics_host}:{settings.stream_metrics_port}/metrics",
                      flush=True)
            try:
                summary = run_job(spark, settings, options, hold_lock=False, prometheus=prometheus)
            finally:
                prometheus.close()
                spark.stop()
                if jvm_stderr is not None:
                    jvm_stderr.close()
    except (WriterBusy, TableLayoutError) as exc:
        print(f"incident-stream: not started: {exc}", file=sys.stderr, flush=True)
        report(args.summary_file, {"summary": SUMMARY_KIND, "run_id": options.run_id, "status": "refused",
                                   "error": str(exc)})
        return 3
    report(args.summary_file, summary)
    return 1 if summary["status"] == "failed" else 0


def report(summary_file: Path | None, summary: dict) -> None:
    """The summary as the last line on stdout, and in `summary_file` when one was asked for."""
    print(json.dumps(summary, default=str), flush=True)
    if summary_file is not None:
        try:
            write_summary(summary_file, summary)
        except OSError as exc:
            print(f"incident-stream: could not write the summary to {summary_file}: {exc}", file=sys.stderr,
                  flush=True)


if __name__ == "__main__":
    sys.exit(main())
