"""Fault test: the streaming job killed with SIGKILL again and again in the middle of its micro-batches.

The real `incident-stream` process (the driver JVM in one process group, PySpark's Python worker daemon in one
of its own: it calls setpgid, so every process of the job is found and killed) reads a backlog
from the real broker with detection on, is killed at random moments while batches are in flight,
restarted on the same checkpoint each time, and finally runs to the end. Nothing may be lost or
written twice: every produced offset in `events` or `dead_letter` exactly once, and no incident update
(incident_id, update_seq) twice. Files the killed task attempts wrote stay in the tables' folders, in
no table version: readers never see them.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pipeline_checks import assert_exactly_once, assert_no_duplicate_updates
from stream_helpers import uncommitted_files

from incident_contracts.kafka import end_offsets
from incident_contracts.table_store import TableStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
KILLS = 2  # killed, restarted, killed again, restarted: then run to the end


def _env(broker: str, topic: str, base: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SPARK_", "STREAM_", "DATA_DIR"))}
    from incident_stack.broker import free_port

    env.update(ENV_FILE=str(base / "none.env"), DATA_DIR=str(base / "data"), RUNTIME_DIR=str(base / "runtime"),
               KAFKA_BOOTSTRAP_SERVERS=broker, KAFKA_TOPIC_LOGS=topic, KAFKA_CONSUMER_GROUP="",
               SPARK_MASTER="local[2]", SPARK_UI_PORT=str(free_port()), SPARK_DRIVER_MEMORY="1g",
               STREAM_TRIGGER_SECONDS="0.5", STREAM_MAX_RECORDS_PER_TRIGGER="6000", PYTHONUNBUFFERED="1")
    return env


def _generate(env: dict[str, str], topic: str) -> None:
    """A failure scenario (60,000 events, five minutes of event time), produced before the job starts."""
    command = [str(Path(sys.executable).parent / "log-generator"), "--scenario", "bad_deploy", "--rate", "200",
               "--duration", "5m", "--speedup", "max", "--seed", "5", "--topic", topic, "-q"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def _process_tree(root: int) -> list[int]:
    """`root` and every process descended from it (from /proc), whatever their process group."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _kill_job(job: subprocess.Popen) -> None:
    """SIGKILL every process of the job at once (as a container runtime or the OOM killer of its cgroup would),
    then wait until none is left: after this no process of the job writes a file."""
    tree = _process_tree(job.pid)
    groups = set()
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    for group in groups:  # whole groups: a worker the daemon forks meanwhile is in the daemon's group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    job.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in tree[1:]):
        assert time.monotonic() < deadline, f"processes of the killed job still run: {tree}"
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def _job(env: dict[str, str], log: Path, once: bool) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "incident-stream"), *(["--once"] if once else [])]
    with open(log, "ab") as out:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _batches_committed(checkpoint: Path) -> int:
    commits = checkpoint / "logs" / "commits"
    return len([p for p in commits.iterdir() if p.name.isdigit()]) if commits.is_dir() else 0


def test_the_job_killed_repeatedly_mid_batch_loses_and_duplicates_nothing(broker: str, tmp_path: Path) -> None:
    topic = f"faults.{os.getpid()}.{int(time.time())}"
    env = _env(broker, topic, tmp_path)
    _generate(env, topic)
    ends = end_offsets(broker, topic)
    produced = sum(ends.values())
    assert produced > 40_000
    checkpoint = tmp_path / "data" / "_checkpoints" / "incident_stream"
    log = tmp_path / "job.log"
    rng = random.Random(7)
    kills = 0
    last_kill = 0.0
    recoveries: list[float] = []
    while kills < KILLS:
        job = _job(env, log, once=False)
        started = time.monotonic()
        before = _batches_committed(checkpoint)
        deadline = time.monotonic() + 240
        # Wait for at least one committed batch of this attempt, then kill at a random moment of the next.
        while _batches_committed(checkpoint) <= before and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert job.poll() is None, f"the job exited on its own ({job.returncode}); see {log}:\n" + \
            log.read_text(errors="replace")[-3000:]
        assert _batches_committed(checkpoint) > before, f"no batch committed within 240 s; see {log}"
        recoveries.append(time.monotonic() - started)  # (re)start to the first batch committed
        time.sleep(rng.uniform(0.2, 1.5))
        _kill_job(job)
        last_kill = time.time()
        kills += 1
    partial = _batches_committed(checkpoint)

    final = _job(env, log, once=True)
    assert final.wait(timeout=600) == 0, log.read_text(errors="replace")[-3000:]
    assert _batches_committed(checkpoint) > partial

    # The job's log: a progress line of its own per batch; none of Spark's per-batch warnings.
    text = log.read_text(errors="replace")
    assert re.search(r" INFO incident_stream: batch \d+: [\d,]+ events, [\d,]+ dead letters, [\d,]+ incident updates "
                     r"committed in ", text), text[-3000:]
    for noise in ("No more data to read from the socket", "Current batch is falling behind",
                  "Python worker received parameters for UDF"):
        assert noise not in text, noise

    print(f"\njob killed {KILLS} times; (re)start to first committed batch: "
          + ", ".join(f"{r:.1f}s" for r in recoveries) + f"; {produced} records")
    data = tmp_path / "data"
    assert assert_exactly_once(data, topic, {p: (0, end) for p, end in ends.items()}) == produced
    updates = assert_no_duplicate_updates(data)
    assert updates > 0, "the bad_deploy scenario opened no incident"
    store = TableStore(str(data))  # what the product's readers see agrees
    assert store.read("events").num_rows + store.read("dead_letter").num_rows == produced
    # Files outside every table version are those of attempts the kills interrupted: none is newer than the
    # last kill (the final run left none), and each holds records a replay committed.
    leftovers = 0
    for table in ("events", "dead_letter", "incident_updates"):
        orphans = uncommitted_files(data / table)
        leftovers += len(orphans)
        assert all(mtime <= last_kill for mtime in orphans.values()), f"{table}: files of a live run left over"
        if table != "incident_updates" and orphans:
            key = ["kafka_partition", "kafka_offset"]
            kept = set(map(tuple, store.read(table, columns=key).to_pandas().itertuples(index=False)))
            for name in orphans:
                rows = pq.read_table(data / table / name, columns=key).to_pandas().itertuples(index=False)
                assert set(map(tuple, rows)) <= kept, f"{table}/{name} holds records no version has"
    print(f"{leftovers} files of killed attempts outside the tables' versions (vacuum removes them)")
