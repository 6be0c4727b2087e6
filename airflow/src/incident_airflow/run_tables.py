"""What one run left in the tables: Kafka offsets per partition, and the incidents it touched.

Each read sees one committed snapshot of a table: files a writer has not committed yet, or that
compaction replaced, are not there. Only the files that may hold the rows asked for are opened: the
snapshot's per-file min/max statistics (Kafka partition, offset, topic, time) rule the others out
(``DeltaTable.file_uris(file_pruning_predicate=...)``), then DuckDB (local files) or pyarrow (object
storage) reads those files and filters their rows with the same conditions. The partition columns
cannot prune here: event_date follows the events' own time (a replay writes old dates) and dl_date the
records' Kafka timestamps.

The files are listed from the snapshot rather than read through ``TableStore.dataset``: that dataset
attaches every column's statistics to every file, which costs seconds on a table of a few thousand
files, while reconciliation needs four columns of a few files.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from incident_contracts.table_store import TableStore
from incident_contracts.tables import TABLES

OFFSET_COLUMNS = ["kafka_partition", "kafka_offset"]
# Conditions in disjunctive normal form, as deltalake's tuple filters: OR of ANDs of (column, op, value).
Conditions = list[list[tuple[str, str, Any]]]
_OPS = {"=": operator.eq, ">=": operator.ge, "<": operator.lt, "in": lambda field, values: field.isin(list(values))}


class TableUnreadable(RuntimeError):
    """A file the table's snapshot holds cannot be read: it was deleted or damaged behind the table's log."""


def range_conditions(topic: str, ranges: Mapping[int, tuple[int, int]], since: datetime | None = None,
                     time_column: str | None = None) -> Conditions:
    """Rows of `topic` within `ranges` {partition: [start, end)}, stamped at or after `since` if given;
    empty when every range is."""
    stamped = [(time_column, ">=", since)] if since is not None and time_column else []
    return [[("topic", "=", topic), ("kafka_partition", "=", int(p)), ("kafka_offset", ">=", int(s)),
             ("kafka_offset", "<", int(e)), *stamped] for p, (s, e) in sorted(ranges.items()) if e > s]


def row_filter(conditions: Conditions) -> ds.Expression:
    """The conditions as a pyarrow expression on rows."""
    return reduce(operator.or_, [reduce(operator.and_, [_OPS[op](pc.field(column), value) for column, op, value
                                                        in group]) for group in conditions])


def sql_where(conditions: Conditions) -> tuple[str, dict[str, Any]]:
    """The conditions as a DuckDB WHERE clause with its parameters."""
    params: dict[str, Any] = {}

    def one(column: str, op: str, value: Any) -> str:
        name = f"p{len(params)}"
        params[name] = list(value) if op == "in" else value
        return f"list_contains(${name}, {column})" if op == "in" else f"{column} {op} ${name}"

    return " OR ".join("(" + " AND ".join(one(*c) for c in group) + ")" for group in conditions), params


def read_matching(store: TableStore, table: str, columns: Sequence[str], conditions: Conditions,
                  snapshot: DeltaTable | None = None) -> pa.Table:
    """`columns` of the rows of one committed snapshot of `table` (the latest, or `snapshot`) that meet
    `conditions`, opening only the files whose statistics say they may hold such rows.

    Local files are read with DuckDB (about twice as fast as pyarrow over many small files), files in
    object storage with pyarrow (DuckDB would need its httpfs extension)."""
    schema = TABLES[table].schema
    snapshot = snapshot or (store.open(table) if conditions else None)
    if snapshot is None or not conditions:
        return pa.schema([schema.field(c) for c in columns]).empty_table()
    files = snapshot.file_uris(file_pruning_predicate=conditions)
    try:
        if not files:
            return pa.schema([schema.field(c) for c in columns]).empty_table()
        if store.is_local:
            return _read_local(files, schema, columns, conditions)
        read = dict.fromkeys([*columns, *(column for group in conditions for column, _, _ in group)])
        needed = pa.schema([schema.field(c) for c in read])
        filesystem, _ = store.filesystem()
        dataset = ds.dataset([uri.split("://", 1)[1] for uri in files], schema=needed, format="parquet",
                             filesystem=filesystem)
        return dataset.to_table(columns=list(columns), filter=row_filter(conditions))
    except (OSError, pa.ArrowInvalid, duckdb.Error) as exc:
        raise TableUnreadable(
            f"{table} (version {snapshot.version()} at {store.uri(table)}) holds a file that cannot be read: {exc}. "
            "Files of a table change only through its commits: restore the file, or drop it from the table with "
            f"`DeltaTable('{store.uri(table)}').repair()` so that reconciliation names the records it held.") from exc


def _read_local(files: list[str], schema: pa.Schema, columns: Sequence[str], conditions: Conditions) -> pa.Table:
    """Fetched as numpy arrays (DuckDB's Arrow export took half as long again as the scan over offsets), then
    given the table's types (numpy has no time zones)."""
    where, params = sql_where(conditions)
    with duckdb.connect() as con:
        con.execute("SET threads TO 2")
        found = con.execute(f"SELECT {', '.join(columns)} FROM read_parquet($files, hive_partitioning = false, "
                            f"union_by_name = true) WHERE {where}", {"files": files, **params}).fetchnumpy()
    return pa.table({name: pa.array(values).cast(schema.field(name).type) for name, values in found.items()})


def rows_in_ranges(store: TableStore, table: str, topic: str, ranges: Mapping[int, tuple[int, int]],
                   since: datetime | None = None, time_column: str | None = None) -> pa.Table:
    """(kafka_partition, kafka_offset) of the table's rows within the ranges, from one snapshot."""
    return read_matching(store, table, OFFSET_COLUMNS, range_conditions(topic, ranges, since, time_column))


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
    snapshot = store.open("incident_updates")
    if snapshot is None:
        return IncidentDigest()
    recent = read_matching(store, "incident_updates", ["incident_id"], [[("update_time", ">=", since)]], snapshot)
    ids = sorted(set(recent.column("incident_id").to_pylist()))
    if not ids:
        return IncidentDigest()
    touched = read_matching(store, "incident_updates", DIGEST_COLUMNS, [[("incident_id", "in", ids)]], snapshot)
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
