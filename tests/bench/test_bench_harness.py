"""`make bench QUICK=1` runs every benchmark and produces well-formed results (targets are the table's job)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(1100)
def test_quick_bench_produces_a_table_json_and_history(tmp_path: Path) -> None:
    # A history line from an earlier run, to check that one line is appended (the real history is left alone).
    history = tmp_path / "history.jsonl"
    history.write_text('{"started": "earlier"}\n')
    run = subprocess.run(["make", "--no-print-directory", "bench", "QUICK=1", f"RESULTS={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=1000)
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
    assert {"generator", "spark", "detection", "dashboard"} <= names, names
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
