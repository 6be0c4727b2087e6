"""DATA_DIR=s3://...: the dashboard reads the Delta Lake tables from an S3 endpoint (a local S3 server), with
no local folder and without DuckDB's S3 extension."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from incident_contracts.settings import get_settings
from incident_contracts.table_store import TableStore
from incident_dashboard.demo import DemoConfig, DemoSummary, build_demo_data
from incident_rca.data import IncidentFilter, get_repository


@pytest.fixture
def s3_demo(isolated_env: Path, s3: Any, monkeypatch: pytest.MonkeyPatch) -> DemoSummary:
    """Demo tables in a bucket of the tests' S3 server, and settings pointing at them."""
    for key, value in s3.env(f"s3://{s3.new_bucket()}/data").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    get_settings.cache_clear()
    store = TableStore.from_settings(get_settings())
    return build_demo_data(store, DemoConfig(events=12_000, incidents=6, hours=2, files_per_hour=3,
                                             dead_letters=30, seed=3))


def test_repository_reads_tables_in_object_storage(s3_demo: DemoSummary) -> None:
    repo = get_repository()
    assert repo.location.startswith("s3://") and not Path("s3:").exists()
    assert repo.incidents(IncidentFilter()).total == len(s3_demo.incidents)
    assert repo.event_totals()["events"] == s3_demo.events
    assert repo.dead_letter_summary()["records"].sum() == s3_demo.dead_letters
    status = repo.status("events")
    assert status.exists and status.files == s3_demo.event_files and status.location.endswith("/data/events")

    plan = s3_demo.incidents[0]
    incident = repo.incident(plan.incident_id)
    window = repo.incident_window([incident["service"]], incident["opened_at"] - timedelta(minutes=10),
                                  incident["last_seen"])
    assert window["events"].sum() > 0

    store = TableStore.from_settings(get_settings())  # a new commit is picked up on the next refresh
    store.append("incident_updates", store.read("incident_updates").slice(0, 1))
    repo.expire()
    assert repo.status("incident_updates").version == store.open("incident_updates").version()


def test_pages_render_from_object_storage(s3_demo: DemoSummary) -> None:
    app = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py"), default_timeout=60)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Events (6 h)"] == f"{s3_demo.events:,}"
    app.switch_page("views/incidents.py").run()
    assert not app.exception and len(app.dataframe[0].value) == len(s3_demo.incidents)
