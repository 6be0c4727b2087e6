"""The `log-generator` command."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime

from incident_contracts.catalog import CatalogError
from incident_contracts.kafka import BrokerUnavailable
from incident_contracts.settings import Settings, SettingsError, get_settings
from log_generator import api
from log_generator.ground_truth import GroundTruthError
from log_generator.replay import LogFileReader, ReplayError, ReplayOptions, load_formats
from log_generator.runner import StopFlag, signals_stop
from log_generator.scenarios import MODES, SCENARIOS
from log_generator.summary import RunSummary
from log_generator.templates import TemplateError

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_BROKER = 0, 1, 2, 3

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str) -> float:
    """Seconds from '90', '90s', '15m', '2h' or '1h30m'."""
    m = _DURATION.match(text.strip().lower())
    if not m or not any(m.groups()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (examples: 90, 90s, 15m, 2h, 1h30m)")
    h, mins, s = (float(g) if g else 0.0 for g in m.groups())
    seconds = h * 3600 + mins * 60 + s
    if seconds <= 0:
        raise argparse.ArgumentTypeError("duration must be more than 0 seconds")
    return seconds


def parse_start(text: str) -> int:
    """ms since epoch from an ISO time (UTC if no offset) or a relative '-2h' / '-30m' from now."""
    text = text.strip()
    if text.startswith("-"):
        return int(time.time() * 1000 - parse_duration(text[1:]) * 1000)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an ISO time (2026-11-20T08:00:00Z) nor a "
                                         "relative time (-2h)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def parse_speedup(text: str) -> float | None:
    if text.strip().lower() in ("max", "inf", "0"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number such as 60, or 'max'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("speedup must be more than 0 (or 'max')")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    scenarios = ", ".join(SCENARIOS)
    parser = argparse.ArgumentParser(
        prog="log-generator",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Produce realistic microservice logs to Kafka as Avro events: normal traffic from the service\n"
            "catalog with incident scenarios injected on top (and a ground-truth manifest of them), or a\n"
            "replay of a real log file."
        ),
        epilog=(
            "examples:\n"
            "  log-generator --scenario mixed --rate 5000 --duration 60 --seed 7\n"
            "  log-generator --scenario db_pool_exhaustion --rate 2000 --duration 10m\n"
            "  log-generator --scenario mixed --rate 500 --duration 6h --speedup max   # 6 h of history, now\n"
            "  log-generator --replay /var/log/nginx/access.log --format access --retime\n"
            "  log-generator --replay app.log --stdout --count 20      # parsed events as JSON lines, format auto\n"
            "  tail -F app.log | log-generator --replay - --format log4j\n"
            "  log-generator --list-scenarios\n\n"
            "Bootstrap servers, topic and data folder default to KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC_LOGS\n"
            "and DATA_DIR (see .env.example). Each run writes DATA_DIR/runs/<run_id>/ground_truth.json\n"
            "and summary.json (under RUNTIME_DIR/runs when DATA_DIR is s3://). Exit status: 0 all delivered,\n"
            "1 some events failed or the run was interrupted, 2 bad arguments or configuration, 3 broker\n"
            "unreachable."
        ),
    )
    gen = parser.add_argument_group("generation")
    gen.add_argument("--scenario", default="mixed", metavar="NAME",
                     help=f"mixed (random schedule, default), none (normal traffic only), or one of: {scenarios}")
    gen.add_argument("--rate", type=positive_float, default=1000.0, metavar="EPS",
                     help="events per second of event time (default 1000)")
    gen.add_argument("--duration", type=parse_duration, metavar="TIME",
                     help="event time to generate: 90, 90s, 15m, 2h (default: until Ctrl-C)")
    gen.add_argument("--count", type=positive_int, metavar="N", help="number of events to generate")
    gen.add_argument("--seed", type=int, default=0, help="random seed; same seed and start time, same events "
                                                         "(default 0)")
    gen.add_argument("--speedup", type=parse_speedup, default=1.0, metavar="X|max",
                     help="event-time seconds per wall-clock second: 60 turns an hour into a minute; "
                          "'max' goes as fast as possible (default 1)")
    gen.add_argument("--start", type=parse_start, metavar="TIME",
                     help="event time of the first event: ISO (2026-11-20T08:00:00Z) or relative (-2h). "
                          "Default: now, or now minus the duration when --speedup is not 1")
    gen.add_argument("--origin", metavar="SERVICE", help="service where a single scenario starts "
                                                         "(default: chosen by the seed)")
    gen.add_argument("--catalog", metavar="FILE", help="service catalog (default: CATALOG_FILE or the bundled one)")
    gen.add_argument("--list-scenarios", action="store_true", help="describe the scenarios and exit")

    rep = parser.add_argument_group("replay")
    rep.add_argument("--replay", metavar="FILE", help="stream this log file (.gz works; '-' reads standard input) "
                                                     "instead of generating")
    rep.add_argument("--format", default="auto", metavar="NAME",
                     help="format of the replayed file: a preset or LOG_FORMATS_FILE format (--list-formats), or "
                          "auto (default): the one that parses most of the first lines, named on stderr")
    rep.add_argument("--list-formats", action="store_true", help="list the log formats and exit")
    rep.add_argument("--follow", action="store_true",
                     help="keep reading the file as it grows, across rotation and truncation, until Ctrl-C")
    rep.add_argument("--retime", action="store_true", help="shift timestamps so the first line is now")
    rep.add_argument("--service", help="service name for every replayed line (default: from the line, else "
                                       "the file name)")
    rep.add_argument("--host", help="host for every replayed line (default: from the line)")
    rep.add_argument("--year", type=int, help="year of timestamps that carry none (default: the file's "
                                              "modification year, or the year before when that puts a line "
                                              "more than a day after it)")
    rep.add_argument("--timezone", metavar="ZONE",
                     help="zone of timestamps that carry none, over the format's and LOG_TIMEZONE (UTC, "
                          "Europe/Paris, +02:00)")
    rep.add_argument("--replay-rate", type=positive_float, metavar="EPS",
                     help="pace the replay at this many events per second (default: as fast as possible)")

    kafka = parser.add_argument_group("kafka and output")
    kafka.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="Kafka brokers (default: settings)")
    kafka.add_argument("--topic", help="topic to produce to (default: KAFKA_TOPIC_LOGS)")
    kafka.add_argument("--no-create-topic", action="store_true", help="do not create the topic when it is missing")
    kafka.add_argument("--data-dir", metavar="DIR", help="where run folders go (default: DATA_DIR)")
    kafka.add_argument("--run-id", help="name of the run folder (default: time, scenario and seed)")
    kafka.add_argument("--stdout", action="store_true",
                       help="print the events (generated, or the replayed file's) as JSON lines instead of "
                            "producing them (no Kafka, no pacing)")
    kafka.add_argument("--json", action="store_true", help="print the summary as JSON")
    kafka.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    return parser


def _describe_scenarios() -> str:
    lines = ["scenarios:"]
    for s in SCENARIOS.values():
        flag = "" if s.expect_incident else "  (not an incident: must not page)"
        lines.append(f"  {s.name:<20} [{s.category}]{flag}\n      {s.description}")
    lines.append(f"modes: {', '.join(MODES)}")
    return "\n".join(lines)


def _print_summary(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(summary.render())


def _stdout_events(args: argparse.Namespace) -> int:
    if args.duration is None and args.count is None:
        raise ValueError("--stdout needs --duration or --count")
    events, truth = api.generate(args.scenario, rate=args.rate, duration_s=args.duration, count=args.count,
                                 seed=args.seed, start_ms=args.start, catalog=args.catalog, origin=args.origin)
    out = sys.stdout
    for record in events:
        out.write(json.dumps(record) + "\n")
    print(json.dumps({"ground_truth": truth.to_dict()}), file=sys.stderr)
    return EXIT_OK


def _reader(args: argparse.Namespace, settings: Settings, stop: StopFlag | None = None) -> LogFileReader:
    options = ReplayOptions(service=args.service, host=args.host, environment=settings.environment,
                            retime=args.retime, year=args.year, timezone=args.timezone,
                            default_timezone=settings.log_timezone, formats_file=settings.log_formats_path,
                            follow=args.follow, stop=(lambda: bool(stop)) if stop is not None else None)
    return LogFileReader(args.replay, args.format, options)


def _stdout_replay(args: argparse.Namespace, settings: Settings) -> int:
    """The replayed file's events as JSON lines on stdout (up to --count); its statistics on stderr."""
    stop = StopFlag()
    reader = _reader(args, settings, stop)
    out = sys.stdout
    announced = False
    written = 0
    with signals_stop(stop):
        try:
            for record in reader:
                if not announced and reader.stats.detected:
                    print(f"log-generator: {reader.stats.detected}", file=sys.stderr, flush=True)
                    announced = True
                out.write(json.dumps(record) + "\n")
                written += 1
                if args.follow:
                    out.flush()
                if args.count is not None and written >= args.count:
                    break
        except BrokenPipeError:  # the reader of our output went away (| head)
            sys.stderr.close()
            return EXIT_OK
    stats = reader.stats
    if not announced and stats.detected:
        print(f"log-generator: {stats.detected}", file=sys.stderr)
    print(json.dumps({"replay": asdict(stats)}), file=sys.stderr)
    return EXIT_OK


def _list_formats(settings: Settings) -> str:
    formats = load_formats(settings.log_formats_path)
    width = max(len(name) for name in formats)
    lines = ["log formats (--format NAME; auto picks one):"]
    for fmt in formats.values():
        aliases = f" (also {', '.join(fmt.aliases)})" if fmt.aliases else ""
        origin = "" if fmt.source == "presets" else f" [from {fmt.source}]"
        lines.append(f"  {fmt.name:<{width}}  {fmt.description}{aliases}{origin}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_scenarios:
        print(_describe_scenarios())
        return EXIT_OK
    if args.format != "auto" and not args.replay and not args.list_formats:
        parser.error("--format only applies with --replay FILE")
    if args.follow and not args.replay:
        parser.error("--follow only applies with --replay FILE")
    try:
        if args.list_formats:
            try:
                print(_list_formats(get_settings()), flush=True)
            except BrokenPipeError:  # | head
                sys.stderr.close()
            return EXIT_OK
        if args.stdout and args.replay:
            return _stdout_replay(args, get_settings())
        if args.stdout:
            return _stdout_events(args)
        settings = get_settings()
        common = dict(bootstrap_servers=args.bootstrap_servers, topic=args.topic, data_dir=args.data_dir,
                      run_id=args.run_id, progress=not args.quiet, create_topic=not args.no_create_topic,
                      settings=settings)
        if args.replay:
            summary = api.replay(args.replay, args.format, retime=args.retime, rate=args.replay_rate,
                                 service=args.service, host=args.host, year=args.year, timezone=args.timezone,
                                 follow=args.follow, **common)
            if summary.replay is not None and summary.replay.detected and not args.quiet:
                print(f"log-generator: {summary.replay.detected}", file=sys.stderr)
        else:
            if not args.quiet:
                print(f"log-generator: scenario {args.scenario}, {args.rate:,.0f} events/s"
                      + (f" x{args.speedup:g}" if args.speedup else " as fast as possible")
                      + (f", {args.duration:,.0f} s" if args.duration else "")
                      + (f", {args.count:,} events" if args.count else "")
                      + (", until Ctrl-C" if not (args.duration or args.count) else "")
                      + f", seed {args.seed}", file=sys.stderr)
            summary = api.run(args.scenario, rate=args.rate, duration_s=args.duration, count=args.count,
                              seed=args.seed, start_ms=args.start, speedup=args.speedup, catalog=args.catalog,
                              origin=args.origin, **common)
    except BrokerUnavailable as exc:
        print(f"log-generator: error: {exc}", file=sys.stderr)
        return EXIT_BROKER
    except (CatalogError, TemplateError, SettingsError, ReplayError, GroundTruthError, ValueError) as exc:
        print(f"log-generator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _print_summary(summary, args.json)
    return EXIT_OK if summary.ok and not summary.interrupted else EXIT_INCOMPLETE


if __name__ == "__main__":
    sys.exit(main())
