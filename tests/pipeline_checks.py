"""What every fault test ends with: each produced record in `events` or `dead_letter` exactly once, and
no incident update written twice. Read with the deltalake library itself (the latest committed version
of each table), independently of the product's table store and reconciliation, so a fault in that code
cannot hide a fault in the job.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError


def _table(data_dir: Path | str, name: str, columns: list[str], storage: Mapping[str, str] | None = None) -> pa.Table:
    try:
        table = DeltaTable(f"{str(data_dir).rstrip('/')}/{name}", storage_options=dict(storage or {}))
    except TableNotFoundError:
        return pa.table({c: pa.array([], type=pa.int64()) for c in columns})
    return table.to_pyarrow_dataset().to_table(columns=columns)


def offset_counts(data_dir: Path | str, topic: str, storage: Mapping[str, str] | None = None) -> Counter:
    """{(partition, offset): how many rows of events and dead_letter hold it} for one topic."""
    counts: Counter = Counter()
    for table in ("events", "dead_letter"):
        rows = _table(data_dir, table, ["topic", "kafka_partition", "kafka_offset"], storage)
        if rows.num_rows == 0:
            continue
        rows = rows.filter(pa.compute.equal(rows.column("topic"), topic))
        counts.update(zip(rows.column("kafka_partition").to_pylist(), rows.column("kafka_offset").to_pylist(),
                          strict=True))
    return counts


def assert_exactly_once(data_dir: Path | str, topic: str, ranges: Mapping[int, tuple[int, int]],
                        gaps: set[tuple[int, int]] = frozenset(), storage: Mapping[str, str] | None = None) -> int:
    """Every offset of `ranges` ({partition: (start, end)}), except known gaps, is in the tables exactly once."""
    counts = offset_counts(data_dir, topic, storage)
    expected = {(p, o) for p, (start, end) in ranges.items() for o in range(start, end)} - set(gaps)
    missing = sorted(expected - set(counts))
    duplicated = sorted(k for k, n in counts.items() if n > 1 and k in expected)
    assert not missing, f"{len(missing)} records lost, first {missing[:5]}"
    assert not duplicated, f"{len(duplicated)} records written more than once, first {duplicated[:5]}"
    return len(expected)


def assert_no_duplicate_updates(data_dir: Path | str, storage: Mapping[str, str] | None = None) -> int:
    """No (incident_id, update_seq) twice in incident_updates; returns how many updates there are."""
    rows = _table(data_dir, "incident_updates", ["incident_id", "update_seq"], storage)
    if rows.num_rows == 0:
        return 0
    keys = Counter(zip(rows.column("incident_id").to_pylist(), rows.column("update_seq").to_pylist(), strict=True))
    twice = sorted(k for k, n in keys.items() if n > 1)
    assert not twice, f"{len(twice)} incident updates written more than once, first {twice[:5]}"
    return rows.num_rows
