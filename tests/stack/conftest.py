"""The cluster tier under test: every process real, on free ports, in a temporary folder.

`cluster` (module scope) starts the whole tier with `incident-stack cluster up` (what `make cluster-up`
runs) and yields a :class:`ClusterUnderTest`: the tier's settings, its process table and helpers to
kill, stop and start one process by name, run the CLI, trigger a pipeline run and check the tables.
Fault tests build on it; each test module gets its own tier.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

UP_TIMEOUT = 900  # a cold start on a busy 2-core machine: JVMs, Airflow's imports, the database migration


def cluster_env(root: Path) -> dict[str, str]:
    """Settings of a tier under `root` on free ports (no .env: only these and the defaults)."""
    from incident_stack.cluster import tier_env

    return tier_env(root)


def _child_env(env: dict[str, str]) -> dict[str, str]:
    """The test process's environment without settings or Airflow configuration of its own, plus `env`."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME", "KAFKA_", "SPARK_", "CLUSTER_",
                                 "DATA_DIR", "RUNTIME_DIR", "CHECKPOINT_DIR"))}
    return {**keep, **env}


class CliRun:
    """A CLI process running in the background; its output (stdout and stderr) collected as it comes."""

    def __init__(self, process: subprocess.Popen[str]):
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first match of `pattern` in the output, waiting for it up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output)
            if found:
                return found
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._reader.join(timeout=5)
                found = re.search(pattern, self.output)
                if found:
                    return found
                raise AssertionError(f"no {pattern!r} in the output (exit {self.process.returncode}):\n{self.output}")
            time.sleep(0.2)

    def finish(self, timeout: float) -> int:
        """Wait for the process to end (killed after `timeout`); its exit code."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        self._reader.join(timeout=10)
        return code


@dataclass
class ClusterUnderTest:
    """A running tier: `cluster` is the same handle the CLI uses (kill/start/stop/status), in this process."""

    root: Path
    env: dict[str, str]
    cluster: Any  # incident_stack.cluster.Cluster
    up_seconds: float = 0.0

    # --- the tier's settings and processes ---
    @property
    def settings(self):
        return self.cluster.settings

    @property
    def table(self):
        return self.cluster.table

    def names(self, group: str | None = None) -> list[str]:
        return self.cluster.names(group)

    def pid(self, name: str) -> int | None:
        return self.cluster.pid(name)

    def kill(self, name: str, sig: int = signal.SIGKILL):
        """kill -9 (by default) the process group of `name`, without waiting."""
        return self.cluster.kill(name, sig)

    def stop(self, name: str) -> bool:
        return self.cluster.stop(name)

    def start(self, name: str) -> str:
        """Start `name` again and wait until it answers."""
        return self.cluster.start(name)

    def healthy(self, name: str) -> bool:
        return self.cluster.healthy(name)

    def wait_until(self, condition, timeout: float, what: str) -> None:
        self.cluster.wait_until(condition, timeout, what)

    # --- the CLI (what the make targets run) ---
    def cli(self, *args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "incident_stack.cli", "cluster", *args], env=_child_env(self.env),
                              capture_output=True, text=True, timeout=timeout)

    def cli_background(self, *args: str) -> CliRun:
        """A CLI command left running (e.g. `trigger --wait` while a test injects faults)."""
        process = subprocess.Popen([sys.executable, "-m", "incident_stack.cli", "cluster", *args],
                                   env={**_child_env(self.env), "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        return CliRun(process)

    def log_tails(self, lines: int = 20) -> str:
        parts = []
        for log in sorted(self.table.log_dir.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)

    # --- the pipeline on the tier ---
    def start_run(self, conf: dict[str, Any]) -> str:
        """Trigger a pipeline run through the tier's Airflow; returns its run id at once."""
        from incident_airflow.trigger import trigger_run

        return trigger_run(self.cluster.api(), conf, out=lambda line: None)["dag_run_id"]

    def wait_for_run(self, run_id: str, timeout: float = 900) -> dict[str, Any]:
        """Wait until the run finishes (success or failed); returns the run as the API reports it."""
        from incident_airflow.trigger import wait_for_run

        return wait_for_run(self.cluster.api(), run_id, timeout, out=lambda line: None)

    def trigger(self, conf: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
        """Trigger a pipeline run and wait for it; returns the finished run."""
        return self.wait_for_run(self.start_run(conf), timeout)

    def task_states(self, run_id: str) -> dict[str, str]:
        from incident_airflow.last_run import DAG_ID

        return {t["task_id"]: t.get("state") for t in self.cluster.api().task_instances(DAG_ID, run_id)}

    def leader_of_busiest_partition(self) -> tuple[int, int]:
        """(partition holding the most records of the log topic, id of the broker leading it)."""
        from incident_contracts.kafka import offset_range

        topic = self.cluster.topic()
        sizes = {p: high - low for p, (low, high) in
                 offset_range(self.settings.kafka_bootstrap_servers, topic.name).items()}
        busiest = max(sizes, key=lambda p: (sizes[p], -p))
        return busiest, topic.partitions[busiest]["leader"]

    def broker_name(self, broker_id: int) -> str:
        return f"kafka-{broker_id}"

    def run_ranges(self, run_id: str) -> tuple[str, dict[int, tuple[int, int]]]:
        """The run's topic and offset ranges, as its produce task recorded them (offsets.json)."""
        import json

        produced = json.loads((self.run_folder(run_id) / "offsets.json").read_text())
        return produced["topic"], {int(p): (int(produced["start_offsets"].get(p, 0)), int(end))
                                   for p, end in produced["end_offsets"].items()}

    def missing_or_duplicated(self, run_id: str) -> list[str]:
        """Problems with the run's records in events and dead_letter (empty: every record exactly once)."""
        topic, ranges = self.run_ranges(run_id)
        held = self.offsets_held(topic, ranges)
        problems = []
        for partition, (start, end) in sorted(ranges.items()):
            offsets = held[partition]
            missing = sorted(set(range(start, end)) - set(offsets))
            duplicated = len(offsets) - len(set(offsets))
            if missing or duplicated:
                problems.append(f"partition {partition} ({start}..{end - 1}): {len(missing)} missing "
                                f"(first {missing[:5]}), {duplicated} duplicated")
        return problems

    def run_folder(self, run_id: str) -> Path:
        from incident_airflow.runs import run_key

        return self.settings.files_dir / "runs" / run_key(run_id)

    def offsets_held(self, topic: str, ranges: dict[int, tuple[int, int]]) -> dict[int, list[int]]:
        """{partition: every offset within `ranges` found in events or dead_letter, duplicates kept}.

        Read with the deltalake library (pipeline_checks), independently of the reconciliation code."""
        from pipeline_checks import offset_counts

        found: dict[int, list[int]] = {p: [] for p in ranges}
        for (partition, offset), count in offset_counts(self.settings.data_dir, topic).items():
            start, end = ranges.get(int(partition), (0, 0))
            if start <= offset < end:
                found[int(partition)].extend([int(offset)] * count)
        return found

    def stream_apps_since(self, moment: datetime) -> list[dict[str, Any]]:
        return self.cluster.stream_apps(moment)


def _load_cluster(env: dict[str, str]):
    """The in-process handle on the tier the CLI starts with `env` (same settings, same process table)."""
    from incident_contracts.settings import Settings
    from incident_stack.cluster import Cluster

    values = {k.lower(): v for k, v in env.items() if k not in ("ENV_FILE",)}
    base = Settings(_env_file=None, **values).resolved()  # type: ignore[call-arg]
    return Cluster(base, out=lambda line: None)


def make_root() -> Path:
    """A temporary folder the database server can reach when the tests run as root (it runs as `postgres`)."""
    root = Path(tempfile.mkdtemp(prefix="incident-cluster-"))
    root.chmod(0o711)
    return root


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterUnderTest]:
    """The whole cluster tier, started once per test module with `incident-stack cluster up`; stopped after."""
    root = make_root()
    env = cluster_env(root)
    handle = ClusterUnderTest(root, env, _load_cluster(env))
    started = time.monotonic()
    try:
        result = handle.cli("up")
        handle.up_seconds = time.monotonic() - started
        if result.returncode != 0:
            pytest.fail(f"`incident-stack cluster up` failed (exit {result.returncode}):\n{result.stdout}\n"
                        f"{result.stderr}\n{handle.log_tails()}")
        yield handle
    finally:
        handle.cli("down", timeout=300)
        handle.cluster.end_leftovers()
        shutil.rmtree(root, ignore_errors=True)
