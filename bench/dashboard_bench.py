"""Dashboard benchmark: query latency and page render time at 10 million events and 50,000 incident updates.

    .venv/bin/python bench/dashboard_bench.py [--quick] [--json OUT.json] [--data-dir DIR]

1. Writes demo tables the way the Spark job lays them out (hourly event partitions, many small files;
   incident updates in files of 25 rows) unless --data-dir already holds a dataset of the same size.
2. Measures, in a fresh child process (so its peak memory is the dashboard's alone):
   - the Incidents page query (filters, sort, text search) with result caching off: p50 / p95;
   - Overview and incident-detail queries, uncached;
   - page render time of the Incidents, Overview and Incident pages through Streamlit's AppTest;
   - cold start (first query, loading every file) and peak RSS of the process.
Targets: Incidents query p95 <= 300 ms, Incidents page render <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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

from report import Metric, emit, median_metric  # noqa: E402

FULL = {"events": 10_000_000, "incidents": 7_520, "hours": 24, "files_per_hour": 40}
QUICK = {"events": 1_000_000, "incidents": 760, "hours": 24, "files_per_hour": 20}


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def build(data_dir: Path, size: dict) -> dict:
    from incident_dashboard.demo import DemoConfig, build_demo_data

    marker = data_dir / "bench-dataset.json"
    if marker.is_file() and json.loads(marker.read_text()).get("size") == size:
        print(f"reusing the dataset in {data_dir}")
        return json.loads(marker.read_text())
    shutil.rmtree(data_dir, ignore_errors=True)
    started = time.perf_counter()
    summary = build_demo_data(data_dir, DemoConfig(events=size["events"], incidents=size["incidents"],
                                                   hours=size["hours"], files_per_hour=size["files_per_hour"],
                                                   updates_per_file=25, dead_letters=2_000, seed=42))
    info = {"size": size, "events": summary.events, "event_files": summary.event_files,
            "update_rows": summary.update_rows, "update_files": summary.update_files,
            "incidents": len(summary.incidents), "build_seconds": round(time.perf_counter() - started, 1)}
    marker.write_text(json.dumps(info))
    print(f"wrote {info['events']:,} events ({info['event_files']} files) and {info['update_rows']:,} incident "
          f"updates ({info['update_files']} files) in {info['build_seconds']} s")
    return info


def measure(data_dir: Path, repeats: int) -> dict:
    """Runs in the child process: every figure of the dashboard side."""
    os.environ.update({"DATA_DIR": str(data_dir), "ENV_FILE": str(data_dir / "no.env"),
                       "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "DASHBOARD_CACHE_TTL_SECONDS": "0"})
    from incident_dashboard.data import IncidentFilter, Repository

    out: dict = {}
    started = time.perf_counter()
    repo = Repository(data_dir, cache_ttl=0)
    freshness = repo.freshness()
    out["cold_start_s"] = time.perf_counter() - started  # every file listed, read once and rolled up
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
        t = time.perf_counter()
        page = repo.incidents(flt)
        samples.append((time.perf_counter() - t) * 1000)
        assert page.total >= 0
    out["incidents_query_ms"] = samples
    out["incidents_total"] = repo.incidents(filters[-1]).total
    out["update_rows"] = repo.db.rows("SELECT count(*) FROM incident_updates")[0][0]

    overview = []
    for _ in range(max(5, repeats // 4)):
        t = time.perf_counter()
        repo.traffic(end - timedelta(hours=24), end, "30 minutes")
        repo.noisiest_services(end - timedelta(hours=24), end)
        repo.top_signatures(end - timedelta(hours=24), end)
        repo.incidents_over_time(end - timedelta(hours=24), end, "30 minutes")
        overview.append((time.perf_counter() - t) * 1000)
    out["overview_queries_ms"] = overview

    recent = repo.recent_incidents(40)["incident_id"].tolist()
    detail = []
    for incident_id in recent[: max(5, repeats // 4)]:
        incident = repo.incident(incident_id)
        stop = incident.get("resolved_at") or incident["last_seen"]
        t = time.perf_counter()
        repo.incident_window([incident["service"]], incident["opened_at"] - timedelta(minutes=30),
                             stop + timedelta(minutes=15))
        repo.sample_events(incident["service"], incident["first_seen"], stop,
                           [s["signature_id"] for s in incident["top_signatures"] or []])
        detail.append((time.perf_counter() - t) * 1000)
    out["detail_queries_ms"] = detail

    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    t = time.perf_counter()
    app.run()
    out["first_render_s"] = time.perf_counter() - t
    renders: dict[str, list[float]] = {}
    for page, params in (("views/incidents.py", {}), ("views/overview.py", {}),
                         ("views/incident.py", {"id": recent[0]})):
        app.query_params.clear()
        app.query_params.update(params)
        app.switch_page(page)
        app.run()  # first visit of the page
        times = []
        for _ in range(max(5, repeats // 5)):
            t = time.perf_counter()
            app.run()
            times.append((time.perf_counter() - t) * 1000)
            if app.exception:
                raise RuntimeError(f"{page}: {app.exception[0].value}")
        renders[page] = times
    out["render_ms"] = renders
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1M events / 5k updates instead of 10M / 50k")
    parser.add_argument("--json", help="write the results as JSON here")
    parser.add_argument("--data-dir", type=Path, help="dataset folder (kept; reused when it matches the size)")
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.repeats)))
        return 0

    size = QUICK if args.quick else FULL
    scratch = None
    data_dir = args.data_dir
    if data_dir is None:
        scratch = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
        data_dir = scratch / "data"
    try:
        info = build(data_dir, size)
        child = subprocess.run([sys.executable, __file__, "--measure", str(data_dir), "--repeats",
                                str(args.repeats)], capture_output=True, text=True, check=False)
        if child.returncode != 0:
            print(child.stdout[-3000:], child.stderr[-5000:], file=sys.stderr)
            return child.returncode
        result = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    label = f"{info['events'] / 1e6:g}M events, {result['update_rows'] / 1e3:.0f}k updates"
    q = result["incidents_query_ms"]
    inc_render = result["render_ms"]["views/incidents.py"]
    metrics = [
        Metric(f"incidents query p95 ({label})", _p95(q), "ms", target=300, op="<=",
               samples=q, note="result cache off; each call re-checks the folder for new files"),
        median_metric("incidents query p50", q, "ms"),
        Metric("incidents page render p95 (AppTest)", _p95(inc_render), "ms", target=1000, op="<=",
               samples=inc_render),
        median_metric("overview page render", result["render_ms"]["views/overview.py"], "ms"),
        median_metric("incident page render", result["render_ms"]["views/incident.py"], "ms"),
        median_metric("overview queries (4 rollup queries)", result["overview_queries_ms"], "ms"),
        median_metric("incident detail queries (raw events)", result["detail_queries_ms"], "ms"),
        Metric("cold start: load every file", result["cold_start_s"], "s",
               note=f"{info['event_files']} event files, {info['update_files']} update files"),
        Metric("first page render (imports, first loads)", result["first_render_s"], "s"),
        Metric("peak memory of the dashboard process", result["peak_rss_mb"], "MB"),
    ]
    emit("dashboard", metrics, args.json, dataset=info, machine_cores=os.cpu_count(),
         incidents=result["incidents_total"], p99_incidents_query_ms=sorted(q)[-1],
         stdev_incidents_query_ms=statistics.pstdev(q))
    return 0


if __name__ == "__main__":
    sys.exit(main())
