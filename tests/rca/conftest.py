"""Fixtures of the root-cause analysis tests: the demo tables (shared with tests/dashboard), without Streamlit."""

from __future__ import annotations

from pathlib import Path

import pytest
from demo_tables import demo_tables, private_copy

from incident_dashboard.demo import DemoSummary


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    """Demo tables written once per session (copied per test by ``demo_env``)."""
    return demo_tables(tmp_path_factory)


@pytest.fixture
def demo_env(isolated_env: Path, demo_source: DemoSummary, monkeypatch: pytest.MonkeyPatch) -> DemoSummary:
    """Settings pointing at a private copy of the demo tables; Kafka at a port nobody listens on."""
    return private_copy(demo_source, isolated_env, monkeypatch)
