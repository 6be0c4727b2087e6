"""The Pipeline page's detection-input panel: late events per service, silent environments, discovered
services with the catalog entries to add (Streamlit AppTest on the demo tables plus written rows)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import yaml
from streamlit.testing.v1 import AppTest

from incident_contracts import tables as contract
from incident_contracts.catalog import ServiceSpec, default_catalog
from incident_contracts.table_store import TableStore
from incident_dashboard.demo import DemoSummary
from incident_dashboard.pages.pipeline import catalog_snippet

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def _open_pipeline(app: AppTest) -> AppTest:
    app.run()
    app.switch_page("views/pipeline.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def _counter(name: str, where: str, amount: int, batch: int) -> dict:
    return {"query_name": f"counter:{name}", "query_id": where, "run_id": "r1", "batch_id": batch,
            "timestamp": NOW, "num_input_rows": amount}


def _updates_row(template: dict, **changes: object) -> dict:
    return {**template, **changes}


def test_late_events_silences_and_discovered_services_are_shown(demo_env: DemoSummary, app: AppTest) -> None:
    store = TableStore(str(demo_env.data_dir))
    store.append("metrics", pa.Table.from_pylist([
        _counter("late_counted", "prod/search-service", 1200, 5),
        _counter("late_counted", "prod/search-service", 455, 6),
        _counter("late_excluded", "prod/payment-service", 37, 6), _counter("environment_silent", "staging", 42, 6),
        _counter("clock_ahead", "prod/payment-service", 812, 6),
    ], schema=contract.METRICS))
    # an incident on a service the catalog does not know (null tier), its name a Markdown link attempt
    template = store.read("incident_updates").slice(0, 1).to_pylist()[0]
    odd = "ledger-[x](http://evil)"
    store.append("incident_updates", pa.Table.from_pylist(
        [_updates_row(template, incident_id="INC-DISC", service=odd, tier=None)],
        schema=contract.INCIDENT_UPDATES))

    _open_pipeline(app)
    late = next(d.value for d in app.dataframe if "late_counted" in d.value.columns).set_index("service")
    assert late.loc["search-service", "late_counted"] == 1655 and late.loc["search-service", "late_excluded"] == 0
    assert late.loc["payment-service", "late_excluded"] == 37
    assert late.loc["payment-service", "clock_ahead"] == 812 and late.loc["search-service", "clock_ahead"] == 0
    warnings = "\n".join(w.value for w in app.warning)
    assert "37 events were left out of detection" in warnings
    errors = "\n".join(e.value for e in app.error)
    assert "Environment staging fell silent" in errors and "42 s" in errors
    # the Spark charts ignore the counter rows: the batch count is that of the demo's metrics rows
    demo_batches = store.read("metrics").num_rows - 5
    assert any(f"{demo_batches:,} micro-batches recorded" in c.value for c in app.caption)

    discovered = next(d.value for d in app.dataframe if list(d.value.columns) == ["service", "events", "incidents"])
    assert discovered["service"].tolist() == [odd]
    shown = [m.value for m in app.markdown if "Discovered services" in m.value]
    assert shown and shown[0].endswith(f"`{odd}`")  # an inline code span: shown as is, never a link
    (code,) = [c.value for c in app.code if "name:" in c.value]
    entry = yaml.safe_load(code)[0]
    assert entry["name"] == odd and entry["tier"] == 2


def test_no_counters_and_only_catalog_services(demo_env: DemoSummary, app: AppTest) -> None:
    _open_pipeline(app)
    assert any("Every event reached detection in time" in c.value for c in app.caption)
    assert not [m.value for m in app.markdown if "Discovered services" in m.value]


def test_the_catalog_snippet_is_valid_catalog_yaml() -> None:
    entries = yaml.safe_load(catalog_snippet(["ledger", "odd: name"], 3))
    specs = [ServiceSpec.model_validate(e) for e in entries]
    assert [(s.name, s.tier) for s in specs] == [("ledger", 3), ("odd: name", 3)]
    assert not {s.name for s in specs} & set(default_catalog().names)
