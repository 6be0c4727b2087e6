"""A Spark standalone cluster from the PySpark distribution: master and workers as plain processes.

The PySpark wheel carries Spark's jars and `bin/spark-class` (not `sbin/start-master.sh`), which is
enough: `spark-class org.apache.spark.deploy.master.Master` and `... worker.Worker` run in the
foreground. The master's web UI answers `/json/` (workers, applications); each worker's UI answers
`/json/` with the executors it runs and has run (application id, executor id), which is where the
executors of a finished job are still found.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incident_contracts.class_data import java_options, pyspark_folder
from incident_contracts.settings import Settings

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
DAEMON_MEMORY = "512m"  # heap of the master and worker daemons themselves (executors are separate JVMs)


class SparkUnavailable(RuntimeError):
    """Spark's distribution is missing or a daemon did not answer."""


def spark_home() -> Path:
    """The PySpark package folder, which is a Spark distribution (jars/, bin/spark-class)."""
    home = pyspark_folder()
    if home is None:
        raise SparkUnavailable("PySpark is not installed in this environment; run `make setup`")
    if not (home / "bin" / "spark-class").is_file():
        raise SparkUnavailable(f"{home} has no bin/spark-class: the installed PySpark is not a full distribution "
                               "(pyspark-client?); run `make setup`")
    return home


def master_command(host: str, port: int, ui_port: int) -> list[str]:
    return [str(spark_home() / "bin" / "spark-class"), MASTER_CLASS, "--host", host, "--port", str(port),
            "--webui-port", str(ui_port)]


def worker_command(host: str, master_url: str, ui_port: int, cores: int, memory: str, work_dir: Path) -> list[str]:
    return [str(spark_home() / "bin" / "spark-class"), WORKER_CLASS, "--host", host, "--cores", str(cores),
            "--memory", memory, "--webui-port", str(ui_port), "--work-dir", str(work_dir), master_url]


def daemon_env(host: str, settings: Settings) -> dict[str, str]:
    """Environment of a master or worker: its distribution, its address, its own small heap, and the
    class-data archive of Spark's JVMs when it is built (incident_contracts.class_data)."""
    env = {"SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": host, "SPARK_DAEMON_MEMORY": DAEMON_MEMORY}
    class_data = java_options(settings)
    if class_data:
        env["SPARK_DAEMON_JAVA_OPTS"] = class_data
    return env


def get_json(url: str, timeout: float = 3.0) -> Any:
    """The JSON a Spark UI answers at `url`, or None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def master_state(ui_url: str, timeout: float = 3.0) -> dict[str, Any] | None:
    """The master's state (`/json/`): status, workers, active and completed applications."""
    state = get_json(ui_url.rstrip("/") + "/json/", timeout)
    return state if isinstance(state, dict) else None


def alive_workers(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [w for w in (state or {}).get("workers", []) if w.get("state") == "ALIVE"]


def worker_alive(state: dict[str, Any] | None, ui_port: int) -> bool:
    """Whether the worker whose web UI is on `ui_port` is registered with the master and ALIVE."""
    return any(w.get("webuiaddress", "").rstrip("/").endswith(f":{ui_port}") for w in alive_workers(state))


def applications(state: dict[str, Any] | None, name: str | None = None) -> list[dict[str, Any]]:
    """Running and finished applications, oldest first (each with id, name, starttime, state)."""
    state = state or {}
    apps = [{**a, "state": a.get("state", "RUNNING")} for a in state.get("activeapps", [])]
    apps += state.get("completedapps", [])
    if name is not None:
        apps = [a for a in apps if a.get("name") == name]
    return sorted(apps, key=lambda a: a.get("starttime", 0))


@dataclass(frozen=True)
class ExecutorPlacement:
    """One executor of an application and the worker it ran on."""

    app_id: str
    executor_id: int
    worker_id: str
    worker_ui: str
    finished: bool


def executor_placements(state: dict[str, Any] | None, app_ids: Iterable[str] | None = None,
                        timeout: float = 3.0) -> list[ExecutorPlacement]:
    """Executors (running and finished) of `app_ids` (all when None), read from each worker's `/json/`.

    Workers that no longer answer are skipped: their executors cannot be listed.
    """
    wanted = set(app_ids) if app_ids is not None else None
    placements: list[ExecutorPlacement] = []
    seen_workers: set[str] = set()
    for worker in (state or {}).get("workers", []):
        ui = worker.get("webuiaddress", "")
        if not ui or worker.get("id") in seen_workers:
            continue
        seen_workers.add(worker.get("id"))
        detail = get_json(ui.rstrip("/") + "/json/", timeout)
        if not isinstance(detail, dict):
            continue
        for finished, key in ((False, "executors"), (True, "finishedexecutors")):
            for executor in detail.get(key, []):
                app = executor.get("appid", "")
                if wanted is None or app in wanted:
                    placements.append(ExecutorPlacement(app, int(executor.get("id", -1)), worker["id"], ui,
                                                        finished))
    return sorted(placements, key=lambda p: (p.app_id, p.executor_id))


def describe_placements(placements: list[ExecutorPlacement]) -> list[str]:
    """Lines saying, per worker, which executors of which applications it ran."""
    by_worker: dict[tuple[str, str], list[ExecutorPlacement]] = {}
    for placement in placements:
        by_worker.setdefault((placement.worker_id, placement.worker_ui), []).append(placement)
    lines = []
    for (worker, ui), runs in sorted(by_worker.items(), key=lambda item: item[0][1]):
        shown = ", ".join(f"executor {p.executor_id} of {p.app_id}" + ("" if p.finished else " (running)")
                          for p in runs)
        lines.append(f"  {worker} ({ui}): {shown}")
    return lines
