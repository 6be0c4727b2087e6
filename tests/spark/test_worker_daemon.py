"""The Python workers of the job's tasks are forked from incident_stream.worker_daemon, which has imported the
job's task modules already."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from incident_stream import worker_daemon
from incident_stream.session import spark_conf


def test_the_session_names_the_preloading_daemon() -> None:
    from incident_contracts.settings import Settings

    conf = spark_conf(Settings(_env_file=None))  # type: ignore[call-arg]
    assert conf["spark.python.daemon.module"] == worker_daemon.__name__


def test_the_preloaded_modules_import_without_spark_running() -> None:
    """What the daemon imports before forking: every module must import on its own, in a fresh interpreter."""
    code = "import importlib, sys; from incident_stream.worker_daemon import PRELOADED\n" \
           "[importlib.import_module(m) for m in PRELOADED]\n" \
           "print(sorted(m for m in PRELOADED if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(sorted(worker_daemon.PRELOADED))


@pytest.mark.spark
def test_task_workers_are_forked_by_the_daemon_that_preloaded_the_job_modules(spark) -> None:
    def parent_and_modules(_rows):
        import os
        import sys

        parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")
        yield [part.decode() for part in parent if part], sorted(m for m in sys.modules if m.startswith("incident_"))

    [(parent, modules)] = spark.sparkContext.parallelize([0], 1).mapPartitions(parent_and_modules).collect()
    assert parent[1:3] == ["-m", worker_daemon.__name__], parent  # then the worker module Spark names
    # the task's own code imports nothing of the job: what it finds was imported by the daemon before the fork
    assert {"incident_stream.logs_source", "incident_stream.detection.processor"} <= set(modules)
