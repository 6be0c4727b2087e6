"""One streaming job at a time (incident_contracts.writer_lock), on folders: file locks, their holders,
a holder killed with SIGKILL releasing them, and a holder whose launcher died keeping them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from incident_contracts.table_store import TableStore
from incident_contracts.writer_lock import (
    LOCK_NAME,
    TABLES_LOCK_NAME,
    FileLock,
    Holder,
    WriterBusy,
    current_writer,
    writer_lock,
)


def test_a_holder_survives_its_json_round_trip_and_garbage_reads_as_unknown() -> None:
    me = Holder.me("run-7")
    assert me.pid == os.getpid() and me.run_id == "run-7"
    assert Holder.parse(me.to_json()) == me
    lease = Holder.parse(me.to_json(expires_at=1234.5))
    assert lease is not None and lease.expires_at == 1234.5 and lease.run_id == "run-7"
    for garbage in ("", b"", "not json", "{}", '{"run_id": "x"}', '{"run_id": "x", "pid": "abc", "host": "h", '
                    '"started_at": "t"}', "[1, 2]"):
        assert Holder.parse(garbage) is None, garbage
    assert "run run-7 (pid" in me.describe() and me.host in me.describe()


def test_a_busy_file_lock_names_the_holders_run_id_and_pid(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint" / LOCK_NAME
    first = FileLock(path, "the streaming checkpoint")
    first.acquire(Holder("run-first", 4242, "host-a", "2026-12-06T05:00:00+00:00"))
    try:
        assert json.loads(path.read_text())["run_id"] == "run-first"  # the holder is on disk for others
        with pytest.raises(WriterBusy) as refused:
            FileLock(path, "the streaming checkpoint").acquire(Holder.me("run-second"))
        message = str(refused.value)
        assert f"the streaming checkpoint {path.parent} is in use by run run-first (pid 4242 on host-a" in message
        assert "kill 4242 on host-a" in message and "run-second" not in message
        assert FileLock(path, "x").holder() == Holder("run-first", 4242, "host-a", "2026-12-06T05:00:00+00:00")
    finally:
        first.release()
    assert path.read_text() == ""  # released: no holder left behind
    assert FileLock(path, "x").holder() is None
    second = FileLock(path, "the streaming checkpoint")
    second.acquire(Holder.me("run-second"))  # free again
    second.release()


def test_current_writer_tells_who_holds_the_checkpoint_or_the_tables(tmp_path: Path) -> None:
    store = TableStore(str(tmp_path / "data"))
    checkpoint = tmp_path / "checkpoint"
    assert current_writer(checkpoint, store) is None
    with writer_lock(checkpoint, store, "run-a") as me:
        assert (checkpoint / LOCK_NAME).exists() and (tmp_path / "data" / TABLES_LOCK_NAME).exists()
        assert current_writer(checkpoint, store) == me
        # Another checkpoint on the same tables, and the same checkpoint on other tables: both held by run-a.
        assert current_writer(tmp_path / "other-checkpoint", store) == me
        assert current_writer(checkpoint, TableStore(str(tmp_path / "other-data"))) == me
        with pytest.raises(WriterBusy, match=r"^the tables in .* is in use by run run-a \(pid"), \
                writer_lock(tmp_path / "other-checkpoint", store, "run-b"):
            pass
        with pytest.raises(WriterBusy, match=r"^the streaming checkpoint .* is in use by run run-a \(pid"), \
                writer_lock(checkpoint, TableStore(str(tmp_path / "other-data")), "run-b"):
            pass
    assert current_writer(checkpoint, store) is None


def test_a_refused_job_holds_nothing_afterwards(tmp_path: Path) -> None:
    """The checkpoint lock taken before the tables' one was found busy is released again."""
    store = TableStore(str(tmp_path / "data"))
    with writer_lock(tmp_path / "a", store, "run-a"):
        with pytest.raises(WriterBusy), writer_lock(tmp_path / "b", store, "run-b"):
            pass
        assert FileLock(tmp_path / "b" / LOCK_NAME, "x").holder() is None
    with writer_lock(tmp_path / "b", store, "run-b"):
        pass


HOLDER = """
import sys, time
from pathlib import Path
from incident_contracts.table_store import TableStore
from incident_contracts.writer_lock import writer_lock

with writer_lock(Path(sys.argv[1]), TableStore(sys.argv[2]), "doomed-run"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_the_locks_of_a_job_killed_with_sigkill_are_free_at_once(tmp_path: Path) -> None:
    """The kernel releases a dead process's flock: a killed job never leaves a stale lock behind."""
    checkpoint, store = tmp_path / "checkpoint", TableStore(str(tmp_path / "data"))
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(checkpoint), store.root], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        holder = current_writer(checkpoint, store)
        assert holder is not None and (holder.run_id, holder.pid) == ("doomed-run", child.pid)
        with pytest.raises(WriterBusy, match=rf"run doomed-run \(pid {child.pid} "), \
                writer_lock(checkpoint, store, "next-run"):
            pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    started = time.monotonic()
    assert current_writer(checkpoint, store) is None  # the holder's record is still on disk, its lock is not
    with writer_lock(checkpoint, store, "next-run") as me:
        assert current_writer(checkpoint, store) == me
    assert time.monotonic() - started < 5  # taken at once, not after a lease or retry delay


LAUNCHER = """
import subprocess, sys, time
job = subprocess.Popen([sys.executable, "-c", *sys.argv[1:]], stdout=subprocess.PIPE, text=True,
                       start_new_session=True)
print(job.pid, job.stdout.readline().strip(), flush=True)
time.sleep(600)
"""


def test_a_job_whose_launcher_died_keeps_its_locks_and_the_retry_is_refused(tmp_path: Path) -> None:
    """Before, the Airflow task took the lock, not the job: a spark-submit orphaned by a killed task went on
    writing while the task's retry started a second job. The job holds the locks itself, so they outlive
    whatever launched it."""
    checkpoint, store = tmp_path / "checkpoint", TableStore(str(tmp_path / "data"))
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, HOLDER, str(checkpoint), store.root],
                                stdout=subprocess.PIPE, text=True)
    job_pid = 0
    try:
        assert launcher.stdout is not None
        pid, state = launcher.stdout.readline().split()
        job_pid = int(pid)
        assert state == "held"
        os.kill(launcher.pid, signal.SIGKILL)  # the task dies; its job goes on
        launcher.wait(timeout=10)
        os.kill(job_pid, 0)  # still running
        holder = current_writer(checkpoint, store)
        assert holder is not None and holder.pid == job_pid
        with pytest.raises(WriterBusy, match=rf"run doomed-run \(pid {job_pid} "), \
                writer_lock(checkpoint, store, "retry"):
            pass
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(timeout=10)
        if job_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(job_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while current_writer(checkpoint, store) is not None and time.monotonic() < deadline:
        time.sleep(0.05)  # the orphan is reaped by init, not by this process
    with writer_lock(checkpoint, store, "retry"):
        pass
