"""Dashboard benchmark: query latency and page render time at 10 million events and 50,000 incident updates.

    .venv/bin/python bench/dashboard_bench.py [--quick] [--json OUT.json] [--data-dir DIR] [--rebuild]

1. Writes demo Delta Lake tables the way the Spark job commits them (hourly event partitions, many small
   files, a version per hour; incident updates in files of 25 rows) and times it. The dataset is kept
   between runs, keyed by its parameters, under the system's temporary folder
   (``incident-dashboard-bench/<key>``) or in --data-dir; a folder holding a dataset of the same
   parameters is reused. --rebuild writes it again.
2. Measures, in a fresh child process (so its peak memory is the dashboard's alone), on a scratch copy of
   the dataset (data files hard-linked, logs copied: the refresh figures commit to it), with the
   repository expired before each timed call (no cached result, every table's log asked for a new
   version, as after the cache TTL):
   - the Incidents page query (filters, sort, text search): p50 / p95;
   - the Overview rollup queries and every query of the incident page;
   - refresh of every table: with no new version, after a new commit (a micro-batch of events and
     incident updates), and after a compaction of an hour of events;
   - render time (and CPU time) of the Incidents, Incident, Overview and Pipeline pages through AppTest;
   - cold start (first query, loading every file), first render and peak RSS of the process.
Targets: Incidents query p95 <= 100 ms; Incidents page and Incident page render p95 <= 1 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from measure import PeakMemory, percentile  # noqa: E402
from report import Metric, emit, median_metric  # noqa: E402

FULL = {"events": 10_000_000, "incidents": 7_700, "hours": 24, "files_per_hour": 40, "updates_per_file": 25,
        "dead_letters": 2_000, "seed": 42}
QUICK = {"events": 1_000_000, "incidents": 770, "hours": 24, "files_per_hour": 20, "updates_per_file": 25,
         "dead_letters": 2_000, "seed": 42}
DATASET_VERSION = 3  # bump when the demo builder's output changes, so cached datasets are rebuilt


def dataset_key(size: dict) -> str:
    """Names a dataset by everything that shapes it (parameters and builder version)."""
    text = json.dumps({"version": DATASET_VERSION, **size}, sort_keys=True)
    label = f"{size['events'] // 1000}k-events-{size['incidents']}-incidents"
    return f"{label}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def default_data_dir(size: dict) -> Path:
    return Path(tempfile.gettempdir()) / "incident-dashboard-bench" / dataset_key(size) / "data"


def scratch_copy(data_dir: Path, scratch: Path) -> Path:
    """A copy of the dataset to commit to: data files hard-linked (never modified by a writer), every
    other file (the Delta logs) copied."""
    shutil.rmtree(scratch, ignore_errors=True)

    def link_or_copy(src: str, dst: str) -> None:
        if src.endswith(".parquet") and "_delta_log" not in src:
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(data_dir, scratch, copy_function=link_or_copy)
    return scratch


def build(data_dir: Path, size: dict, rebuild: bool = False) -> dict:
    from incident_dashboard.demo import DemoConfig, build_demo_data

    marker = data_dir / "bench-dataset.json"
    if not rebuild and marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("key") == dataset_key(size):
            print(f"reusing the dataset in {data_dir} (built in {info['build_seconds']} s; --rebuild to write it "
                  "again)")
            return {**info, "reused": True}
    shutil.rmtree(data_dir, ignore_errors=True)
    started = time.perf_counter()
    summary = build_demo_data(data_dir, DemoConfig(
        events=size["events"], incidents=size["incidents"], hours=size["hours"],
        files_per_hour=size["files_per_hour"], updates_per_file=size["updates_per_file"],
        dead_letters=size["dead_letters"], seed=size["seed"]))
    info = {"key": dataset_key(size), "size": size, "events": summary.events, "event_files": summary.event_files,
            "update_rows": summary.update_rows, "update_files": summary.update_files,
            "incidents": len(summary.incidents), "build_seconds": round(time.perf_counter() - started, 1)}
    marker.write_text(json.dumps(info))
    print(f"wrote {info['events']:,} events ({info['event_files']} files) and {info['update_rows']:,} incident "
          f"updates ({info['update_files']} files) to {data_dir} in {info['build_seconds']} s")
    return {**info, "reused": False}


def measure(data_dir: Path, repeats: int) -> dict:
    """Runs in the child process: every figure of the dashboard side.

    The queries and the pages share one repository, as in the dashboard's server process. Before each
    timed query or render the repository is expired (:meth:`Repository.expire`): no result is cached
    and every folder it reads is listed again, which is the state every page is in once
    ``DASHBOARD_CACHE_TTL_SECONDS`` has passed (on each auto-refresh, say).
    """
    os.environ.update({"DATA_DIR": str(data_dir), "ENV_FILE": str(data_dir / "no.env"),
                       "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "DASHBOARD_CACHE_TTL_SECONDS": "5"})
    from incident_contracts.catalog import default_catalog
    from incident_rca.context import build_context
    from incident_rca.data import IncidentFilter, get_repository

    out: dict = {}
    memory = PeakMemory({"dashboard": lambda: [os.getpid()]}, since_start=True)  # the kernel's mark: exact
    started = time.perf_counter()
    repo = get_repository()
    freshness = repo.freshness()
    out["cold_start_s"] = time.perf_counter() - started  # every file of each version read once and rolled up
    memory.sample()
    out["cold_start_rss_mb"] = memory.peak_mb["dashboard"]
    end = freshness.reference_time
    filters = [
        IncidentFilter(start=end - timedelta(hours=24), end=end),
        IncidentFilter(start=end - timedelta(hours=24), end=end, severities=("P1", "P2"), sort="newest"),
        IncidentFilter(start=end - timedelta(hours=6), end=end, statuses=("open",)),
        IncidentFilter(start=end - timedelta(days=7), end=end, services=("order-service", "auth-service"),
                       sort="anomaly"),
        IncidentFilter(start=end - timedelta(hours=24), end=end, text="connection pool"),
        IncidentFilter(sort="longest"),
    ]
    samples = []
    for i in range(repeats):
        flt = filters[i % len(filters)]
        repo.expire()
        t = time.perf_counter()
        page = repo.incidents(flt)
        samples.append((time.perf_counter() - t) * 1000)
        assert page.total > 0, flt
    out["incidents_query_ms"] = samples
    out["incidents_total"] = repo.incidents(filters[-1]).total
    out["update_rows"] = repo.db.rows("SELECT count(*) FROM incident_updates")[0][0]

    overview = []
    for _ in range(max(5, repeats // 4)):
        repo.expire()
        t = time.perf_counter()
        repo.traffic(end - timedelta(hours=24), end, "30 minutes")
        repo.noisiest_services(end - timedelta(hours=24), end)
        repo.top_signatures(end - timedelta(hours=24), end)
        repo.incidents_over_time(end - timedelta(hours=24), end, "30 minutes")
        overview.append((time.perf_counter() - t) * 1000)
    out["overview_queries_ms"] = overview

    # Incidents of every kind: the newest ones, and ones whose origin is another incident.
    recent = repo.recent_incidents(400)
    linked = repo.db.rows("SELECT incident_id FROM incidents_current WHERE origin_incident_id IS NOT NULL "
                          "ORDER BY opened_at DESC LIMIT 3")
    incident_ids = list(dict.fromkeys(recent["incident_id"].head(3).tolist() + [r[0] for r in linked]))
    catalog = default_catalog()
    detail = []
    for i in range(max(6, repeats // 4)):
        repo.expire()
        t = time.perf_counter()
        context = build_context(repo, catalog, incident_ids[i % len(incident_ids)])
        detail.append((time.perf_counter() - t) * 1000)
        assert context.signatures and not context.window.empty
    out["detail_queries_ms"] = detail
    out["incident_ids"] = incident_ids

    from streamlit.components.v2.component_manager import BidiComponentManager
    from streamlit.testing.v1 import AppTest

    # A server scans the installed packages for custom components once, when it starts; AppTest would do
    # it in its first run. Timed on its own, then skipped, so the first render is the page's.
    t = time.perf_counter()
    BidiComponentManager().discover_and_register_components(start_file_watching=False)
    out["component_scan_s"] = time.perf_counter() - t
    BidiComponentManager.discover_and_register_components = lambda self, **_: None

    app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    repo.expire()
    t = time.perf_counter()
    app.run()
    out["first_render_s"] = time.perf_counter() - t
    if app.exception:
        raise RuntimeError(f"first render: {app.exception[0].value}")
    renders: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    cached: list[float] = []
    for page in ("views/incidents.py", "views/overview.py", "views/incident.py", "views/pipeline.py"):
        app.query_params.clear()
        if page == "views/incident.py":
            app.query_params["id"] = incident_ids[0]
        app.switch_page(page)
        app.run()  # first visit of the page
        times, cpu_times = [], []
        for i in range(max(6, repeats // 8)):
            if page == "views/incident.py":
                app.query_params["id"] = incident_ids[i % len(incident_ids)]
            repo.expire()
            t, c = time.perf_counter(), time.process_time()
            app.run()
            times.append((time.perf_counter() - t) * 1000)
            cpu_times.append((time.process_time() - c) * 1000)  # every thread of the process (DuckDB's too)
            if app.exception:
                raise RuntimeError(f"{page}: {app.exception[0].value}")
            if page == "views/incident.py":
                t = time.perf_counter()
                app.run()  # the same incident again within the TTL: results cached, drawing only
                cached.append((time.perf_counter() - t) * 1000)
        if page == "views/incident.py":
            shown = [t.value for t in app.title]
            assert incident_ids[(len(times) - 1) % len(incident_ids)] in shown, shown
        renders[page], cpu[page] = times, cpu_times
    out["render_ms"] = renders
    out["render_cpu_ms"] = cpu
    out["render_cached_ms"] = cached
    memory.sample()
    out["peak_rss_mb"] = memory.peak_mb["dashboard"]
    # Last: the commits and the compaction it times are made from this process (the writer's memory).
    out.update(measure_refresh(repo, end, max(5, repeats // 10)))
    return out


def measure_refresh(repo, end, rounds: int) -> dict:
    """Seconds for every table to catch up after nothing, a new commit, and a compaction (in the child)."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    from incident_contracts.table_store import TableStore

    store = TableStore(repo.store.root)

    def refresh() -> float:
        repo.expire()
        t = time.perf_counter()
        repo.refresh_all()
        return (time.perf_counter() - t) * 1000

    idle = [refresh() for _ in range(rounds)]
    events = store.dataset("events").head(2_000, filter=pc.field("event_hour") == end.hour)
    updates = store.dataset("incident_updates").head(5)
    before = repo.event_totals()["events"]
    commits = []
    for _ in range(rounds):
        store.append("events", events)
        store.append("incident_updates", updates)
        commits.append(refresh())
    assert repo.event_totals()["events"] == before + rounds * events.num_rows
    hour = events.column("event_date")[0].as_py(), events.column("event_hour")[0].as_py()
    files_before = repo.status("events").files
    compacted = DeltaTable(store.uri("events")).optimize.compact(
        partition_filters=[("event_date", "=", hour[0]), ("event_hour", "=", str(hour[1]))])
    compaction = refresh()
    assert repo.event_totals()["events"] == before + rounds * events.num_rows
    return {"refresh_idle_ms": idle, "refresh_commit_ms": commits, "refresh_compaction_ms": compaction,
            "compaction_files": [compacted["numFilesRemoved"], compacted["numFilesAdded"]],
            "files_after_compaction": [files_before, repo.status("events").files]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1M events / 5k updates instead of 10M / 50k")
    parser.add_argument("--json", help="write the results as JSON here")
    parser.add_argument("--data-dir", type=Path, help="dataset folder (kept; reused when its parameters match); "
                                                      "default: a folder per parameter set under the temp folder")
    parser.add_argument("--rebuild", action="store_true", help="write the dataset again even if a matching one exists")
    parser.add_argument("--repeats", type=int, help="incidents queries to time (default 60; 30 with --quick); "
                                                    "the other figures take a share of it")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.repeats or 60)))
        return 0

    size = QUICK if args.quick else FULL
    repeats = args.repeats or (30 if args.quick else 60)
    data_dir = args.data_dir or default_data_dir(size)
    info = build(data_dir, size, rebuild=args.rebuild)
    scratch = scratch_copy(data_dir, data_dir.parent / "scratch")
    try:
        child = subprocess.run([sys.executable, __file__, "--measure", str(scratch), "--repeats", str(repeats)],
                               capture_output=True, text=True, check=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if child.returncode != 0:
        print(child.stdout[-3000:], child.stderr[-5000:], file=sys.stderr)
        return child.returncode
    result = json.loads(child.stdout.strip().splitlines()[-1])

    label = f"{info['events'] / 1e6:.3g}M events, {result['update_rows'] / 1e3:.1f}k updates"
    q = result["incidents_query_ms"]
    renders, cpu = result["render_ms"], result["render_cpu_ms"]
    expired = "caches expired before each render (every table's log re-read, every query run)"

    def cpu_note(page: str) -> str:
        return f"; CPU time median {statistics.median(cpu[page]):,.0f} ms"

    metrics = [
        Metric(f"incidents query p95 ({label})", percentile(q, 95), "ms", target=100, op="<=",
               samples=q, note="no cached result; each call asks the incident_updates log for a new version"),
        median_metric("incidents query p50", q, "ms"),
        Metric("incidents page render p95 (AppTest)", percentile(renders["views/incidents.py"], 95), "ms", target=1000,
               op="<=", samples=renders["views/incidents.py"], note=expired + cpu_note("views/incidents.py")),
        Metric("incident page render p95 (AppTest)", percentile(renders["views/incident.py"], 95), "ms", target=1000,
               op="<=", samples=renders["views/incident.py"],
               note=f"{expired}; {len(result['incident_ids'])} incidents in turn{cpu_note('views/incident.py')}"),
        median_metric("overview page render", renders["views/overview.py"], "ms",
                      note=expired + cpu_note("views/overview.py")),
        median_metric("pipeline page render", renders["views/pipeline.py"], "ms",
                      note=expired + "; no broker (its probe fails fast)" + cpu_note("views/pipeline.py")),
        median_metric("incident page render, results cached", result["render_cached_ms"], "ms",
                      note="the same incident again within the TTL: drawing only"),
        median_metric("overview queries (4 rollup queries)", result["overview_queries_ms"], "ms"),
        median_metric("incident context (every query of the incident page)", result["detail_queries_ms"], "ms"),
        Metric("cold start: load every file", result["cold_start_s"], "s",
               note=f"{info['event_files']} event files, {info['update_files']} update files"),
        median_metric("refresh, no new version (4 tables)", result["refresh_idle_ms"], "ms"),
        median_metric("refresh after a new commit (2,000 events + 5 updates)", result["refresh_commit_ms"], "ms"),
        Metric("refresh after compacting an hour of events", result["refresh_compaction_ms"], "ms",
               note="{} files replaced by {}".format(*result["compaction_files"])),
        Metric(f"build the dataset ({info['events'] / 1e6:.3g}M events, write_files + commit_files)",
               info["build_seconds"], "s", note="reused: built by an earlier run" if info["reused"] else ""),
        Metric("first page render (imports, first queries)", result["first_render_s"], "s",
               note=f"after the cold start; the server's component scan ({result['component_scan_s']:.1f} s) "
                    "happens at its start"),
        Metric("peak memory of the dashboard process", result["peak_rss_mb"], "MB",
               note=f"{result['cold_start_rss_mb']:,.0f} MB after the cold start; before the refresh figures, "
                    "whose commits and compaction run in the same process"),
    ]
    emit("dashboard", metrics, args.json, dataset=info, machine_cores=os.cpu_count(),
         incidents=result["incidents_total"], p99_incidents_query_ms=percentile(q, 99),
         stdev_incidents_query_ms=statistics.pstdev(q))
    return 0


if __name__ == "__main__":
    sys.exit(main())
