"""`make bench`: run every benchmark script, print one table, save JSON with the machine, append history.

Each `bench/*_bench.py` script is run as its own process (so one crashing cannot take the others down)
with `--json`; with QUICK=1 they also get `--quick`. Results land in bench/results/latest.json and one
line per run is appended to bench/results/history.jsonl, so regressions show over time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import Metric, format_table

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
# Order matters only for reading the table: producer side first, then Spark (the job, then its Kafka source
# against Spark's own connector, then the job on the cluster tier), detection, notifications, dashboard.
ORDER = ["generator", "parser", "ingest", "spark", "connector", "cluster", "detection", "notify", "dashboard"]
# Benchmarks a quick run includes only when named with --only, with the seconds it then gives them: the cluster
# tier's (a process tier of its own, not reducible to a few minutes on 2 cores) and the connector comparison
# (two Spark sessions on one backlog: a decision's evidence, not a figure of the product's own path).
NOT_QUICK = {"cluster": 1500, "connector": 600}


def discover(only: list[str] | None, quick: bool = False) -> list[Path]:
    scripts = sorted(BENCH_DIR.glob("*_bench.py"), key=lambda p: (
        ORDER.index(p.stem.removesuffix("_bench")) if p.stem.removesuffix("_bench") in ORDER else 99, p.name))
    if only:
        scripts = [s for s in scripts if s.stem.removesuffix("_bench") in only]
    elif quick:
        scripts = [s for s in scripts if s.stem.removesuffix("_bench") not in NOT_QUICK]
    return scripts


def script_timeout(script: Path, quick: bool, timeout: float, given: bool) -> float:
    """Seconds `script` may take: `timeout`, or in a quick run at least what NOT_QUICK allows it (unless the
    timeout was given on the command line)."""
    if given or not quick:
        return timeout
    return max(timeout, NOT_QUICK.get(script.stem.removesuffix("_bench"), 0))


def machine() -> dict:
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        memory_gib = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    cpu_model = None
    with contextlib.suppress(OSError, StopIteration):
        cpu_model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("model name"))
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "memory_gib": memory_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "java": _java_version(),
        "versions": {p: version(p) for p in ("pyspark", "confluent-kafka", "fastavro", "pyarrow", "duckdb",
                                             "streamlit", "apache-airflow")},
        "git_commit": commit,
        "git_dirty": dirty,
    }


def _java_version() -> str | None:
    try:
        result = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
        return (result.stderr or result.stdout).splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def run_script(script: Path, quick: bool, timeout: float, results: Path) -> dict:
    out = results / f"{script.stem}.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, str(script), "--json", str(out), *(["--quick"] if quick else [])]
    started = time.monotonic()
    print(f"\n>>> {script.name}{' (quick)' if quick else ''}", flush=True)
    try:
        process = subprocess.run(command, cwd=ROOT, timeout=timeout)
        code = process.returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
    elapsed = time.monotonic() - started
    result = json.loads(out.read_text()) if out.exists() else {"benchmark": script.stem, "metrics": [], "context": {}}
    result["title"] = result.get("benchmark")
    result.update(benchmark=script.stem.removesuffix("_bench"), exit_code=code, seconds=round(elapsed, 1),
                  script=script.name)
    if code != 0:
        result["error"] = f"{script.name} exited with {code} after {elapsed:.0f}s"
    return result


def as_metrics(result: dict) -> list[Metric]:
    metrics = []
    for m in result.get("metrics", []):
        metrics.append(Metric(metric=m["metric"], value=m["value"], unit=m["unit"], target=m.get("target"),
                              op=m.get("op", ">="), limit=m.get("limit"), samples=m.get("samples") or [],
                              note=m.get("note", "")))
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced sizes: every benchmark in a few minutes")
    names = sorted(p.stem.removesuffix("_bench") for p in BENCH_DIR.glob("*_bench.py"))
    parser.add_argument("--only", nargs="*", help=f"run only these benchmarks, separated by spaces or commas "
                        f"({', '.join(names)}); with --quick, {' and '.join(NOT_QUICK)} run only when named here")
    parser.add_argument("--timeout", type=float, help="seconds one benchmark script may take "
                        "(default: 3600, with --quick 420)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder for latest.json and history.jsonl (default: bench/results)")
    args = parser.parse_args(argv)
    timeout_given = args.timeout is not None
    args.timeout = args.timeout or (420 if args.quick else 3600)
    results_dir: Path = args.results
    results_dir.mkdir(parents=True, exist_ok=True)
    only = [name for given in args.only for name in given.split(",") if name] if args.only else None
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        print(f"no benchmark named {', '.join(unknown)}; the benchmarks are: {', '.join(names)}", file=sys.stderr)
        return 2
    scripts = discover(only, args.quick)
    if not scripts:
        print("no benchmark scripts found in bench/", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    results = [run_script(s, args.quick, script_timeout(s, args.quick, args.timeout, timeout_given), results_dir)
               for s in scripts]
    all_metrics: list[Metric] = []
    for result in results:
        for metric in as_metrics(result):
            metric.metric = f"{result['benchmark']}: {metric.metric}"
            all_metrics.append(metric)
    summary = {
        "started": started.isoformat(),
        "quick": args.quick,
        "machine": machine(),
        "benchmarks": results,
        "passed": sum(1 for m in all_metrics if m.passed is True),
        "failed": sum(1 for m in all_metrics if m.passed is False),
        "errors": [r["error"] for r in results if "error" in r],
    }
    (results_dir / "latest.json").write_text(json.dumps(summary, indent=2))
    with open(results_dir / "history.jsonl", "a") as history:
        history.write(json.dumps({
            "started": summary["started"], "quick": args.quick, "commit": summary["machine"]["git_commit"],
            "metrics": {m.metric: m.value for m in all_metrics}, "failed": summary["failed"],
            "errors": len(summary["errors"])}) + "\n")
    print("\n== all benchmarks ==")
    m = summary["machine"]
    print(f"machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}; python {m['python']}; "
          f"commit {str(m['git_commit'])[:10]}{' (dirty)' if m['git_dirty'] else ''}")
    print(format_table(all_metrics) if all_metrics else "(no figures)")
    for error in summary["errors"]:
        print(f"ERROR: {error}")
    print(f"\n{summary['passed']} targets met, {summary['failed']} missed, {len(summary['errors'])} scripts failed; "
          f"results in {results_dir / 'latest.json'}")
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
