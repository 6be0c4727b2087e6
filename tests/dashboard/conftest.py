"""Fixtures of the dashboard tests: demo tables, an isolated data folder, the app under AppTest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_tables import demo_tables, private_copy
from streamlit.components.v2.component_manager import BidiComponentManager
from streamlit.testing.v1 import AppTest

from incident_contracts.settings import get_settings
from incident_dashboard.demo import DemoSummary

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


@pytest.fixture(scope="session", autouse=True)
def _skip_component_discovery() -> Iterator[None]:
    """The app uses no custom Streamlit components. AppTest scans every installed distribution for them
    (about 700 here, 3 s per AppTest instance); skip that scan."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BidiComponentManager, "discover_and_register_components", lambda self, **_: None)
        yield


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    """Demo tables written once per session (copied per test by ``demo_env``)."""
    return demo_tables(tmp_path_factory)


@pytest.fixture
def demo_env(isolated_env: Path, demo_source: DemoSummary, monkeypatch: pytest.MonkeyPatch) -> DemoSummary:
    """Settings pointing at a private copy of the demo tables; Kafka at a port nobody listens on."""
    return private_copy(demo_source, isolated_env, monkeypatch)


@pytest.fixture
def empty_env(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings pointing at a data folder without any table."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    get_settings.cache_clear()
    return isolated_env / "data"


@pytest.fixture
def app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=60)
