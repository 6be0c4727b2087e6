"""What one run left in the tables: Kafka offsets per partition, and the incidents it touched.

Each read sees one committed snapshot of a table (``TableStore.dataset``): files a writer has not
committed yet, or that compaction replaced, are not there. The run's offset ranges (and its start
time) are a filter on the dataset, whose fragments carry each file's min/max Kafka partition, offset
and time: files holding only other runs' records are skipped without being opened. The partition
columns cannot prune here: event_date follows the events' own time (a replay writes old dates) and
dl_date the records' Kafka timestamps.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from incident_contracts.table_store import TableStore
from incident_contracts.tables import TS

OFFSET_COLUMNS = ["kafka_partition", "kafka_offset"]


def range_filter(topic: str, ranges: Mapping[int, tuple[int, int]], since: datetime | None = None,
                 time_column: str | None = None) -> ds.Expression | None:
    """Rows of `topic` within `ranges` {partition: [start, end)} (and stamped at or after `since`);
    None when every range is empty."""
    wanted = [(int(p), int(s), int(e)) for p, (s, e) in sorted(ranges.items()) if e > s]
    if not wanted:
        return None
    partition, offset = pc.field("kafka_partition"), pc.field("kafka_offset")
    in_ranges = reduce(operator.or_, [(partition == p) & (offset >= s) & (offset < e) for p, s, e in wanted])
    condition = (pc.field("topic") == topic) & in_ranges
    if since is not None and time_column:
        condition &= pc.field(time_column) >= pa.scalar(since, type=TS)
    return condition


class TableUnreadable(RuntimeError):
    """A file the table's snapshot holds cannot be read: it was deleted or damaged behind the table's log."""


def rows_in_ranges(store: TableStore, table: str, topic: str, ranges: Mapping[int, tuple[int, int]],
                   since: datetime | None = None, time_column: str | None = None) -> pa.Table:
    """(kafka_partition, kafka_offset) of the table's rows within the ranges, from one snapshot."""
    condition = range_filter(topic, ranges, since, time_column)
    snapshot = store.open(table)
    if condition is None or snapshot is None:
        return pa.table({"kafka_partition": pa.array([], pa.int32()), "kafka_offset": pa.array([], pa.int64())})
    try:
        return store.dataset(table, snapshot).to_table(columns=OFFSET_COLUMNS, filter=condition)
    except (OSError, pa.ArrowInvalid) as exc:
        raise TableUnreadable(
            f"{table} (version {snapshot.version()} at {store.uri(table)}) holds a file that cannot be read: {exc}. "
            "Files of a table change only through its commits: restore the file, or drop it from the table with "
            f"`DeltaTable('{store.uri(table)}').repair()` so that reconciliation names the records it held.") from exc


def offsets_in_ranges(store: TableStore, table: str, topic: str, ranges: Mapping[int, tuple[int, int]],
                      since: datetime | None = None, time_column: str | None = None) -> dict[int, np.ndarray]:
    """{partition: offsets found} for rows of `topic` within `ranges`, duplicates kept.

    `since` with `time_column` drops rows older than the run: offsets of a topic can start again at 0
    while the tables keep older rows (`make clean` deletes the broker's log but may keep `data/`; a
    topic deleted and recreated), and such rows could share a run's offsets.
    """
    rows = rows_in_ranges(store, table, topic, ranges, since, time_column)
    partitions = rows.column("kafka_partition").to_numpy().astype(np.int64, copy=False)
    offsets = rows.column("kafka_offset").to_numpy().astype(np.int64, copy=False)
    return {p: offsets[partitions == p] for p in ranges}


def processed_through(store: TableStore, tables: tuple[str, ...], topic: str,
                      ranges: Mapping[int, tuple[int, int]]) -> dict[int, int]:
    """{partition: highest offset + 1 found in the tables within the run's ranges} (the range's start
    where none is)."""
    found = {int(p): int(start) for p, (start, _) in ranges.items()}
    for table in tables:
        highest = rows_in_ranges(store, table, topic, ranges).group_by("kafka_partition").aggregate(
            [("kafka_offset", "max")])
        for partition, offset in zip(highest.column("kafka_partition").to_pylist(),
                                     highest.column("kafka_offset_max").to_pylist(), strict=True):
            found[int(partition)] = max(found[int(partition)], int(offset) + 1)
    return found


@dataclass(frozen=True)
class IncidentDigest:
    """Incidents a run opened or updated, each at its latest state."""

    by_severity: dict[str, int] = field(default_factory=dict)
    open_count: int = 0
    resolved_count: int = 0
    incidents: tuple[dict, ...] = ()  # {incident_id, severity, status, service, title}, most severe first

    @property
    def total(self) -> int:
        return len(self.incidents)

    def ids_with_severity(self, severities: tuple[str, ...]) -> list[str]:
        return [i["incident_id"] for i in self.incidents if i["severity"] in severities]


DIGEST_COLUMNS = ["incident_id", "severity", "status", "service", "title", "update_seq", "update_time"]


def incidents_updated_since(store: TableStore, since: datetime) -> IncidentDigest:
    """Incidents with an update written at or after `since` (processing time), at their latest update.

    One snapshot of incident_updates: the ids come from files whose update_time reaches `since`, then
    every update of those ids, so an incident opened by an earlier run shows at its latest state."""
    import duckdb  # imported here: the DAG files import this module's callers at every parse

    updates = store.dataset("incident_updates")
    recent = updates.to_table(columns=["incident_id"], filter=pc.field("update_time") >= pa.scalar(since, type=TS))
    ids = pc.unique(recent.column("incident_id"))
    if len(ids) == 0:
        return IncidentDigest()
    touched = updates.to_table(columns=DIGEST_COLUMNS, filter=pc.field("incident_id").isin(ids))
    sql = """
        SELECT incident_id, severity, status, service, title FROM touched
        QUALIFY row_number() OVER (PARTITION BY incident_id ORDER BY update_seq DESC, update_time DESC) = 1
        ORDER BY severity, incident_id
    """
    with duckdb.connect() as con:
        con.execute("SET threads TO 2")
        con.register("touched", touched)
        rows = con.execute(sql).fetchall()
    incidents = tuple({"incident_id": r[0], "severity": r[1], "status": r[2], "service": r[3], "title": r[4]}
                      for r in rows)
    by_severity: dict[str, int] = {}
    for incident in incidents:
        by_severity[incident["severity"]] = by_severity.get(incident["severity"], 0) + 1
    return IncidentDigest(
        by_severity=dict(sorted(by_severity.items())),
        open_count=sum(1 for i in incidents if i["status"] == "open"),
        resolved_count=sum(1 for i in incidents if i["status"] == "resolved"),
        incidents=incidents,
    )
