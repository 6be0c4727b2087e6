"""The checkpoint lock: one holder at a time, released on exit and when its holder dies."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from incident_airflow.checkpoint_lock import CheckpointBusy, checkpoint_lock, lock_path


def test_second_holder_is_refused_with_the_first_named(tmp_path):
    with checkpoint_lock(tmp_path, "run A"), pytest.raises(CheckpointBusy, match=r"in use by run A \(pid"), \
            checkpoint_lock(tmp_path, "run B", wait_seconds=0.3, poll_seconds=0.1):
        pass
    with checkpoint_lock(tmp_path, "run B"):
        pass


def test_lock_held_by_another_process_is_released_when_it_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; "
        "from incident_airflow.checkpoint_lock import checkpoint_lock\n"
        f"with checkpoint_lock(Path({str(tmp_path)!r}), 'streaming job'):\n"
        "    print('locked', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointBusy, match="streaming job"), \
                checkpoint_lock(tmp_path, "run B", wait_seconds=0.2, poll_seconds=0.1):
            pass
    finally:
        holder.kill()
        holder.wait()
    started = time.monotonic()
    with checkpoint_lock(tmp_path, "run B", wait_seconds=5, poll_seconds=0.1):
        assert "run B" in lock_path(tmp_path).read_text()
    assert time.monotonic() - started < 5
