"""`make bench` runs benchmarks and produces well-formed results (targets are the table's job).

The harness is exercised on the two quickest benchmarks: a quick run of all of them takes several minutes,
which the figures they print are for (`make bench QUICK=1`), not the test suite. Every benchmark script is
checked to start and describe its arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.beside]

ROOT = Path(__file__).resolve().parents[2]


QUICKEST = ("parser", "airflow")


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "bench").glob("*_bench.py")))
def test_every_benchmark_script_starts_and_describes_its_arguments(script: str) -> None:
    run = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "--json" in run.stdout and "--quick" in run.stdout


@pytest.mark.timeout(600)
def test_quick_bench_produces_a_table_json_and_history(tmp_path: Path) -> None:
    # A history line from an earlier run, to check that one line is appended (the real history is left alone).
    history = tmp_path / "history.jsonl"
    history.write_text('{"started": "earlier"}\n')
    run = subprocess.run(["make", "--no-print-directory", "bench", "QUICK=1", f"ONLY={','.join(QUICKEST)}",
                          f"RESULTS={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=500)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "== all benchmarks ==" in run.stdout
    assert "metric" in run.stdout and "target" in run.stdout and "result" in run.stdout

    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest["quick"] is True
    machine = latest["machine"]
    assert machine["cores"] >= 1 and machine["memory_gib"] > 0 and machine["python"]
    assert machine["versions"]["pyspark"]
    assert latest["errors"] == []
    names = {b["benchmark"] for b in latest["benchmarks"]}
    assert names == set(QUICKEST), names
    for benchmark in latest["benchmarks"]:
        assert benchmark["exit_code"] == 0
        assert benchmark["metrics"], f"{benchmark['benchmark']} reported no figures"
        for metric in benchmark["metrics"]:
            assert isinstance(metric["value"], (int, float)), metric
            assert metric["unit"]
            assert metric["passed"] in (True, False, None)
            if metric["target"] is not None:
                assert metric["op"] in (">=", "<=")
            if metric["limit"]:
                assert metric["ratio"] == pytest.approx(metric["value"] / metric["limit"])
            if metric["runs"] > 1:
                assert metric["min"] <= metric["value"] <= metric["max"]

    lines = history.read_text().splitlines()
    assert len(lines) == 2
    last = json.loads(lines[-1])
    assert last["quick"] is True and last["metrics"]
