"""An exclusive lock on the Spark checkpoint, held while a pipeline run's streaming job runs.

Two streaming queries writing one checkpoint corrupt it. The DAG allows one active run at a time,
but a run can also meet a streaming job started by hand, or a second Airflow (tests, a second
scheduler). An OS file lock (`flock`) is released by the kernel when its holder dies, so a crash
never leaves a stale lock behind. The file records who holds it, for the error message.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".pipeline.lock"


class CheckpointBusy(RuntimeError):
    """Another process holds the checkpoint lock."""


def lock_path(checkpoint_root: Path) -> Path:
    return checkpoint_root / LOCK_NAME


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    return f"{info.get('owner', 'another process')} (pid {info.get('pid', '?')} on {info.get('host', '?')})"


@contextmanager
def checkpoint_lock(checkpoint_root: Path, owner: str, wait_seconds: float = 0.0,
                    poll_seconds: float = 1.0) -> Iterator[Path]:
    """Hold the lock for the duration of the block; wait up to `wait_seconds`, then raise CheckpointBusy."""
    checkpoint_root.mkdir(parents=True, exist_ok=True)
    path = lock_path(checkpoint_root)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CheckpointBusy(
                        f"the Spark checkpoint {checkpoint_root} is in use by {_holder(path)}; two streaming "
                        "jobs on one checkpoint would corrupt it. Wait for that job to finish (or stop it) "
                        "and run again.") from None
                time.sleep(poll_seconds)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"owner": owner, "pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
