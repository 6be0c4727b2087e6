"""Every page through Streamlit's AppTest on fixture tables: populated, empty, uncommitted files, old layout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from streamlit.testing.v1 import AppTest

from incident_contracts import tables as contract
from incident_contracts.failures import FailureFamily
from incident_contracts.settings import get_settings
from incident_contracts.table_store import TableStore
from incident_dashboard.demo import DemoSummary
from incident_rca.service import store_for


def _plain(markdown: str) -> str:
    """Markdown source with its backslash escapes undone (untrusted text is escaped on the pages)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def _text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    parts += [str(e.value) for kind in ("info", "warning", "error", "success") for e in getattr(at, kind)]
    parts += [m.label for m in at.metric]
    return _plain("\n".join(str(p) for p in parts))


def _charts(at: AppTest) -> int:
    return len(at.get("vega_lite_chart"))


def _open(app: AppTest, page: str, **params: str) -> AppTest:
    app.run()  # the navigation registers its pages on the first run
    app.query_params.update(params)
    app.switch_page(page).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_overview_shows_incidents_charts_and_freshness(demo_env: DemoSummary, app: AppTest) -> None:
    app.run()
    assert not app.exception
    metrics = {m.label: m.value for m in app.metric}
    open_p1 = sum(1 for i in demo_env.incidents if i.resolved_at is None and i.severity == "P1")
    assert int(metrics["Open P1"]) == open_p1
    assert metrics["Events (6 h)"] == f"{demo_env.events:,}"
    assert _charts(app) >= 5  # incidents over time, severity donut, error rate, heat map, noisiest services
    text = _text(app)
    for heading in ("Incidents opened", "Open incidents by severity", "Error rate by service",
                    "Heat map: error rate per service", "Noisiest services", "Pipeline freshness"):
        assert heading in text
    assert "Newest event" in text and "ago" in text


def test_overview_time_window_changes_the_figures(demo_env: DemoSummary, app: AppTest) -> None:
    app.run()
    all_events = next(m.value for m in app.metric if m.label.startswith("Events"))
    app.button_group(key="overview_window").set_value("1 h").run()
    one_hour = next(m for m in app.metric if m.label.startswith("Events"))
    assert one_hour.label == "Events (1 h)"
    assert 0 < int(one_hour.value.replace(",", "")) < int(all_events.replace(",", ""))


def test_incidents_filters_and_deep_links(demo_env: DemoSummary, app: AppTest) -> None:
    _open(app, "views/incidents.py")
    table = app.dataframe[0].value
    assert len(table) == len(demo_env.incidents)
    assert table["link"].iloc[0].startswith("incident?id=INC-")
    assert _charts(app) == 1  # the timeline

    app.button_group(key="incidents_severity").set_value(["P1"]).run()
    assert set(app.dataframe[0].value["severity"]) == {"P1"}

    app.button_group(key="incidents_severity").set_value([]).run()
    app.text_input(key="incidents_text").input("certificate").run()
    found = {link.removeprefix("incident?id=") for link in app.dataframe[0].value["link"]}
    expected = {i.incident_id for i in demo_env.incidents if i.scenario.family == "tls_expired"}
    assert found == expected and expected  # matched in titles and signatures, linked incidents included

    app.text_input(key="incidents_text").input("no-such-thing-anywhere").run()
    assert not app.dataframe and "No incident matches" in _text(app)


def test_incidents_sort_orders(demo_env: DemoSummary, app: AppTest) -> None:
    _open(app, "views/incidents.py")
    app.selectbox(key="incidents_sort").set_value("newest").run()
    opened = app.dataframe[0].value["opened_at"].tolist()
    assert opened == sorted(opened, reverse=True)
    app.selectbox(key="incidents_sort").set_value("severity").run()
    severities = app.dataframe[0].value["severity"].tolist()
    assert severities == sorted(severities)


def test_incident_detail_by_deep_link(demo_env: DemoSummary, app: AppTest) -> None:
    plan = demo_env.incident_for("db_pool_exhaustion")
    _open(app, "views/incident.py", id=plan.incident_id)
    assert _plain(app.title[0].value) == plan.incident_id
    text = _text(app)
    for heading in ("Around the incident", "Why this severity", "Affected services and hosts", "Top signatures",
                    "Lifecycle", "Sample log lines", "Linked incidents in dependent services", "Root-cause analysis"):
        assert heading in text
    assert _charts(app) >= 3  # error rate, latency, signatures
    lifecycle = next(d.value for d in app.dataframe if "update" in d.value.columns)
    assert lifecycle["update"].iloc[0] == "opened"
    samples = app.code[0].value
    assert "[E1]" in samples and "HikariPool" in samples
    assert "Run offline analysis" in [b.label for b in app.button]  # no key configured: offline
    assert "What would be sent" in "".join(e.label for e in app.expander)


