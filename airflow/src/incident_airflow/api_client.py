"""A small client for the Airflow REST API (v2) of the embedded Airflow: trigger runs, read their state.

Authentication: the simple auth manager hands out a JWT for a user name and password at
``POST /auth/token``; every API call then sends it as a bearer token. The standard library is
enough for the handful of JSON calls needed here.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from incident_airflow.environment import admin_password
from incident_contracts.settings import Settings

ADMIN_USER = "admin"
# A server error is retried this many times, after 1 s, 2 s, 4 s: the embedded Airflow's SQLite database answers
# "database is locked" as a 500 while the scheduler holds it, which passes within seconds.
SERVER_ERROR_RETRIES = 3
RETRIED_STATUSES = (500, 502, 503, 504)


class AirflowApiError(RuntimeError):
    """The Airflow API could not be reached or refused a request; the message says which and why."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def _detail(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")[:300]
    detail = data.get("detail", data) if isinstance(data, dict) else data
    if isinstance(detail, list):  # validation errors: [{"loc": [...], "msg": ...}]
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail
                         if isinstance(d, dict)) or str(detail)
    if isinstance(detail, dict):
        return str(detail.get("message") or detail)
    return str(detail)


@dataclass
class AirflowApi:
    base_url: str
    username: str
    password: str = field(repr=False)  # never in a repr, a log line or a traceback
    timeout: float = 30.0
    _token: str | None = field(default=None, repr=False)

    @classmethod
    def for_embedded(cls, settings: Settings) -> AirflowApi:
        """Client for the embedded Airflow: its port from settings, the generated admin password."""
        password = admin_password(settings)
        if not password:
            raise AirflowApiError(
                "no Airflow admin password found under the runtime folder: the embedded Airflow has not "
                "started yet. Start it with `make up`.")
        return cls(f"http://127.0.0.1:{settings.airflow_port}", ADMIN_USER, password)

    def _send(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        for attempt in range(SERVER_ERROR_RETRIES + 1):
            try:
                return self._send_once(method, path, body, auth)
            except AirflowApiError as exc:
                if exc.status not in RETRIED_STATUSES or attempt == SERVER_ERROR_RETRIES:
                    raise
                time.sleep(2 ** attempt)
        raise AssertionError("unreachable")

    def _send_once(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        url = self.base_url.rstrip("/") + path
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 401 and auth and self._token is not None:
                self._token = None  # expired: log in again once
                return self._send_once(method, path, body, auth)
            raise AirflowApiError(f"Airflow API {method} {path} answered {exc.code}: {_detail(exc.read())}",
                                  status=exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AirflowApiError(f"Airflow API at {self.base_url} is not reachable ({reason}). Is Airflow "
                                  "running? Start it with `make up`; `make status` shows it.") from None
        return json.loads(payload) if payload else None

    def token(self) -> str:
        if self._token is None:
            try:
                answer = self._send("POST", "/auth/token", {"username": self.username, "password": self.password},
                                    auth=False)
            except AirflowApiError as exc:
                if exc.status in (400, 401, 403):
                    raise AirflowApiError(f"Airflow refused the login of user {self.username!r} ({exc}). The "
                                          "password is generated at first start under the runtime folder; "
                                          "`make status` prints it.", status=exc.status) from None
                raise
            self._token = answer["access_token"]
        return self._token

    @staticmethod
    def _q(value: str) -> str:
        return urllib.parse.quote(value, safe="")

    def health(self) -> dict:
        return self._send("GET", "/api/v2/monitor/health", auth=False)

    def dag(self, dag_id: str) -> dict:
        return self._send("GET", f"/api/v2/dags/{self._q(dag_id)}")

    def set_paused(self, dag_id: str, paused: bool) -> dict:
        return self._send("PATCH", f"/api/v2/dags/{self._q(dag_id)}?update_mask=is_paused", {"is_paused": paused})

    def trigger(self, dag_id: str, conf: dict, note: str | None = None) -> dict:
        """Trigger a run under a run id chosen here, so that a retried request (the first one may have been
        stored before its answer failed) finds its run instead of starting a second one."""
        run_id = f"manual__{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')}_{uuid.uuid4().hex[:8]}"
        body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        if note:
            body["note"] = note
        try:
            return self._send("POST", f"/api/v2/dags/{self._q(dag_id)}/dagRuns", body)
        except AirflowApiError as exc:
            if exc.status != 409:
                raise
            return self.dag_run(dag_id, run_id)  # a retry met the run its first attempt created

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self._send("GET", f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}")

    def dag_runs(self, dag_id: str, limit: int = 1, states: list[str] | None = None) -> list[dict]:
        query = [("order_by", "-run_after"), ("limit", str(limit))]
        query += [("state", s) for s in states or []]
        path = f"/api/v2/dags/{self._q(dag_id)}/dagRuns?{urllib.parse.urlencode(query)}"
        return self._send("GET", path)["dag_runs"]

    def delete_run(self, dag_id: str, run_id: str) -> None:
        self._send("DELETE", f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}/taskInstances?limit=100"
        return self._send("GET", path)["task_instances"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> list[dict]:
        """The structured log entries of one try of a task (Airflow 3: {"event", "level", "error_detail", ...})."""
        path = (f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}/taskInstances/{self._q(task_id)}"
                f"/logs/{int(try_number)}?full_content=true")
        content = (self._send("GET", path) or {}).get("content") or []
        return [entry if isinstance(entry, dict) else {"event": str(entry)} for entry in content]

    def set_note(self, dag_id: str, run_id: str, note: str) -> dict:
        path = f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}?update_mask=note"
        return self._send("PATCH", path, {"note": note})

    def run_url(self, dag_id: str, run_id: str) -> str:
        return f"{self.base_url.rstrip('/')}/dags/{self._q(dag_id)}/runs/{self._q(run_id)}"
