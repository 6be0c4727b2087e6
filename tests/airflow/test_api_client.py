"""The Airflow API client against a real HTTP server that fails the way a busy Airflow does."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from incident_airflow import api_client
from incident_airflow.api_client import AirflowApi, AirflowApiError


class FlakyAirflow:
    """Answers like Airflow's REST API; `fail` lists the statuses to answer to the next trigger requests, and
    `store_before_failing` makes a failed trigger store its run first (the answer was lost, not the run)."""

    def __init__(self) -> None:
        self.fail: list[int] = []
        self.store_before_failing = False
        self.runs: dict[str, dict] = {}
        self.trigger_requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/auth/token":
                    return self._answer(201, {"access_token": "t"})
                owner.trigger_requests += 1
                run_id = body["dag_run_id"]
                if owner.fail:
                    status = owner.fail.pop(0)
                    if owner.store_before_failing:
                        owner.runs[run_id] = {"dag_run_id": run_id, "state": "queued"}
                    return self._answer(status, {"detail": "database is locked"})
                if run_id in owner.runs:
                    return self._answer(409, {"detail": f"DAG run {run_id} already exists"})
                owner.runs[run_id] = {"dag_run_id": run_id, "state": "queued", "conf": body["conf"]}
                return self._answer(200, owner.runs[run_id])

            def do_GET(self) -> None:
                run_id = urllib.parse.unquote(self.path.rsplit("/", 1)[-1])
                if run_id in owner.runs:
                    return self._answer(200, owner.runs[run_id])
                return self._answer(404, {"detail": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def airflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[FlakyAirflow]:
    monkeypatch.setattr(api_client.time, "sleep", lambda seconds: None)  # the back-off, not the behaviour
    server = FlakyAirflow()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()


def test_a_server_error_is_retried_and_the_run_is_triggered_once(airflow: FlakyAirflow) -> None:
    airflow.fail = [500, 503]
    run = AirflowApi(airflow.url, "admin", "pw").trigger("dag", {"k": 1})
    assert airflow.trigger_requests == 3
    assert list(airflow.runs) == [run["dag_run_id"]] and run["conf"] == {"k": 1}


def test_a_trigger_whose_answer_was_lost_finds_its_run_instead_of_starting_another(airflow: FlakyAirflow) -> None:
    airflow.fail = [500]
    airflow.store_before_failing = True
    run = AirflowApi(airflow.url, "admin", "pw").trigger("dag", {})
    assert airflow.trigger_requests == 2  # the retry met 409 and read the run
    assert list(airflow.runs) == [run["dag_run_id"]]


def test_server_errors_that_last_are_reported_with_airflows_detail(airflow: FlakyAirflow) -> None:
    airflow.fail = [500] * (api_client.SERVER_ERROR_RETRIES + 1)
    with pytest.raises(AirflowApiError, match="answered 500: database is locked") as failure:
        AirflowApi(airflow.url, "admin", "pw").trigger("dag", {})
    assert failure.value.status == 500
    assert airflow.trigger_requests == api_client.SERVER_ERROR_RETRIES + 1 and airflow.runs == {}


def test_a_client_error_is_not_retried(airflow: FlakyAirflow) -> None:
    airflow.fail = [400]
    with pytest.raises(AirflowApiError, match="answered 400"):
        AirflowApi(airflow.url, "admin", "pw").trigger("dag", {})
    assert airflow.trigger_requests == 1