def test_incident_picker_and_unknown_id(demo_env: DemoSummary, app: AppTest) -> None:
    _open(app, "views/incident.py")
    picker = app.selectbox(key="incident_picker")
    assert len(picker.options) == len(demo_env.incidents)
    newest = app.dataframe[0].value  # the newest incidents, one click away
    assert len(newest) == min(10, len(demo_env.incidents)) and newest["link"].str.startswith("incident?id=").all()
    assert newest["opened_at"].is_monotonic_decreasing
    _open(app, "views/incident.py", id="INC-DOES-NOT-EXIST")
    assert "No incident with ID `INC-DOES-NOT-EXIST`" in _text(app)


def _neutral_title(data: Path, incident_id: str) -> str:
    """A new update of the incident whose title and severity reasons name no failure: what the page then
    says about the cause comes from the incident's log lines."""
    store = TableStore(str(data))
    updates = [r for r in store.read("incident_updates").to_pylist() if r["incident_id"] == incident_id]
    latest = max(updates, key=lambda r: r["update_seq"])
    title = f"{latest['service']}: error rate above baseline"
    row = {**latest, "update_seq": latest["update_seq"] + 1, "update_type": "updated", "title": title,
           "severity_reasons": ["error rate above baseline"]}
    store.append("incident_updates", pa.Table.from_pylist([row], schema=contract.TABLES["incident_updates"].schema))
    return title


def test_offline_analysis_from_the_page_export_and_rating(demo_env: DemoSummary, app: AppTest) -> None:
    plan = demo_env.incident_for("disk_full")
    title = _neutral_title(demo_env.data_dir, plan.incident_id)
    _open(app, "views/incident.py", id=plan.incident_id)
    cause = FailureFamily.DISK_FULL.title
    before = _text(app)
    assert title in before and plan.scenario.title not in before and cause not in before
    app.button(key="analysis_run").click().run()
    assert not app.exception
    text = _text(app)
    assert "Offline analysis" in text and "Most likely root cause" in text
    assert cause in text  # the runbook the log lines led to, by its title
    assert [b.label for b in app.get("download_button")] == ["Export post-mortem draft", "Export as Markdown"]
    assert "Run again" in [b.label for b in app.button]

    store = store_for(get_settings())
    analysis = store.for_incident(plan.incident_id)[0]
    assert analysis.runbooks[0].runbook_id == FailureFamily.DISK_FULL and analysis.result.root_cause.category == "disk"
    app.radio(key=f"rating_{analysis.analysis_id}").set_value("Not useful")
    app.text_area(key=f"comment_{analysis.analysis_id}").input("right runbook, wrong owner")
    app.button(key=f"FormSubmitter:feedback_{analysis.analysis_id}-Send rating").click().run()
    feedback = store.feedback_for(analysis.analysis_id)
    assert len(feedback) == 1 and not feedback[0].useful and feedback[0].comment == "right runbook, wrong owner"
    assert store.quality()["ratings"].sum() == 1


