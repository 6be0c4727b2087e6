"""Reconciliation of a run whose offset range holds transactions, against the real broker.

The tables hold what the streaming job's own reader (``kafka_read.consume_range``, read_committed)
receives for the run's range; the reconcile step must count the markers and the aborted records as
gaps (Kafka holds no committed record there) and still fail on a committed record that is missing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka_gaps import GapWriter, settle
from run_table_rows import kafka_rows

from incident_airflow.pipeline import ReconciliationFailed, check_run, reconcile_run
from incident_airflow.reconcile import reconcile
from incident_airflow.run_tables import offsets_in_ranges
from incident_contracts.kafka import end_offsets
from incident_contracts.settings import Settings
from incident_contracts.table_store import TableStore
from incident_stream.kafka_read import Range, ReadConfig, consume_range

pytestmark = pytest.mark.integration


def read_like_the_job(broker: str, topic: str, ranges: dict[int, tuple[int, int]]) -> list[tuple[int, int]]:
    config = ReadConfig(bootstrap=broker, topic=topic, poll_timeout_s=20)
    return [(p, m.offset()) for p, (start, end) in ranges.items()
            for chunk in consume_range(config, Range(p, start, end)) for m in chunk]


def runs_text(offsets: list[int]) -> str:
    """Sorted offsets the way reconciliation names them: 3, 7-8."""
    runs: list[list[int]] = []
    for o in offsets:
        if runs and o == runs[-1][1] + 1:
            runs[-1][1] = o
        else:
            runs.append([o, o])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def test_a_run_with_an_aborted_transaction_reconciles_and_a_lost_record_still_fails(
        broker: str, topic: str, tmp_path: Path) -> None:
    writer = GapWriter(broker, topic)
    writer.plain([(p, b"earlier-run") for p in (0, 1)])  # before the run: outside its range
    start = end_offsets(broker, topic)
    started_at = datetime.now(UTC)
    writer.plain([(p, b"run-a-%d" % i) for p in (0, 1) for i in range(20)])
    writer.transaction([(0, b"aborted-%d" % i) for i in range(5)], commit=False)  # 5 records + a marker
    writer.plain([(0, b"run-b-%d" % i) for i in range(10)])
    writer.transaction([(1, b"committed-%d" % i) for i in range(4)], commit=True)  # 4 records + a marker
    settle(broker, topic)
    end = end_offsets(broker, topic)
    ranges = {p: (start[p], end[p]) for p in end}
    delivered = {p: sum(1 for o in writer.committed[p] if o >= start[p]) for p in end}
    assert delivered == {0: 30, 1: 24} and end == {0: start[0] + 36, 1: start[1] + 25}

    rows = read_like_the_job(broker, topic, ranges)
    assert len(rows) == 54  # the job's reader: committed records only
    settings = Settings(_env_file=None, kafka_bootstrap_servers=broker, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    store = TableStore.from_settings(settings)
    dead = [rows.pop(3)]  # one record went to dead_letter
    store.append("events", kafka_rows("events", topic, rows))
    store.append("dead_letter", kafka_rows("dead_letter", topic, dead))
    produced: dict[str, Any] = {
        "topic": topic, "run_key": "gaps", "started_at": started_at.isoformat(),
        "start_offsets": {str(p): o for p, o in start.items()}, "end_offsets": {str(p): o for p, o in end.items()},
        "generator": {"delivered": 54, "failed": 0, "partitions": {str(p): n for p, n in delivered.items()}}}

    # Without asking Kafka, the marker and aborted offsets would look lost.
    events = offsets_in_ranges(store, "events", topic, ranges)
    dead_letters = offsets_in_ranges(store, "dead_letter", topic, ranges)
    assert reconcile(topic, ranges, events, dead_letters).missing == 7

    result = reconcile_run(settings, produced)
    assert result["ok"], result
    assert (result["expected"], result["gaps"], result["missing"], result["dead_letters"]) == (54, 7, 0, 1)
    assert {p: v["gaps"] for p, v in result["partitions"].items()} == {"0": 6, "1": 1}
    gaps = {p: [o for o in range(*ranges[p]) if o not in writer.committed[p]] for p in ranges}
    assert set(writer.aborted[0]) < set(gaps[0])  # the aborted records and the two markers
    notes = "\n".join(result["notes"])
    assert "partition 0: 6 offsets hold no committed record in Kafka" in notes
    assert f"offsets {runs_text(gaps[0])}): gaps in the log, not lost records" in notes
    assert "partition 1: 1 offset holds no committed record in Kafka" in notes
    assert json.loads((tmp_path / "data" / "runs" / "gaps" / "reconciliation.json").read_text())["gaps"] == 7

    # A committed record in neither table is still lost: Kafka holds it (its row removed by a commit).
    lost = rows.pop(10)
    store.open("events").delete(f"kafka_partition = {lost[0]} AND kafka_offset = {lost[1]}")
    failed = check_run(settings, produced)
    assert not failed.ok and (failed.missing, failed.gaps) == (1, 7)
    assert f"partition {lost[0]}: 1 of" in failed.problems[0] and f"offsets {lost[1]};" in failed.problems[0]
    with pytest.raises(ReconciliationFailed, match=f"offsets {lost[1]}; Kafka shows no gap"):
        reconcile_run(settings, produced)
