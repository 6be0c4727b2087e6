"""`incident-stack` (behind make up/down/status/logs/clean) against a real broker process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from incident_stack.broker import free_port
from incident_stack.processes import ProcessTable

pytestmark = pytest.mark.integration


def _run(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "incident_stack.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120, input=stdin)


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DATA_DIR", "RUNTIME_DIR"))}
    env.update(ENV_FILE=str(tmp_path / "none.env"), DATA_DIR=str(tmp_path / "data"),
               RUNTIME_DIR=str(tmp_path / "runtime"),
               KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", KAFKA_TOPIC_LOGS="stack.test",
               AIRFLOW_PORT=str(free_port()), DASHBOARD_PORT=str(free_port()))
    yield env
    _run(env, "down")


def test_up_is_idempotent_status_reports_and_down_stops_everything(stack_env: dict[str, str]) -> None:
    first = _run(stack_env, "up", "broker")
    assert first.returncode == 0, first.stderr
    assert "broker: started" in first.stdout and "topic stack.test: created" in first.stdout
    record = json.loads((Path(stack_env["RUNTIME_DIR"]) / "pids" / "broker.json").read_text())

    second = _run(stack_env, "up", "broker")
    assert second.returncode == 0, second.stderr
    assert f"already running (pid {record['pid']})" in second.stdout
    assert "exists with 2 partitions" in second.stdout

    status = _run(stack_env, "status")
    broker_line = next(line for line in status.stdout.splitlines() if line.startswith("broker"))
    assert f"pid {record['pid']}" in broker_line and " yes " in broker_line
    assert stack_env["KAFKA_BOOTSTRAP_SERVERS"] in broker_line

    trip = _run(stack_env, "roundtrip")
    assert trip.returncode == 0, trip.stderr
    assert "1000 Avro events produced, consumed and decoded intact" in trip.stdout

    logs = _run(stack_env, "logs", "broker", "-n", "5")
    assert "tansu" in logs.stdout or "listening" in logs.stdout

    down = _run(stack_env, "down")
    assert "broker: stopped" in down.stdout
    assert not Path(f"/proc/{record['pid']}").exists() or "Z" in Path(f"/proc/{record['pid']}/stat").read_text()
    assert ProcessTable(Path(stack_env["RUNTIME_DIR"])).names() == []
    status = _run(stack_env, "status")
    assert "not running" in next(line for line in status.stdout.splitlines() if line.startswith("broker"))


def test_port_in_use_is_named(stack_env: dict[str, str]) -> None:
    port = int(stack_env["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1])
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        result = _run(stack_env, "up", "broker")
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and "already in use" in result.stderr


def test_stale_pid_file_is_not_trusted(stack_env: dict[str, str], tmp_path: Path) -> None:
    table = ProcessTable(Path(stack_env["RUNTIME_DIR"]))
    (table.pid_dir / "broker.json").write_text(json.dumps(
        {"name": "broker", "pid": os.getpid(), "start_ticks": 1, "command": ["x"], "log_file": "x"}))
    assert table.get("broker") is None  # our own pid, but not the process that was recorded
    assert not (table.pid_dir / "broker.json").exists()


def test_bad_setting_fails_at_start_naming_the_variable(stack_env: dict[str, str]) -> None:
    result = _run({**stack_env, "KAFKA_TOPIC_PARTITIONS": "zero"}, "up", "broker")
    assert result.returncode == 2
    assert "KAFKA_TOPIC_PARTITIONS=" in result.stderr


def test_clean_keeps_data_unless_confirmed(stack_env: dict[str, str]) -> None:
    data = Path(stack_env["DATA_DIR"])
    (data / "events").mkdir(parents=True)
    (data / "events" / "part.parquet").write_bytes(b"x")
    kept = _run(stack_env, "clean")
    assert kept.returncode == 0 and "kept data" in kept.stdout
    assert (data / "events" / "part.parquet").exists()
    assert not Path(stack_env["RUNTIME_DIR"]).exists()
    removed = _run(stack_env, "clean", "--yes")
    assert removed.returncode == 0 and not data.exists()
