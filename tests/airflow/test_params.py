"""Run parameters: what Airflow's Params refuse at trigger time, and what the first task checks."""

from __future__ import annotations

import pytest

from incident_airflow.params import BadParams, dag_params, parse_run_request, scenario_names


def test_defaults_are_a_valid_request():
    params = {name: param.value for name, param in dag_params().items()}
    request = parse_run_request(params)
    assert request.scenario == "mixed" and not request.is_replay
    assert "mixed" in request.describe()


def test_speedup_compresses_event_time_not_the_wall_clock():
    request = parse_run_request({"scenario": "mixed", "rate": 300, "duration": 30, "speedup": 10})
    assert (request.event_rate, request.event_seconds) == (30.0, 300.0)
    assert "300s of event time" in request.describe()


def test_numbers_from_forms_and_clis_are_accepted():
    request = parse_run_request({"scenario": "memory_leak", "rate": "250", "duration": 12.0, "seed": "7"})
    assert (request.rate, request.duration, request.seed) == (250, 12, 7)


@pytest.mark.parametrize(("params", "message"), [
    ({"scenario": "nope", "rate": 5, "duration": 5}, "param scenario='nope': unknown scenario"),
    ({"scenario": "mixed", "rate": 0, "duration": 5}, "param rate=0: must be from 1 to"),
    ({"scenario": "mixed", "rate": 5, "duration": 99999}, "param duration=99999: must be from 1 to 3600"),
    ({"scenario": "mixed", "rate": "fast", "duration": 5}, "param rate='fast': expected a whole number"),
    ({"scenario": "mixed", "rate": True, "duration": 5}, "param rate=True: expected a whole number"),
    ({"scenario": "mixed", "rate": 5, "duration": 5, "seed": -1}, "param seed=-1: must be at least 0"),
    ({"scenario": "mixed", "rate": 5, "duration": 5, "replay_file": "/no/such.log"}, "no such file"),
    ({"scenario": "mixed", "rate": 5, "duration": 5, "speedup": 0}, "param speedup=0: must be above 0"),
    ({"scenario": "mixed", "rate": 5, "duration": 5, "speedup": "fast"}, "param speedup='fast': expected a number"),
    ({"scenario": "mixed", "rate": 5, "duration": 5, "replay_format": "xml"}, "param replay_format='xml'"),
])
def test_bad_params_are_refused_with_the_param_named(params, message):
    with pytest.raises(BadParams, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_run_request(params)


def test_replay_file_relative_to_the_project_root(tmp_path, monkeypatch):
    log = tmp_path / "app.log"
    log.write_text("2026-01-01T00:00:00Z ERROR boom\n")
    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))
    request = parse_run_request({"rate": 10, "duration": 5, "replay_file": "app.log", "replay_format": "generic"})
    assert request.is_replay and request.replay_file == str(log)


def test_the_trigger_form_offers_the_generators_scenarios():
    params = dag_params()
    assert params["scenario"].schema["enum"] == scenario_names()
    assert {"mixed", "none", "memory_leak"} <= set(scenario_names())
    assert params["rate"].schema["minimum"] == 1
