"""Incident actions from the pages (AppTest on generated tables): the Response panel records who did what,
shows the detector's state and the human status apart, and the Incidents page filters by human status."""

from __future__ import annotations

import re

from streamlit.testing.v1 import AppTest

from incident_contracts.settings import get_settings
from incident_contracts.table_store import TableStore
from incident_dashboard.actions.log import ActionLog
from incident_dashboard.demo import DemoSummary


def _open(app: AppTest, page: str, **params: str) -> AppTest:
    app.run()
    app.query_params.update(params)
    app.switch_page(page).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def _act(app: AppTest, kind: str, **inputs: object) -> None:
    app.selectbox(key="action_kind").set_value(kind).run()
    for key, value in inputs.items():
        widget = app.number_input(key=key) if key == "action_minutes" else (
            app.text_area(key=key) if kind == "note" else app.text_input(key=key))
        widget.set_value(value)
    app.button(key="action_submit").click().run()
    assert not app.exception, [e.value for e in app.exception]


def _trail(app: AppTest):
    return next(d.value for d in app.dataframe if "who" in d.value.columns)


def _badge(app: AppTest, icon: str) -> str:
    """The label of the Response panel's badge with this icon (escapes undone)."""
    body = next(m.value for m in app.markdown if f":material/{icon}:" in m.value and "-badge[" in m.value)
    return re.sub(r"\\(.)", r"\1", body.split(":", 3)[-1].rstrip("]")).strip()


def test_actions_are_recorded_with_who_and_the_state_at_that_moment(demo_env: DemoSummary, app: AppTest) -> None:
    plan = demo_env.incident_for("db_pool_exhaustion")
    _open(app, "views/incident.py", id=plan.incident_id)
    assert "Nobody has acted on this incident yet." in [c.value for c in app.caption]

    _act(app, "acknowledge")  # no name yet: refused, nothing written
    assert any("say who you are" in e.value for e in app.error)
    log = ActionLog(TableStore.from_settings(get_settings()))
    assert log.for_incident(plan.incident_id).empty

    app.text_input(key="actor_name_input").input("ana <b>[x](http://evil)</b>").run()
    _act(app, "acknowledge")
    assert any("Recorded: acknowledge" in s.value for s in app.success)
    assert _badge(app, "person") == "acknowledged"  # the human status, next to the detector's
    assert _badge(app, "sensors") == ("resolved" if plan.resolved_at else "open")
    _act(app, "assign", action_text="bo")
    _act(app, "snooze", action_minutes=15)
    assert _badge(app, "person").startswith("snoozed until ")
    _act(app, "note", action_text="pool raised to 80")
    _act(app, "resolve")
    assert [str(o) for o in app.selectbox(key="action_kind").options] == ["Reopen", "Assign", "Add a note"]
    _act(app, "reopen")
    _open(app, "views/incidents.py")  # the name is kept for the visit, across pages
    _open(app, "views/incident.py", id=plan.incident_id)
    assert app.text_input(key="actor_name_input").value == "ana <b>[x](http://evil)</b>"

    trail = _trail(app)
    assert trail["action"].tolist() == ["acknowledge", "assign", "snooze", "note", "resolve", "reopen"]
    assert trail["status before"].tolist() == ["open", "acknowledged", "acknowledged", "snoozed", "snoozed",
                                               "resolved"]
    assert set(trail["who"]) == {"ana <b>[x](http://evil)</b>"}  # stored as typed, shown as data
    assert trail["argument"].tolist()[1:4] == ["bo", "15", "pool raised to 80"]
    stored = log.for_incident(plan.incident_id)
    assert set(stored["detector_status"]) == {"resolved" if plan.resolved_at else "open"}
    assert set(stored["actor_source"]) == {"typed"}
    assert log.state(plan.incident_id).assignee == "bo"
    # The typed name never reaches Markdown unescaped (no link, no HTML).
    assert all("](http" not in m.value and "<b>" not in m.value for m in app.markdown)


def test_a_refused_action_writes_nothing_and_says_why(demo_env: DemoSummary, app: AppTest) -> None:
    plan = demo_env.incident_for("disk_full")
    _open(app, "views/incident.py", id=plan.incident_id)
    app.text_input(key="actor_name_input").input("ana").run()
    _act(app, "note", action_text="   ")
    assert any("a note needs some text" in e.value for e in app.error)
    assert ActionLog(TableStore.from_settings(get_settings())).for_incident(plan.incident_id).empty


def test_incidents_page_filters_by_human_status(demo_env: DemoSummary, app: AppTest) -> None:
    from incident_dashboard.actions.log import Record

    log = ActionLog(TableStore.from_settings(get_settings()))
    first, second = demo_env.incidents[0].incident_id, demo_env.incidents[1].incident_id
    log.record(Record(first, "acknowledge", "ana"))
    log.record(Record(second, "resolve", "bo"))
    _open(app, "views/incidents.py")
    table = app.dataframe[0].value
    assert len(table) == len(demo_env.incidents)
    by_id = dict(zip(table["link"].str.removeprefix("incident?id="), table["response"], strict=True))
    assert by_id[first] == "acknowledged" and by_id[second] == "resolved"

    app.button_group(key="incidents_human").set_value(["acknowledged"]).run()
    assert app.dataframe[0].value["link"].tolist() == [f"incident?id={first}"]
    app.button_group(key="incidents_human").set_value(["open"]).run()
    links = set(app.dataframe[0].value["link"])
    assert len(links) == len(demo_env.incidents) - 2 and f"incident?id={first}" not in links
    app.button_group(key="incidents_human").set_value(["open", "resolved"]).run()
    assert len(app.dataframe[0].value) == len(demo_env.incidents) - 1


def test_overview_response_times_and_postmortem_export(demo_env: DemoSummary, app: AppTest) -> None:
    from incident_dashboard.actions.log import Record

    plan = demo_env.incident_for("db_pool_exhaustion")
    ActionLog(TableStore.from_settings(get_settings())).record(Record(plan.incident_id, "acknowledge", "ana"))
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    table = next(d.value for d in app.dataframe if "mtta" in d.value.columns)
    assert table["incidents"].sum() == len(demo_env.incidents)
    assert table["acknowledged"].sum() == 1
    row = table[table["acknowledged"] == 1].iloc[0]
    assert row["service"] == plan.service and row["mtta"] != "-"
    assert (table["mtta"] == "-").sum() == (table["acknowledged"] == 0).sum()

    _open(app, "views/incident.py", id=plan.incident_id)
    assert "Export post-mortem draft" in [b.label for b in app.get("download_button")]
