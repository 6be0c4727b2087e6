"""log-ingest as `make up` starts it: the stack's command and environment, a real process on the session broker.

Integration: about 5 s (the process's imports and start)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from incident_contracts.kafka import partitions_of
from incident_contracts.settings import load_settings
from incident_stack.broker import free_port
from incident_stack.services import ORDER, SERVICES

pytestmark = pytest.mark.integration

TOKEN = "stack-ingest-token-" + "k" * 12
GEMINI_KEY = "gemini-key-" + "3" * 20


def test_the_stack_starts_log_ingest_with_its_token_and_no_other_secret(
        broker: str, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    topic = f"stack.ingest.{uuid.uuid4().hex[:8]}"  # not created yet: preparing the service creates it
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker)
    monkeypatch.setenv("KAFKA_TOPIC_LOGS", topic)
    monkeypatch.setenv("KAFKA_TOPIC_PARTITIONS", "3")
    monkeypatch.setenv("INGEST_PORT", str(free_port()))
    monkeypatch.setenv("INGEST_TOKEN", TOKEN)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    settings = load_settings()
    service = SERVICES["log-ingest"]
    assert ORDER.index("broker") < ORDER.index("log-ingest") and service.requires == ("broker",)

    env = service.environment(settings)
    assert env["INGEST_TOKEN"] == TOKEN and env["GEMINI_API_KEY"] == ""
    for other in ("broker", "airflow", "dashboard"):
        assert SERVICES[other].environment(settings)["INGEST_TOKEN"] == "", other

    service.prepare(settings)  # what the supervisor runs before each start
    assert partitions_of(broker, topic) == [0, 1, 2]
    process = subprocess.Popen(service.command(settings), env=env, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not service.healthy(settings):
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "log-ingest did not become ready"
            time.sleep(0.2)
        url = service.url(settings)
        line = b'{"message": "hello from the stack", "service": "web"}'
        assert httpx.post(f"{url}/v1/json", content=line).status_code == 401
        accepted = httpx.post(f"{url}/v1/json", content=line, headers={"Authorization": f"Bearer {TOKEN}"})
        assert accepted.status_code == 200 and accepted.json()["accepted"] == 1
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    # A clean shutdown (producer flushed); uvicorn then ends by the signal it was sent.
    assert process.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in output, output
    assert TOKEN not in output
