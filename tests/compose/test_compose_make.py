"""The Makefile's compose targets (compose.mk): present, documented, and running the right commands."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from compose_helpers import ROOT

TARGETS = ("compose-up", "compose-down", "compose-clean", "compose-logs", "compose-trigger-dag", "compose-config")


def _make(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd)


def test_the_makefile_includes_the_compose_targets() -> None:
    assert re.search(r"^-?include compose\.mk$", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    text = (ROOT / "compose.mk").read_text()
    for target in TARGETS:
        assert re.search(rf"^{target}:[^\n]*## \S", text, flags=re.MULTILINE), f"{target} has no ## help text"


def test_make_help_lists_them() -> None:
    result = _make("help")
    assert result.returncode == 0, result.stderr
    for target in TARGETS:
        assert target in result.stdout


@pytest.mark.parametrize(("target", "expected"), [
    ("compose-up", "docker-compose up --build -d --scale spark-worker=1"),
    ("compose-down", "docker-compose --profile generator down --remove-orphans"),
    ("compose-logs", "docker-compose logs -f --tail=200"),
])
def test_targets_run_the_compose_commands(target: str, expected: str) -> None:
    result = _make("-n", target, "COMPOSE=docker-compose")
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_workers_scale_from_the_command_line() -> None:
    result = _make("-n", "compose-up", "COMPOSE=docker-compose", "SPARK_WORKERS=3")
    assert "--scale spark-worker=3" in result.stdout


def test_trigger_passes_the_run_parameters_as_dag_conf() -> None:
    result = _make("-n", "compose-trigger-dag", "COMPOSE=docker-compose", "SCENARIO=database", "RATE=500", "SEED=7")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "dags trigger" in line)
    assert "exec -T airflow-scheduler airflow dags trigger incident_processing_pipeline" in line
    conf = json.loads(line.split("--conf ", 1)[1].strip("'"))
    assert conf == {"scenario": "database", "rate": 500, "seed": 7}
    default = _make("-n", "compose-trigger-dag", "COMPOSE=docker-compose")
    assert "--conf '{}'" in default.stdout


def test_clean_asks_before_deleting_volumes(tmp_path: Path) -> None:
    result = subprocess.run(["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "compose-clean",
                             "COMPOSE=echo would-run"], input="n\n", capture_output=True, text=True, timeout=60,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "kept everything" in result.stdout and "would-run" not in result.stdout
    confirmed = _make("compose-clean", "COMPOSE=echo would-run", "YES=1")
    assert "would-run --profile generator down --volumes --remove-orphans" in confirmed.stdout


def test_compose_config_target_validates_offline(tmp_path: Path) -> None:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed: run `make test-tools` (apt-get install docker-compose)",
                    pytrace=False)
    # A copy of the files the target needs, so the checkout's own .env is never touched.
    for name in ("docker-compose.yml", ".env.example", "compose.mk", "Makefile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "compose", tmp_path / "compose")
    result = subprocess.run(["make", "--no-print-directory", "compose-config", "COMPOSE=docker-compose"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "docker-compose.yml is valid" in result.stdout
    assert (tmp_path / ".env").is_file()