def test_gemini_error_shows_message_and_retry_paths(demo_env: DemoSummary, app: AppTest,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from fake_gemini import FakeGemini

    fake = FakeGemini()
    try:
        monkeypatch.setenv("GEMINI_API_KEY", "not-the-right-key")
        monkeypatch.setenv("GEMINI_BASE_URL", fake.url)
        get_settings.cache_clear()
        plan = demo_env.incident_for("db_pool_exhaustion")
        _open(app, "views/incident.py", id=plan.incident_id)
        app.button(key="analysis_run").click().run()
        assert not app.exception
        errors = [e.value for e in app.error]
        assert any("Gemini rejected the API key" in e and "GEMINI_API_KEY" in e for e in errors)
        labels = [b.label for b in app.button]
        assert "Retry" in labels and "Use the offline analysis instead" in labels
        app.button(key="analysis_fallback").click().run()
        assert "Offline analysis" in _text(app) and not app.error
        assert len(fake.requests) == 1
    finally:
        fake.close()


def test_the_analysis_just_asked_for_is_the_one_shown(demo_env: DemoSummary, app: AppTest,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from fake_gemini import VALID_KEY, FakeGemini

    fake = FakeGemini()
    try:
        monkeypatch.setenv("GEMINI_API_KEY", VALID_KEY)
        monkeypatch.setenv("GEMINI_BASE_URL", fake.url)
        get_settings.cache_clear()
        _open(app, "views/incident.py", id=demo_env.incident_for("bad_deploy").incident_id)
        app.button(key="analysis_run").click().run()
        assert not app.exception and len(fake.requests) == 1

        def shown_label() -> str:
            return next(c.value for c in app.caption if " · prompt " in c.value)

        assert shown_label().startswith("Gemini (")
        app.button(key="analysis_offline").click().run()  # asked for the offline analysis: it is shown
        assert not app.exception
        assert shown_label().startswith("Offline analysis") and any("Offline analysis" in i.value for i in app.info)
        (picker,) = [s for s in app.selectbox if s.label == "Stored analyses"]
        assert len(picker.options) == 2
        picker.select_index(1).run()  # the earlier Gemini answer is still one click away
        assert shown_label().startswith("Gemini (") and len(fake.requests) == 1
    finally:
        fake.close()


def test_pipeline_page_without_broker(demo_env: DemoSummary, app: AppTest) -> None:
    _open(app, "views/pipeline.py")
    text = _text(app)
    assert "The broker is not reachable" in text and "127.0.0.1:9" in text
    assert "Spark streaming job" in text and "Dead letters" in text
    assert _charts(app) >= 6  # four Spark charts, two dead-letter charts
    assert {b.label for b in app.get("link_button")} == {"Spark UI", "Airflow"}
    dead = next(d.value for d in app.dataframe if "reason" in d.value.columns and "detail" in d.value.columns)
    assert len(dead) > 0 and dead["raw_prefix_hex"].str.len().gt(0).all()


@pytest.mark.parametrize("page", ["views/overview.py", "views/incidents.py", "views/incident.py",
                                  "views/pipeline.py"])
def test_every_page_without_tables(empty_env: Path, app: AppTest, page: str) -> None:
    _open(app, page)
    text = _text(app)
    assert "No incidents yet" in text or "No events yet" in text or "No Spark metrics yet" in text
    assert "make up" in text or "does not exist" in text


def test_uncommitted_and_compacted_files_are_not_shown(demo_env: DemoSummary, app: AppTest) -> None:
    data = demo_env.data_dir
    store = TableStore(str(data))
    # Files a task wrote whose commit never came, a copy of a data file, and a compaction of the updates.
    extra = store.read("incident_updates").slice(0, 5)
    store.write_files("incident_updates", extra.set_column(0, "incident_id", pa.array(["INC-GHOST"] * 5)))
    store.write_files("events", store.read("events").slice(0, 1000))
    event_file = next((data / "events").rglob("part-*.parquet"))
    (event_file.parent / "part-copy.parquet").write_bytes(event_file.read_bytes())
    DeltaTable(str(data / "incident_updates")).optimize.compact()

    app.run()
    assert not app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Events (6 h)"] == f"{demo_env.events:,}"
    _open(app, "views/incidents.py")
    assert len(app.dataframe[0].value) == len(demo_env.incidents)


def test_pipeline_lists_each_tables_version_and_files(demo_env: DemoSummary, app: AppTest) -> None:
    _open(app, "views/pipeline.py")
    tables = next(d.value for d in app.dataframe if "version" in d.value.columns).set_index("table")
    for table in ("events", "incident_updates", "dead_letter", "metrics"):
        dt = DeltaTable(str(demo_env.data_dir / table))
        assert tables.loc[table, "version"] == dt.version()
        assert tables.loc[table, "files"] == len(dt.file_uris())
    assert (tables["problem"] == "").all()


@pytest.mark.parametrize("page", ["views/overview.py", "views/incidents.py", "views/pipeline.py"])
def test_a_table_in_the_old_layout_is_explained(empty_env: Path, app: AppTest, page: str) -> None:
    for table in ("incident_updates", "metrics"):
        (empty_env / table).mkdir(parents=True)
        pq.write_table(contract.TABLES[table].schema.empty_table(), empty_env / table / "part-0.parquet")
    _open(app, page)
    errors = "\n".join(e.value for e in app.error)
    assert "cannot be read" in errors and "make migrate-data" in errors and str(empty_env) in errors


@pytest.mark.integration
def test_pipeline_page_with_a_real_broker(demo_env: DemoSummary, app: AppTest, broker: str, topic: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    producer = Producer({"bootstrap.servers": broker})
    for i in range(30):
        producer.produce(topic, value=json.dumps({"n": i}).encode(), partition=i % 2)
    producer.flush(10)
    group = f"dashboard-test-{topic}"
    consumer = Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
    consumer.close()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker)
    monkeypatch.setenv("KAFKA_TOPIC_LOGS", topic)
    monkeypatch.setenv("KAFKA_CONSUMER_GROUP", group)
    get_settings.cache_clear()

    _open(app, "views/pipeline.py")
    assert not app.error
    partitions = next(d.value for d in app.dataframe if "end_offset" in d.value.columns)
    mine = partitions[partitions["topic"] == topic].set_index("partition")
    assert mine.loc[0, "end_offset"] == 15 and mine.loc[1, "end_offset"] == 15
    assert mine.loc[0, "committed"] == 5 and mine.loc[0, "lag"] == 10
    assert mine.loc[1, "lag"] == 15  # nothing committed: every retained record counts
    metrics = {m.label: m.value for m in app.metric}
    assert metrics[f"Lag of group {group}"] == "25"


def test_demo_tables_follow_the_contract(demo_env: DemoSummary) -> None:
    from incident_contracts.tables import check_schema

    for table in ("events", "incident_updates", "dead_letter", "metrics"):
        dt = DeltaTable(str(demo_env.data_dir / table))
        assert dt.file_uris(), table
        schema = dt.schema().to_arrow()
        assert check_schema(table, pa.schema(schema)) == []
        assert dt.metadata().partition_columns == list(contract.TABLES[table].partitions)
        stamps = [f for f in contract.TABLES[table].schema if pa.types.is_timestamp(f.type)]
        assert stamps and all(pa.schema(schema).field(f.name).type == pa.timestamp("us", tz="UTC") for f in stamps)
