"""`incident-stack cluster ...`: the cluster tier's commands (behind `make cluster-up`, `cluster-status`, ...)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

from incident_contracts.settings import Settings, SettingsError
from incident_stack.cluster import Cluster
from incident_stack.spark_standalone import describe_placements
from incident_stack.supervisor import GREEN, RED, YELLOW, StartFailed, color

COMMANDS = ("up", "down", "status", "logs", "trigger", "demo", "clean")


def add_parser(sub: argparse._SubParsersAction) -> None:
    cluster = sub.add_parser("cluster", help="the cluster tier: three Kafka brokers, Spark standalone, Airflow on "
                                             "PostgreSQL, the dashboard, log-ingest, the notifier")
    commands = cluster.add_subparsers(dest="cluster_command", required=True)
    p_up = commands.add_parser("up", help="start the tier (or the named processes and what they require)")
    p_up.add_argument("processes", nargs="*")
    p_down = commands.add_parser("down", help="stop the tier (or the named processes and what requires them)")
    p_down.add_argument("processes", nargs="*")
    commands.add_parser("status", help="each process, its URL, whether it answers; the topic; the last Spark job")
    p_logs = commands.add_parser("logs", help="show the logs of the tier's processes")
    p_logs.add_argument("processes", nargs="*")
    p_logs.add_argument("-f", "--follow", action="store_true")
    p_logs.add_argument("-n", "--lines", type=int, default=50)
    p_trigger = commands.add_parser("trigger", help="trigger a pipeline run on the tier's Airflow")
    for option, kind in (("--scenario", str), ("--rate", int), ("--duration", int), ("--seed", int),
                         ("--speedup", float)):
        p_trigger.add_argument(option, type=kind)
    p_trigger.add_argument("--wait", action="store_true", help="follow the run, then print its summary and executors")
    p_trigger.add_argument("--timeout", type=float, default=1800)
    p_demo = commands.add_parser("demo", help="start the tier, run the pipeline once, show where the executors ran")
    p_demo.add_argument("--timeout", type=float, default=1800)
    p_clean = commands.add_parser("clean", help="remove the tier's runtime state; asks before deleting its data")
    p_clean.add_argument("--yes", action="store_true")


def _ago(epoch_ms: int | None) -> str:
    if not epoch_ms:
        return ""
    seconds = max(0, int(datetime.now(UTC).timestamp() - epoch_ms / 1000))
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60} min ago"


def describe_apps(cluster: Cluster, apps: list[dict[str, Any]], heading: str) -> list[str]:
    """The streaming job's applications and, per worker, the executors they ran there."""
    if not apps:
        return [f"{heading}: none on {cluster.layout.master_ui}"]
    placements = cluster.executors([a["id"] for a in apps])
    # A worker restarted meanwhile registers under a new id on the same web UI: count the tier's workers.
    workers = {p.worker_ui for p in placements}
    ids = ", ".join(f"{a['id']} ({a.get('state', '?')}, started {_ago(a.get('starttime'))})" for a in apps)
    lines = [f"{heading}: {ids}",
             f"  executors on {len(workers)} of {cluster.layout.workers} workers (the workers' JSON API):"]
    lines += ["  " + line for line in describe_placements(placements)] or ["    none listed"]
    return lines


def status(cluster: Cluster) -> int:
    s = cluster.settings
    print(f"Cluster tier: state in {s.runtime_dir}, tables in {s.data_dir}")
    print(f"{'process':<22} {'process id':<12} {'answers':<8} url")
    rows = cluster.status_rows()
    for row in rows:
        proc = f"pid {row['pid']}" if row["pid"] else "not running"
        mark = color("yes", GREEN) if row["answers"] else color("no", RED if row["pid"] else YELLOW)
        detail = f"  ({row['detail']})" if row["detail"] else ""
        print(f"{row['name']:<22} {proc:<12} {mark:<8} {row['url']}{detail}")
    answering = {row["name"] for row in rows if row["answers"]}
    if any(name.startswith("kafka-") for name in answering):
        try:
            print(cluster.topic().describe())
        except Exception as exc:  # status never fails on one probe
            print(f"topic {s.kafka_topic_logs}: unknown ({exc})")
    if "airflow-api-server" in answering:
        from incident_airflow.last_run import describe_last_run

        print(f"Airflow login: admin / {cluster.admin_password() or '(not generated yet)'}")
        print(describe_last_run(s, cluster.api()))
    if "spark-master" in answering:
        apps = cluster.stream_apps()
        print("\n".join(describe_apps(cluster, apps[-1:], "Last Spark job")))
    print(f"Settings of the pipeline on this tier: KAFKA_BOOTSTRAP_SERVERS={s.kafka_bootstrap_servers} "
          f"SPARK_MASTER={s.spark_master} AIRFLOW_PORT={s.airflow_port} DASHBOARD_PORT={s.dashboard_port}")
    return 0


