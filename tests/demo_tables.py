"""Demo tables for the dashboard and root-cause analysis tests: written once per test process, copied per test."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from incident_contracts.settings import get_settings
from incident_dashboard.demo import DemoConfig, DemoSummary, build_demo_data

DEMO_END = datetime.now(UTC).replace(second=0, microsecond=0)
_built: DemoSummary | None = None


def demo_tables(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    """The session's demo tables (the first caller writes them; tests/dashboard and tests/rca share them)."""
    global _built
    if _built is None:
        folder = tmp_path_factory.mktemp("demo") / "data"
        _built = build_demo_data(folder, DemoConfig(events=60_000, incidents=14, hours=4, end=DEMO_END,
                                                    files_per_hour=5, dead_letters=120, seed=5))
    return _built


def private_copy(source: DemoSummary, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> DemoSummary:
    """Settings pointing at a private copy of the demo tables; Kafka at a port nobody listens on."""
    data = isolated_env / "data"
    shutil.copytree(source.data_dir, data, dirs_exist_ok=True)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    get_settings.cache_clear()
    return DemoSummary(**{**source.__dict__, "data_dir": data})
