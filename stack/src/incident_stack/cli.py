"""`incident-stack`: start, stop and inspect the embedded local stack (what `make up/down/status/logs` call)
and, under `incident-stack cluster`, the cluster tier (`make cluster-up/-down/-status/-demo`)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from incident_contracts.kafka import TopicSpec, ensure_topics
from incident_contracts.settings import Settings, SettingsError, load_settings
from incident_stack import cluster_cli
from incident_stack.processes import ProcessTable
from incident_stack.services import ORDER, SERVICES
from incident_stack.supervisor import GREEN, RED, YELLOW, PortTaken, color, start_service


def up(settings: Settings, names: list[str]) -> int:
    table = ProcessTable(settings.runtime_dir)
    for name in names:
        try:
            start_service(SERVICES[name], settings, table)
        except PortTaken as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if name == "broker":
            outcome = ensure_topics(settings.kafka_bootstrap_servers, [TopicSpec(
                settings.kafka_topic_logs, settings.kafka_topic_partitions, settings.kafka_replication_factor,
                settings.topic_configs())])
            for topic, what in outcome.items():
                print(f"  topic {topic}: {what}")
    return 0


def down(settings: Settings, names: list[str]) -> int:
    table = ProcessTable(settings.runtime_dir)
    for name in reversed(names):
        stopped = table.stop(name)
        print(f"  {name}: {'stopped' if stopped else 'not running'}")
    return 0


def status(settings: Settings) -> int:
    table = ProcessTable(settings.runtime_dir)
    print(f"{'service':<10} {'process':<14} {'answers':<8} url")
    for name in ORDER:
        service = SERVICES[name]
        record = table.get(name)
        proc = f"pid {record.pid}" if record else "not running"
        answers = service.healthy(settings)
        mark = color("yes", GREEN) if answers else color("no", RED if record else YELLOW)
        print(f"{name:<10} {proc:<14} {mark:<8} {service.url(settings)}")
    if table.get("airflow"):
        from incident_airflow.environment import admin_password

        password = admin_password(settings)
        print(f"\nAirflow login: admin / {password or '(generated at first start; run make status again)'}")
    try:
        from incident_airflow.last_run import describe_last_run
    except ImportError:
        describe_last_run = None
    if describe_last_run and table.get("airflow"):
        print(describe_last_run(settings))
    print(f"Spark UI (while a job runs): http://127.0.0.1:{settings.spark_ui_port}")
    print(f"Data: {settings.data_dir}   Runtime (pids, logs): {settings.runtime_dir}")
    return 0


def logs(settings: Settings, names: list[str], follow: bool, lines: int) -> int:
    table = ProcessTable(settings.runtime_dir)
    files = [str(table.log_file(n)) for n in names if table.log_file(n).exists()]
    if not files:
        print("no logs yet: start the stack with `make up`")
        return 0
    command = ["tail", "-n", str(lines), *(["-F"] if follow else []), *files]
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0


def clean(settings: Settings, assume_yes: bool) -> int:
    table = ProcessTable(settings.runtime_dir)
    if any(table.get(n) for n in ORDER):
        print("error: the stack is running; run `make down` first", file=sys.stderr)
        return 2
    shutil.rmtree(settings.runtime_dir, ignore_errors=True)
    print(f"removed runtime state {settings.runtime_dir} (pids, logs, Airflow home, the Kafka log)")
    checkpoints = settings.checkpoint_root
    if checkpoints.exists():
        # A checkpoint records offsets of the topic whose log was just removed: against the topic created
        # afresh at the next start it would only fail with a data-loss error.
        shutil.rmtree(checkpoints)
        print(f"removed the Spark checkpoints {checkpoints} (they recorded offsets of the removed Kafka log)")
    data = settings.data_dir
    if data.exists() and any(data.iterdir()):
        answer = "y" if assume_yes else ""
        if not assume_yes:
            if not sys.stdin.isatty():
                print(f"kept data in {data} (run `make clean YES=1` to delete it without asking)")
                return 0
            answer = input(f"Also delete all pipeline data in {data} (Parquet tables, checkpoints)? [y/N] ")
        if answer.strip().lower() in {"y", "yes"}:
            shutil.rmtree(data)
            print(f"removed {data}")
        else:
            print(f"kept {data}")
    return 0


def roundtrip(settings: Settings) -> int:
    """Prove the broker and the codec: produce encoded events, consume and decode them intact."""
    from incident_stack.roundtrip import round_trip

    result = round_trip(settings)
    print(f"round trip through {settings.kafka_bootstrap_servers}/{settings.kafka_topic_logs}: "
          f"{result['events']} Avro events produced, consumed and decoded intact in {result['total_seconds']:.2f}s")
    return 0


def demo(settings: Settings) -> int:
    """Run the pipeline DAG once on a mixed scenario, wait for it, and print where to look."""
    from incident_airflow.trigger import RunFailed
    from incident_airflow.trigger import demo as run_demo

    try:
        return run_demo(settings)
    except RunFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start services (all by default) in the background")
    p_up.add_argument("services", nargs="*", default=list(ORDER))
    p_down = sub.add_parser("down", help="stop the services this stack started")
    p_down.add_argument("services", nargs="*", default=list(ORDER))
    sub.add_parser("status", help="show each service, its URL and whether it answers")
    p_logs = sub.add_parser("logs", help="show service logs")
    p_logs.add_argument("services", nargs="*", default=list(ORDER))
    p_logs.add_argument("-f", "--follow", action="store_true")
    p_logs.add_argument("-n", "--lines", type=int, default=50)
    sub.add_parser("demo", help="run the pipeline once on the running stack and print where to look")
    sub.add_parser("roundtrip", help="produce, consume and decode Avro events through the broker")
    p_clean = sub.add_parser("clean", help="remove runtime state; asks before deleting data")
    p_clean.add_argument("--yes", action="store_true", help="also delete the data directory without asking")
    cluster_cli.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in getattr(args, "services", []) or []:
        if name not in SERVICES:
            print(f"error: unknown service {name!r}; known: {', '.join(ORDER)}", file=sys.stderr)
            return 2
    if args.command == "cluster":
        return cluster_cli.run(args, settings)
    try:
        if args.command == "up":
            return up(settings, [n for n in ORDER if n in args.services])
        if args.command == "down":
            return down(settings, [n for n in ORDER if n in args.services])
        if args.command == "status":
            return status(settings)
        if args.command == "logs":
            return logs(settings, args.services, args.follow, args.lines)
        if args.command == "demo":
            return demo(settings)
        if args.command == "roundtrip":
            return roundtrip(settings)
        return clean(settings, args.yes)
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