def _run_executors(cluster: Cluster) -> None:
    """After a run: the streaming job's applications since the run started, and where their executors ran."""
    from incident_airflow.last_run import DAG_ID

    try:
        runs = cluster.api().dag_runs(DAG_ID, limit=1)
    except Exception as exc:
        print(f"could not read the run from Airflow: {exc}")
        return
    started = runs[0].get("start_date") if runs else None
    since = datetime.fromisoformat(started.replace("Z", "+00:00")) if started else None
    print("\n".join(describe_apps(cluster, cluster.stream_apps(since), "\nSpark applications of the run")))


def _airflow_running(cluster: Cluster) -> bool:
    if cluster.table.get("airflow-api-server") and cluster.table.get("airflow-scheduler"):
        return True
    print("error: the cluster tier's Airflow is not running; start the tier with `make cluster-up` "
          "(`make cluster-status` shows what runs)", file=sys.stderr)
    return False


def trigger(cluster: Cluster, args: argparse.Namespace) -> int:
    from incident_airflow.trigger import build_conf, run_and_report

    if not _airflow_running(cluster):
        return 1
    conf = build_conf(args.scenario, args.rate, args.duration, args.seed, args.speedup)
    code = run_and_report(cluster.settings, conf, args.wait, args.timeout, api=cluster.api())
    if args.wait:
        _run_executors(cluster)
    return code


def demo(cluster: Cluster, timeout: float) -> int:
    from incident_airflow.trigger import demo as run_demo

    cluster.up()
    code = run_demo(cluster.settings, timeout=timeout)
    print(f"  Spark:      {cluster.layout.master_ui}  (master; workers "
          f"{', '.join(cluster.layout.worker_ui(i) for i in range(1, cluster.layout.workers + 1))})")
    _run_executors(cluster)
    return code


def logs(cluster: Cluster, names: list[str], follow: bool, lines: int) -> int:
    table = cluster.table
    files = [str(table.log_file(n)) for n in (names or [*cluster.services, "airflow-db-migrate"])
             if table.log_file(n).exists()]
    if not files:
        print("no logs yet: start the tier with `make cluster-up`")
        return 0
    try:
        return subprocess.call(["tail", "-n", str(lines), *(["-F"] if follow else []), *files])
    except KeyboardInterrupt:
        return 0


def clean(cluster: Cluster, assume_yes: bool) -> int:
    running = [n for n in cluster.services if cluster.table.get(n)]
    if running:
        print(f"error: the cluster tier is running ({', '.join(running)}); run `make cluster-down` first",
              file=sys.stderr)
        return 2
    shutil.rmtree(cluster.settings.runtime_dir, ignore_errors=True)
    print(f"removed the tier's runtime state {cluster.settings.runtime_dir} (Kafka logs, PostgreSQL, Airflow home)")
    data = cluster.settings.data_dir
    if data.exists() and any(data.iterdir()):
        if not assume_yes:
            if not sys.stdin.isatty():
                print(f"kept the tier's data in {data} (`make cluster-clean YES=1` deletes it without asking)")
                return 0
            if input(f"Also delete the tier's tables and checkpoints in {data}? [y/N] ").strip().lower() not in {
                    "y", "yes"}:
                print(f"kept {data}")
                return 0
        shutil.rmtree(data)
        print(f"removed {data}")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        cluster = Cluster(settings)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = args.cluster_command
    names = getattr(args, "processes", []) or []
    unknown = [n for n in names if n not in cluster.services]
    if unknown:
        print(f"error: unknown process {', '.join(unknown)}; the tier has: {', '.join(cluster.services)}",
              file=sys.stderr)
        return 2
    try:
        if command == "up":
            s = cluster.settings
            print(f"Starting the cluster tier (state in {s.runtime_dir}; logs in {cluster.table.log_dir})", flush=True)
            cluster.up(names or None)
            print(f"Up. `make cluster-status` shows every process. Airflow: http://127.0.0.1:{s.airflow_port} (admin / "
                  f"{cluster.admin_password() or '?'}); Spark master: {cluster.layout.master_ui}; "
                  f"dashboard: http://127.0.0.1:{s.dashboard_port}")
            return 0
        if command == "down":
            cluster.down(names or None)
            return 0
        if command == "status":
            return status(cluster)
        if command == "logs":
            return logs(cluster, names, args.follow, args.lines)
        if command == "trigger":
            return trigger(cluster, args)
        if command == "demo":
            return demo(cluster, args.timeout)
        return clean(cluster, args.yes)
    except StartFailed as exc:
        print(f"error: the cluster tier did not start:\n{exc}\n(`make cluster-down` stops what did start)",
              file=sys.stderr)
        return 2 if "already in use" in str(exc) else 1
    except KeyboardInterrupt:
        print("\ninterrupted; `make cluster-down` stops what was started", file=sys.stderr)
        return 130
    except Exception as exc:
        from incident_airflow.api_client import AirflowApiError
        from incident_airflow.trigger import RunFailed

        if isinstance(exc, (AirflowApiError, RunFailed, RuntimeError, OSError)):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise
