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
    ({"scenario": "mixed", "rate": 5, "duration": 5, "replay_file": "/no/such.log"}, "outside the replay folder"),
    ({"scenario": "mixed", "rate": 5, "duration": 5, "speedup": 0}, "param speedup=0: must be above 0"),
    ({"scenario": "mixed", "rate": 5, "duration": 5, "speedup": "fast"}, "param speedup='fast': expected a number"),
    ({"scenario": "mixed", "rate": 5, "duration": 5, "replay_format": "xml"}, "param replay_format='xml'"),
])
def test_bad_params_are_refused_with_the_param_named(params, message):
    with pytest.raises(BadParams, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_run_request(params)


@pytest.fixture
def replay_folder(tmp_path, monkeypatch):
    """REPLAY_DIR with one log file, and a secret file beside it (outside the folder)."""
    folder = tmp_path / "replay"
    (folder / "nginx").mkdir(parents=True)
    (folder / "app.log").write_text("2026-01-01T00:00:00Z ERROR boom\n")
    (folder / "nginx" / "access.log").write_text("2026-01-01T00:00:00Z INFO ok\n")
    (tmp_path / ".env").write_text("GEMINI_API_KEY=do-not-read-me\n")
    monkeypatch.setenv("REPLAY_DIR", str(folder))
    monkeypatch.setenv("ENV_FILE", str(tmp_path / "no.env"))
    return folder


def _replay(name):
    return parse_run_request({"rate": 10, "duration": 5, "replay_file": name, "replay_format": "generic"})


def test_replay_file_relative_to_the_replay_folder(replay_folder):
    request = _replay("app.log")
    assert request.is_replay and request.replay_file == str((replay_folder / "app.log").resolve())
    assert _replay("nginx/access.log").replay_file == str((replay_folder / "nginx" / "access.log").resolve())
    assert _replay(str(replay_folder / "app.log")).replay_file == request.replay_file  # absolute, inside
    assert _replay("nginx/../app.log").replay_file == request.replay_file  # `..` that stays inside


@pytest.mark.parametrize("name", ["../.env", "nginx/../../.env", "/proc/self/environ", "/etc/passwd",
                                  "/no/such.log", "..", "../replay-other/app.log"])
def test_replay_paths_out_of_the_folder_are_refused(replay_folder, name):
    with pytest.raises(BadParams, match=r"leads outside the replay folder .*REPLAY_DIR"):
        _replay(name)


def test_a_symlink_out_of_the_folder_is_refused(replay_folder, tmp_path):
    (replay_folder / "innocent.log").symlink_to(tmp_path / ".env")
    (replay_folder / "etc").symlink_to("/etc", target_is_directory=True)
    for name in ("innocent.log", "etc/passwd", str(replay_folder / "innocent.log")):
        with pytest.raises(BadParams, match="leads outside the replay folder"):
            _replay(name)
    # A symlink that stays inside the folder is followed.
    (replay_folder / "latest.log").symlink_to(replay_folder / "app.log")
    assert _replay("latest.log").replay_file == str((replay_folder / "app.log").resolve())


def test_a_missing_file_or_folder_and_a_folder_are_refused_clearly(replay_folder, tmp_path, monkeypatch):
    with pytest.raises(BadParams, match="no such file in the replay folder"):
        _replay("missing.log")
    with pytest.raises(BadParams, match="no such file in the replay folder"):
        _replay("nginx")  # a folder, not a file
    with pytest.raises(BadParams, match="not a usable path"):
        _replay("bad\0name.log")
    monkeypatch.setenv("REPLAY_DIR", str(tmp_path / "absent"))
    with pytest.raises(BadParams, match=r"replay folder .*absent does not exist"):
        _replay("app.log")


def test_the_producer_checks_the_file_again(replay_folder, tmp_path):
    """A file validated at trigger time and swapped for a symlink out of the folder before it is opened."""
    from incident_airflow.producer import run_generator
    from incident_contracts.settings import load_settings

    request = _replay("app.log")
    (replay_folder / "app.log").unlink()
    (replay_folder / "app.log").symlink_to(tmp_path / ".env")
    with pytest.raises(BadParams, match="leads outside the replay folder"):
        run_generator(load_settings(), request, "run-1")


def test_the_trigger_form_offers_the_generators_scenarios():
    params = dag_params()
    assert params["scenario"].schema["enum"] == scenario_names()
    assert {"mixed", "none", "memory_leak"} <= set(scenario_names())
    assert params["rate"].schema["minimum"] == 1
