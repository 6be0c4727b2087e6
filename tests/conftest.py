"""Fixtures shared by every test folder: an embedded broker on a free port, isolated settings."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from incident_contracts.kafka import TopicSpec, ensure_topics, wait_for_broker
from incident_stack.broker import free_port, start_broker

ROOT = Path(__file__).resolve().parents[1]


class BrokerAddress(str):
    """A broker's bootstrap address that also knows the broker's process id (its process group's leader)."""

    pid: int


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real embedded Kafka-compatible broker for the whole test session; yields its bootstrap address (a
    BrokerAddress: `.pid` lets a test pause it briefly, and it must resume it)."""
    port = free_port()
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    process = start_broker("127.0.0.1", port, log)
    bootstrap = BrokerAddress(f"127.0.0.1:{port}")
    bootstrap.pid = process.pid
    try:
        wait_for_broker(bootstrap, timeout=30)
        yield bootstrap
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except Exception:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local S3-compatible server (moto) for the whole test session; tests take a bucket each."""
    from s3_server import start_s3_server

    server = start_s3_server(free_port(), tmp_path_factory.mktemp("s3") / "s3.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def topic(broker: str) -> str:
    """A fresh two-partition topic on the session broker."""
    name = f"test.{uuid.uuid4().hex[:10]}"
    ensure_topics(broker, [TopicSpec(name, partitions=2)])
    return name


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings read from a clean environment: no .env, data and runtime under tmp_path."""
    for key in list(os.environ):
        if key.startswith(("KAFKA_", "SPARK_", "STREAM_", "GEMINI_", "DASHBOARD_", "AIRFLOW_PORT",
                           "AIRFLOW_PARALLELISM", "SCHEMA_REGISTRY", "DATA_DIR", "RUNTIME_DIR",
                           "CHECKPOINT_DIR", "LOG_LEVEL", "ENVIRONMENT", "CLUSTER_", "S3_", "AWS_",
                           "RETENTION_DAYS_", "TABLE_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ENV_FILE", str(tmp_path / "no.env"))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RUNTIME_DIR", str(tmp_path / "runtime"))
    from incident_contracts.settings import get_settings

    get_settings.cache_clear()
    return tmp_path
