"""What one run left in the Parquet tables: Kafka offsets per partition, and the incidents it touched.

Reads with DuckDB straight from the files under DATA_DIR. Only data files count: folders and files
whose name starts with `_` or `.` (Spark's `_spark_metadata`, `_temporary`, `.crc` files) are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np


def data_files(table_dir: Path) -> list[str]:
    """Parquet data files of a table folder (hive partitions included); empty when there are none."""
    if not table_dir.is_dir():
        return []
    files = []
    for path in table_dir.rglob("*.parquet"):
        parts = path.relative_to(table_dir).parts
        if any(part.startswith(("_", ".")) for part in parts):
            continue
        files.append(str(path))
    return sorted(files)


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    return con


def offsets_in_ranges(table_dir: Path, topic: str, ranges: Mapping[int, tuple[int, int]],
                      since: datetime | None = None, time_column: str | None = None) -> dict[int, np.ndarray]:
    """{partition: offsets found} for rows of `topic` within `ranges`, duplicates kept.

    `since` with `time_column` drops rows older than the run: offsets of a topic can start again at 0
    while the tables keep older rows (`make clean` deletes the broker's log but may keep `data/`; a
    topic deleted and recreated), and such rows could share a run's offsets.
    """
    result = {p: np.empty(0, dtype=np.int64) for p in ranges}
    files = data_files(table_dir)
    wanted = [(p, s, e) for p, (s, e) in ranges.items() if e > s]
    if not files or not wanted:
        return result
    bounds = " OR ".join(f"(kafka_partition = {int(p)} AND kafka_offset >= {int(s)} AND kafka_offset < {int(e)})"
                         for p, s, e in wanted)
    sql = (f"SELECT kafka_partition, kafka_offset FROM read_parquet($files, hive_partitioning = false, "
           f"union_by_name = true) WHERE topic = $topic AND ({bounds})")
    args: dict = {"files": files, "topic": topic}
    if since is not None and time_column:
        sql += f" AND {time_column} >= $since"
        args["since"] = since
    with _connect() as con:
        columns = con.execute(sql, args).fetchnumpy()
    partitions = np.asarray(columns["kafka_partition"], dtype=np.int64)
    offsets = np.asarray(columns["kafka_offset"], dtype=np.int64)
    for p in result:
        result[p] = offsets[partitions == p]
    return result


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


def incidents_updated_since(table_dir: Path, since: datetime) -> IncidentDigest:
    """Incidents with an update written at or after `since` (processing time), at their latest update."""
    files = data_files(table_dir)
    if not files:
        return IncidentDigest()
    sql = """
        WITH latest AS (
            SELECT incident_id, severity, status, service, title, update_seq,
                   row_number() OVER (PARTITION BY incident_id ORDER BY update_seq DESC, update_time DESC) AS rn
            FROM read_parquet($files, union_by_name = true)
            WHERE incident_id IN (SELECT incident_id FROM read_parquet($files, union_by_name = true)
                                  WHERE update_time >= $since)
        )
        SELECT incident_id, severity, status, service, title FROM latest WHERE rn = 1
        ORDER BY severity, incident_id
    """
    with _connect() as con:
        rows = con.execute(sql, {"files": files, "since": since}).fetchall()
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
