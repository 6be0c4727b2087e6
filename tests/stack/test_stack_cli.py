"""`incident-stack` (behind make up/down/status/logs/clean) against a real broker process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
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


FAKE_GEMINI_KEY = "fake-gemini-key-" + "k" * 20
FAKE_AWS_SECRET = "fake-aws-secret-" + "s" * 24
FAKE_PASSWORD = "fake-password-" + "p" * 12


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DATA_DIR", "RUNTIME_DIR"))}
    env.update(ENV_FILE=str(tmp_path / "none.env"), DATA_DIR=str(tmp_path / "data"),
               RUNTIME_DIR=str(tmp_path / "runtime"),
               KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", KAFKA_TOPIC_LOGS="stack.test",
               KAFKA_CONTROLLER_PORT=str(free_port()),
               AIRFLOW_PORT=str(free_port()), DASHBOARD_PORT=str(free_port()),
               # Secrets the broker has no use for: they must not reach its process or any log.
               GEMINI_API_KEY=FAKE_GEMINI_KEY, AWS_ACCESS_KEY_ID="AKIA" + "F" * 16,
               AWS_SECRET_ACCESS_KEY=FAKE_AWS_SECRET, POSTGRES_PASSWORD=FAKE_PASSWORD)
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

    logs = _run(stack_env, "logs", "broker", "-n", "100000")
    assert "Kafka Server started" in logs.stdout

    # The secrets of the environment: not in the broker's environment, its logs or the stack's output.
    environ = Path(f"/proc/{record['pid']}/environ").read_bytes()
    runtime_files = {}  # path: content; the running broker renames its own .tmp files meanwhile
    for path in Path(stack_env["RUNTIME_DIR"]).rglob("*"):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            runtime_files[path] = path.read_bytes()
    assert any(p.suffix == ".log" for p in runtime_files)
    for secret in (FAKE_GEMINI_KEY, FAKE_AWS_SECRET, FAKE_PASSWORD):
        assert secret.encode() not in environ
        assert not [p for p, content in runtime_files.items() if secret.encode() in content], secret
        assert secret not in first.stdout + first.stderr + status.stdout + logs.stdout

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
    (data / "_checkpoints" / "stream" / "offsets").mkdir(parents=True)
    kept = _run(stack_env, "clean")
    assert kept.returncode == 0 and "kept data" in kept.stdout
    assert (data / "events" / "part.parquet").exists()
    # The Kafka log went with the runtime folder, so the checkpoints that point into it went too.
    assert not (data / "_checkpoints").exists() and "removed the Spark checkpoints" in kept.stdout
    assert not Path(stack_env["RUNTIME_DIR"]).exists()
    removed = _run(stack_env, "clean", "--yes")
    assert removed.returncode == 0 and not data.exists()


def _produce(bootstrap: str, topic: str, count: int, tag: str) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for i in range(count):
        producer.produce(topic, f"{tag}-{i}".encode(), key=str(i % 7).encode())
    assert producer.flush(30) == 0


def _read_all(bootstrap: str, topic: str) -> list[str]:
    from confluent_kafka import Consumer, TopicPartition

    from incident_contracts.kafka import offset_range

    ranges = offset_range(bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in ranges.items()])
    wanted, values = sum(high - low for low, high in ranges.values()), []
    while len(values) < wanted:
        batch = consumer.consume(500, timeout=10)
        assert batch, f"read {len(values)} of {wanted} records"
        values += [m.value().decode() for m in batch if m.error() is None]
    consumer.close()
    return sorted(values)


def _commit(bootstrap: str, topic: str, group: str, offsets: dict[int, int]) -> None:
    import time

    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    settling = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                KafkaError.COORDINATOR_LOAD_IN_PROGRESS}

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    for attempt in range(30):  # the first commit creates __consumer_offsets: NOT_COORDINATOR until it has a leader
        try:
            consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
            break
        except KafkaException as exc:
            if exc.args[0].code() not in settling or attempt == 29:
                raise
            time.sleep(0.5)
    consumer.close()


def test_topics_records_and_committed_offsets_survive_restart_and_kill_9(stack_env: dict[str, str]) -> None:
    """The broker keeps its log on disk: `down`/`up` and a SIGKILL lose no topic, record or group offset."""
    from incident_contracts.kafka import committed_offsets, end_offsets

    bootstrap, topic = stack_env["KAFKA_BOOTSTRAP_SERVERS"], stack_env["KAFKA_TOPIC_LOGS"]
    assert _run(stack_env, "up", "broker").returncode == 0
    _produce(bootstrap, topic, 500, "first")
    ends = end_offsets(bootstrap, topic)
    assert sum(ends.values()) == 500
    _commit(bootstrap, topic, "survivor", {p: end // 2 for p, end in ends.items()})
    expected = sorted(f"first-{i}" for i in range(500))

    assert "broker: stopped" in _run(stack_env, "down").stdout
    again = _run(stack_env, "up", "broker")
    assert again.returncode == 0, again.stderr
    assert "exists with 2 partitions" in again.stdout
    assert _read_all(bootstrap, topic) == expected
    assert committed_offsets(bootstrap, topic, "survivor") == {p: end // 2 for p, end in ends.items()}

    _produce(bootstrap, topic, 300, "second")  # acknowledged with acks=all, then the broker dies at once
    pid = ProcessTable(Path(stack_env["RUNTIME_DIR"])).get("broker").pid
    os.killpg(pid, signal.SIGKILL)
    restarted = _run(stack_env, "up", "broker")
    assert restarted.returncode == 0, restarted.stderr
    assert "broker: started" in restarted.stdout
    assert _read_all(bootstrap, topic) == sorted(expected + [f"second-{i}" for i in range(300)])
    assert committed_offsets(bootstrap, topic, "survivor") == {p: end // 2 for p, end in ends.items()}
