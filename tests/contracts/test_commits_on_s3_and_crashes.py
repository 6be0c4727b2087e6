"""Tables on object storage (a real local S3 server) and commits killed at random moments, local and S3.

The writer below follows the streaming job's protocol: write a micro-batch's files, commit them with
(application id, batch id), then record the batch as done in a checkpoint file (Spark's commit log).
It is killed with SIGKILL at random moments, restarted from its checkpoint (replaying the batch it was
in), and finally runs to the end: every row must be in the table exactly once.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from incident_contracts.table_store import TableStore
from incident_contracts.writer_lock import LeaseLock, WriterBusy, current_writer, writer_lock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROWS = 500

WRITER = """
import json, sys
from datetime import UTC, datetime
from pathlib import Path
import pyarrow as pa
from incident_contracts.table_store import TableStore

root, options, checkpoint, batches, rows = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3]), \\
    int(sys.argv[4]), int(sys.argv[5])
store = TableStore(root, options)
done = int(checkpoint.read_text()) if checkpoint.exists() else -1
now = datetime.now(UTC)
for batch in range(done + 1, batches):
    offsets = range(batch * rows, (batch + 1) * rows)
    table = pa.table({"topic": ["crash.test"] * rows, "kafka_partition": [batch % 2] * rows,
                      "kafka_offset": list(offsets), "value_size": [1] * rows, "reason": ["empty"] * rows,
                      "detected_at": [now] * rows, "dl_date": [f"2026-12-0{1 + batch % 3}"] * rows})
    for name in ("key", "raw_value", "kafka_timestamp", "detail"):
        table = table.append_column(name, pa.nulls(rows))
    store.append("dead_letter", table, app_id="crash-test", version=batch)
    tmp = checkpoint.with_suffix(".tmp")
    tmp.write_text(str(batch))
    tmp.replace(checkpoint)
    print("committed", batch, flush=True)
print("finished", flush=True)
"""


def _run_writer(store: TableStore, checkpoint: Path, batches: int, kill_after: tuple[int, float] | None) -> bool:
    """Run the writer; with kill_after (batches, seconds), SIGKILL it that long after it committed that many
    batches in this run. True when it was killed while still running."""
    command = [sys.executable, "-c", WRITER, store.root, json.dumps(dict(store.storage_options)), str(checkpoint),
               str(batches), str(ROWS)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    if kill_after is None:
        _, err = process.communicate(timeout=240)
        assert process.returncode == 0, err.decode()[-3000:]
        return False
    wait_for, delay = kill_after
    assert process.stdout is not None
    for _ in range(wait_for):
        if not process.stdout.readline():
            break
    time.sleep(delay)  # somewhere inside the next batch: writing files, committing, or recording it
    running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return running


def _crash_loop(store: TableStore, checkpoint: Path, batches: int, kills: int) -> None:
    rng = random.Random(7)
    killed = 0
    for _ in range(kills):
        killed += _run_writer(store, checkpoint, batches, kill_after=(rng.randint(1, 2), rng.uniform(0.0, 0.08)))
    assert killed >= kills - 1, "the writer finished before it could be killed"
    _run_writer(store, checkpoint, batches, kill_after=None)
    counts = _offset_counts(store)
    expected = set(range(batches * ROWS))
    assert set(counts) == expected, f"{len(expected - set(counts))} rows lost"
    twice = [o for o, n in counts.items() if n > 1]
    assert not twice, f"{len(twice)} rows committed twice, first {twice[:5]}"


def _offset_counts(store: TableStore) -> dict[int, int]:
    from collections import Counter

    from deltalake import DeltaTable

    table = DeltaTable(store.uri("dead_letter"), storage_options=dict(store.storage_options))
    return Counter(table.to_pyarrow_dataset().to_table(columns=["kafka_offset"]).column("kafka_offset").to_pylist())


def test_commits_killed_at_random_moments_keep_every_row_once_on_a_folder(tmp_path: Path) -> None:
    _crash_loop(TableStore(str(tmp_path / "data")), tmp_path / "checkpoint", batches=40, kills=6)


def test_commits_killed_at_random_moments_keep_every_row_once_on_s3(s3: Any, tmp_path: Path) -> None:
    bucket = s3.new_bucket()
    _crash_loop(TableStore(f"s3://{bucket}/lake", s3.storage_options()), tmp_path / "checkpoint", batches=12, kills=4)


def test_a_replayed_batch_is_recognised_by_the_table_on_s3(s3: Any) -> None:
    import pyarrow as pa

    store = TableStore(f"s3://{s3.new_bucket()}/tables", s3.storage_options())
    rows = pa.table({"query_name": ["ingest"] * 3, "batch_id": [0, 1, 2],
                     "timestamp": pa.array([0, 1, 2], pa.timestamp("us", tz="UTC"))})
    assert store.append("metrics", rows, app_id="app", version=4)
    assert not store.append("metrics", rows, app_id="app", version=4)
    assert not store.append("metrics", rows, app_id="app", version=3)
    assert store.read("metrics").num_rows == 3
    assert store.open("metrics").transaction_version("app") == 4


def test_the_writer_lease_refuses_a_second_job_and_names_the_first(s3: Any, tmp_path: Path) -> None:
    store = TableStore(f"s3://{s3.new_bucket()}/tables", s3.storage_options())
    with writer_lock(tmp_path / "a", store, "run-one"):
        holder = current_writer(tmp_path / "b", store)
        assert holder is not None and holder.run_id == "run-one"
        with pytest.raises(WriterBusy, match=r"run run-one \(pid \d+"), writer_lock(tmp_path / "b", store, "run-two"):
            pass
    assert current_writer(tmp_path / "b", store) is None
    with writer_lock(tmp_path / "b", store, "run-two"):  # free again once released
        pass


def test_an_expired_lease_of_a_dead_job_is_taken_over(s3: Any) -> None:
    store = TableStore(f"s3://{s3.new_bucket()}/tables", s3.storage_options())
    from incident_contracts.writer_lock import Holder

    dead = LeaseLock(store, "the tables in", ttl=1.0, renew_every=3600)
    dead.acquire(Holder.me("dead-run"))
    dead._stop.set()  # the job died: nobody renews or releases its lease
    with pytest.raises(WriterBusy, match="dead-run"):
        LeaseLock(store, "the tables in").acquire(Holder.me("too-early"))
    time.sleep(1.5)
    taker = LeaseLock(store, "the tables in")
    taker.acquire(Holder.me("next-run"))
    try:
        assert taker.holder() is not None and taker.holder().run_id == "next-run"
    finally:
        taker.release()
