"""The data-access layer over Delta Lake tables: committed snapshots only, incremental mirrors, compaction,
current state, partition pruning, tables that are missing or in the old layout."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from incident_contracts import tables as contract
from incident_contracts.table_store import TableStore
from incident_rca.data import IncidentFilter, Repository, mirror
from incident_rca.data.files import SnapshotFile, prune_by_time, snapshot_files
from incident_rca.data.repository import SORTS
from incident_rca.data.ttl import TTLCache

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _update(incident_id: str, seq: int, **overrides: object) -> dict:
    row = {
        "incident_id": incident_id, "update_seq": seq, "update_type": "opened" if seq == 1 else "updated",
        "status": "open", "update_time": T0 + timedelta(minutes=seq), "service": "order-service",
        "environment": "prod", "tier": "1", "owner": "team-commerce", "severity": "P3",
        "severity_reasons": ["error rate"], "trigger": "error_rate", "title": f"{incident_id} title",
        "opened_at": T0, "first_seen": T0, "last_seen": T0 + timedelta(minutes=seq), "resolved_at": None,
        "event_count": 100 * seq, "error_count": 10 * seq, "error_rate": 0.1, "baseline_error_rate": 0.01,
        "latency_p95_ms": 120.0, "baseline_latency_p95_ms": 80.0, "anomaly_score": 3.0,
        "top_signatures": [{"signature": "HikariPool-<num> - Connection is not available", "signature_id": "abc",
                            "count": 5, "sample": "HikariPool-1 - Connection is not available"}],
        "sample_messages": ["x"], "affected_hosts": ["orders-1"], "origin_service": None,
        "origin_incident_id": None, "linked_incident_ids": [],
    }
    row.update(overrides)
    return row


def _event(i: int, when: datetime, **overrides: object) -> dict:
    row = {
        "event_id": f"e{i}", "event_time": when, "ingest_time": when, "service": "api-gateway",
        "environment": "prod", "host": "gw-1", "level": "INFO", "is_error": False, "message": "m",
        "signature": "s", "signature_id": "s0", "latency_ms": 10.0, "http_status": 200, "topic": "logs.events",
        "kafka_partition": 0, "kafka_offset": i, "event_date": f"{when:%Y-%m-%d}", "event_hour": when.hour,
    }
    row.update(overrides)
    return row


OpenRepo = Callable[[Path], Repository]


class ObjectStorageReads(TableStore):
    """A folder's tables read the way tables in object storage are (files through pyarrow, not DuckDB's own
    Parquet reader): the same pyarrow file system class as S3 without being the local one."""

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        return pafs.SubTreeFileSystem("/", pafs.LocalFileSystem()), self.root


@pytest.fixture(params=["duckdb", "pyarrow"])
def open_repo(request: pytest.FixtureRequest) -> OpenRepo:
    """Repositories reading files with DuckDB's Parquet reader (local tables) or through pyarrow (S3)."""
    store = TableStore if request.param == "duckdb" else ObjectStorageReads
    return lambda root: Repository(store(str(root.resolve())), cache_ttl=0)


def _rows(table: str, rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=contract.TABLES[table].schema)


def _append(root: Path, table: str, rows: list[dict]) -> None:
    TableStore(str(root)).append(table, _rows(table, rows))


def test_a_file_written_into_the_folder_but_not_committed_is_not_read(tmp_path: Path, open_repo: OpenRepo) -> None:
    store = TableStore(str(tmp_path))
    store.append("incident_updates", _rows("incident_updates", [_update("INC-1", 1)]))
    repo = open_repo(tmp_path)
    assert repo.incidents(IncidentFilter()).total == 1

    # A task wrote its file but its commit has not happened (or never will): in the folder, not in a version.
    store.write_files("incident_updates", _rows("incident_updates", [_update("INC-2", 1)]))
    pq.write_table(_rows("incident_updates", [_update("INC-3", 1)]), tmp_path / "incident_updates" / "stray.parquet")
    assert repo.incidents(IncidentFilter()).total == 1
    status = repo.status("incident_updates")
    assert status.files == 1 and status.version == 1 and not status.unreadable

    store.append("incident_updates", _rows("incident_updates", [_update("INC-4", 1)]))  # a commit
    assert sorted(repo.incidents(IncidentFilter()).rows["incident_id"]) == ["INC-1", "INC-4"]
    assert repo.status("incident_updates").version == 2


def test_new_versions_load_only_their_files(tmp_path: Path, open_repo: OpenRepo) -> None:
    _append(tmp_path, "incident_updates", [_update("INC-1", 1)])
    repo = open_repo(tmp_path)
    assert repo.incidents(IncidentFilter()).total == 1
    first = {f.key: f for f in repo.updates.files()}
    _append(tmp_path, "incident_updates", [_update("INC-1", 2, severity="P1"), _update("INC-2", 1)])
    assert repo.incident("INC-1")["severity"] == "P1" and repo.incidents(IncidentFilter()).total == 2
    files = {f.key: f for f in repo.updates.files()}
    assert len(files) == 2 and all(files[key] is first[key] for key in first)  # the first file was not re-read
    per_file = dict(repo.db.rows("SELECT _file, count(*) FROM incident_updates GROUP BY _file"))
    assert sorted(per_file.values()) == [1, 2] and set(per_file) == set(files)


def test_current_state_is_the_highest_update_seq(tmp_path: Path, open_repo: OpenRepo) -> None:
    # committed out of order, in separate small files, as micro-batches would
    _append(tmp_path, "incident_updates", [_update("INC-1", 3, severity="P1", status="resolved", resolved_at=T0)])
    _append(tmp_path, "incident_updates", [_update("INC-1", 1), _update("INC-1", 2, severity="P2"),
                                           _update("INC-2", 1)])
    repo = open_repo(tmp_path)
    incident = repo.incident("INC-1")
    assert incident["update_seq"] == 3 and incident["severity"] == "P1" and incident["status"] == "resolved"
    assert repo.incident_history("INC-1")["update_seq"].tolist() == [1, 2, 3]
    page = repo.incidents(IncidentFilter())
    assert page.total == 2 and page.rows["incident_id"].tolist() == ["INC-1", "INC-2"]  # P1 before P3
    assert repo.open_by_severity().set_index("severity")["incidents"].to_dict() == {"P1": 0, "P2": 0, "P3": 1,
                                                                                    "P4": 0}


def test_filters_text_and_limits(tmp_path: Path, open_repo: OpenRepo) -> None:
    rows = [_update(f"INC-{i}", 1, service="auth-service" if i % 2 else "order-service",
                    severity="P1" if i < 3 else "P4", opened_at=T0 + timedelta(hours=i),
                    last_seen=T0 + timedelta(hours=i, minutes=10), title=f"incident {i} expired certificate"
                    if i == 5 else f"incident {i}") for i in range(10)]
    _append(tmp_path, "incident_updates", rows)
    repo = open_repo(tmp_path)
    assert repo.incidents(IncidentFilter(services=("auth-service",))).total == 5
    assert repo.incidents(IncidentFilter(severities=("P1",))).total == 3
    assert repo.incidents(IncidentFilter(text="EXPIRED certificate")).rows["incident_id"].tolist() == ["INC-5"]
    window = IncidentFilter(start=T0 + timedelta(hours=2, minutes=30), end=T0 + timedelta(hours=4, minutes=5))
    assert sorted(repo.incidents(window).rows["incident_id"]) == ["INC-3", "INC-4"]
    limited = repo.incidents(IncidentFilter(limit=4, sort="newest"))
    assert limited.total == 10 and limited.rows["incident_id"].tolist() == ["INC-9", "INC-8", "INC-7", "INC-6"]


def test_missing_tables_read_as_empty_with_the_contract_columns(tmp_path: Path, open_repo: OpenRepo) -> None:
    repo = open_repo(tmp_path / "nothing-here")
    status = repo.status("incident_updates")
    assert not status.exists and status.version is None and status.error is None
    page = repo.incidents(IncidentFilter())
    assert page.total == 0 and "severity" in page.rows.columns
    assert repo.traffic(T0, T0 + timedelta(hours=1), "10 minutes").empty
    assert repo.metrics_series().empty and repo.dead_letter_summary().empty
    assert repo.freshness().latest_event_time is None
    assert repo.incident_window(["api-gateway"], T0, T0 + timedelta(hours=1)).empty

    _append(tmp_path / "nothing-here", "incident_updates", [_update("INC-1", 1)])  # the pipeline starts
    assert repo.incidents(IncidentFilter()).total == 1 and repo.status("incident_updates").exists


def test_a_table_in_the_old_layout_is_named_not_read(tmp_path: Path, open_repo: OpenRepo) -> None:
    folder = tmp_path / "incident_updates"
    folder.mkdir()
    pq.write_table(_rows("incident_updates", [_update("INC-1", 1)]), folder / "part-0.parquet")
    repo = open_repo(tmp_path)
    assert repo.incidents(IncidentFilter()).total == 0
    status = repo.status("incident_updates")
    assert status.empty and status.error and "make migrate-data" in status.error and str(folder) in status.error
    assert repo.status("events").error is None  # the other tables are unaffected


def test_compaction_leaves_every_count_unchanged(tmp_path: Path, open_repo: OpenRepo) -> None:
    for i in range(6):
        _append(tmp_path, "incident_updates", [_update(f"INC-{i}", 1), _update(f"INC-{i}", 2)])
        _append(tmp_path, "events", [_event(i * 10 + j, T0 + timedelta(minutes=i * 5 + j),
                                            is_error=j == 0) for j in range(10)])
    repo = open_repo(tmp_path)
    before = (repo.incidents(IncidentFilter()).total, repo.event_totals(),
              repo.db.rows("SELECT count(*) FROM incident_updates")[0][0])
    assert before[0] == 6 and before[1]["events"] == 60 and before[1]["errors"] == 6 and before[2] == 12
    assert repo.status("incident_updates").files == 6

    for table in ("incident_updates", "events"):
        metrics = DeltaTable(str(tmp_path / table)).optimize.compact()
        assert metrics["numFilesRemoved"] == 6
    after = (repo.incidents(IncidentFilter()).total, repo.event_totals(),
             repo.db.rows("SELECT count(*) FROM incident_updates")[0][0])
    assert after == before
    assert repo.status("incident_updates").files == 1 and repo.status("events").files == 1
    assert repo.incident_window(["api-gateway"], T0, T0 + timedelta(hours=1))["events"].sum() == 60
    # the replaced files are still in the folder (until vacuum) and are not counted twice
    assert len(list((tmp_path / "incident_updates").glob("*.parquet"))) == 7


@pytest.mark.parametrize("chunk", [1, 100])  # 1: the first load commits file by file before it meets the damage
def test_a_damaged_committed_file_is_reported_and_the_rest_is_read(tmp_path: Path, chunk: int, open_repo: OpenRepo,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mirror, "CHUNK_FILES", chunk)
    for i in range(3):
        _append(tmp_path, "incident_updates", [_update(f"INC-{i}", 1)])
    files = snapshot_files(DeltaTable(str(tmp_path / "incident_updates")), str(tmp_path / "incident_updates"))
    damaged = Path(list(files.values())[-1].location)  # the last one read
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    repo = open_repo(tmp_path)
    assert repo.incidents(IncidentFilter()).total == 2
    assert repo.db.rows("SELECT count(*) FROM incident_updates")[0][0] == 2  # nothing loaded twice
    status = repo.status("incident_updates")
    assert status.files == 2 and len(status.unreadable) == 1 and damaged.name in status.unreadable[0]

    damaged.write_bytes(data)  # restored (from a backup, say): read on the next refresh
    assert repo.incidents(IncidentFilter()).total == 3 and repo.status("incident_updates").unreadable == []
    assert repo.db.rows("SELECT count(*) FROM incident_updates")[0][0] == 3


def test_older_files_without_newer_columns_still_load(tmp_path: Path, open_repo: OpenRepo) -> None:
    old_schema = pa.schema([f for f in contract.INCIDENT_UPDATES if f.name not in ("linked_incident_ids",
                                                                                     "origin_incident_id")])
    row = {k: v for k, v in _update("INC-OLD", 1).items() if k in old_schema.names}
    write_deltalake(str(tmp_path / "incident_updates"), pa.Table.from_pylist([row], schema=old_schema))
    write_deltalake(str(tmp_path / "incident_updates"),
                    _rows("incident_updates", [_update("INC-NEW", 1, linked_incident_ids=["INC-OLD"])]),
                    mode="append", schema_mode="merge")
    repo = open_repo(tmp_path)
    assert repo.incident("INC-OLD")["linked_incident_ids"] is None
    assert repo.incident("INC-NEW")["linked_incident_ids"] == ["INC-OLD"]


def test_many_small_event_files_roll_up(tmp_path: Path, open_repo: OpenRepo) -> None:
    store = TableStore(str(tmp_path))
    files = []
    for i in range(120):
        rows = [_event(i * 10 + j, T0 + timedelta(seconds=i * 10 + j), level="ERROR" if j == 0 else "INFO",
                       is_error=j == 0, latency_ms=10.0 + j, http_status=500 if j == 0 else 200)
                for j in range(10)]
        files += store.write_files("events", _rows("events", rows))
    store.commit_files("events", files)
    repo = open_repo(tmp_path)
    traffic = repo.traffic(T0, T0 + timedelta(hours=1), "10 minutes", by_service=False)
    assert traffic["events"].sum() == 1200 and traffic["errors"].sum() == 120
    assert repo.event_totals()["events"] == 1200
    window = repo.incident_window(["api-gateway"], T0, T0 + timedelta(minutes=30))
    assert window["events"].sum() == 1200
    assert repo.noisiest_services(T0, T0 + timedelta(hours=1)).iloc[0]["errors"] == 120


def test_raw_event_reads_open_only_the_files_of_the_window(tmp_path: Path, open_repo: OpenRepo) -> None:
    for start in (T0.replace(hour=7), T0, T0 + timedelta(minutes=40)):  # 07:00, 09:00 and 09:40, five minutes each
        _append(tmp_path, "events", [_event(int(start.timestamp()) + j, start + timedelta(minutes=j), is_error=True)
                                     for j in range(5)])
    repo = open_repo(tmp_path)
    assert repo.event_totals()["events"] == 15
    # Damage two files after they were mirrored: reads of 09:00-09:10 must open neither.
    damaged = [next((tmp_path / "events").glob("event_date=*/event_hour=7/*.parquet"))]
    late = [f for f in repo.events.files() if f.time_range and f.time_range[0] == T0 + timedelta(minutes=40)]
    damaged.append(Path(late[0].location))
    for path in damaged:
        path.write_bytes(b"PAR1 damaged")
    window = repo.incident_window(["api-gateway"], T0, T0 + timedelta(minutes=10))
    assert window["events"].sum() == 5
    assert len(repo.sample_events("api-gateway", T0, T0 + timedelta(minutes=10), per_signature=9)) == 5
    with pytest.raises(Exception, match=r"(?i)parquet|magic|invalid|size"):
        repo.incident_window(["api-gateway"], T0, T0 + timedelta(minutes=50))


def test_snapshot_files_take_partition_values_from_the_log(tmp_path: Path, open_repo: OpenRepo) -> None:
    odd = "2026 11/23"  # folder names escape it; the log holds the value itself
    _append(tmp_path, "events", [_event(1, T0, event_date=odd)])
    dt = DeltaTable(str(tmp_path / "events"))
    (file,) = snapshot_files(dt, str(tmp_path / "events")).values()
    assert file.partition == {"event_date": odd, "event_hour": 9}
    assert Path(file.location).is_file() and file.size == Path(file.location).stat().st_size
    repo = open_repo(tmp_path)
    assert repo.event_totals()["events"] == 1
    assert repo.db.rows("SELECT count(*) FROM signatures_hour")[0][0] == 1


def test_prune_by_time_keeps_files_of_overlapping_hours_and_ranges() -> None:
    def hour_file(hour: int, minutes: tuple[int, int] | None = None) -> SnapshotFile:
        start = T0.replace(hour=hour)
        span = (start + timedelta(minutes=minutes[0]), start + timedelta(minutes=minutes[1])) if minutes else None
        return SnapshotFile(f"h{hour}-{minutes}", "/t/x", 1, 0, {"event_date": "2026-11-23", "event_hour": hour}, span)

    files = [hour_file(7), hour_file(8), hour_file(9), hour_file(10), hour_file(9, (0, 5)), hour_file(9, (30, 35)),
             SnapshotFile("flat", "/t/flat", 1, 0, {})]
    kept = prune_by_time(files, T0 - timedelta(minutes=30), T0 + timedelta(minutes=20))
    assert [f.key for f in kept] == ["h8-None", "h9-None", "h9-(0, 5)", "flat"]
    # statistics truncated to milliseconds: a file whose recorded maximum is just before the start may hold it
    edge = hour_file(9, (0, 5))
    assert prune_by_time([edge], edge.time_range[1] + timedelta(microseconds=500), T0 + timedelta(hours=1))


def test_ttl_cache() -> None:
    cache = TTLCache(ttl=60)
    calls = []
    assert cache.get_or_compute("k", lambda: calls.append(1) or 1) == 1
    assert cache.get_or_compute("k", lambda: calls.append(1) or 2) == 1
    assert len(calls) == 1 and cache.hits == 1
    off = TTLCache(ttl=0)
    off.get_or_compute("k", lambda: calls.append(1))
    off.get_or_compute("k", lambda: calls.append(1))
    assert len(calls) == 3


def _sortable(incident_id: str, severity: str, opened_h: int, lasts_min: int, anomaly: float | None,
              errors: int | None, **overrides: object) -> dict:
    opened = T0 + timedelta(hours=opened_h)
    return _update(incident_id, 1, severity=severity, opened_at=opened, first_seen=opened,
                   last_seen=opened + timedelta(minutes=lasts_min), anomaly_score=anomaly, error_count=errors,
                   **overrides)


# Each sort puts these five incidents in its own order. E is resolved: it lasted until its resolution
# (20 min), though its last anomalous event was 8 min in.
SORTABLE = [
    _sortable("A", "P2", opened_h=1, lasts_min=10, anomaly=5.0, errors=30),
    _sortable("B", "P1", opened_h=3, lasts_min=60, anomaly=2.0, errors=10),
    _sortable("C", "P3", opened_h=0, lasts_min=30, anomaly=9.0, errors=20),
    _sortable("D", "P4", opened_h=2, lasts_min=5, anomaly=None, errors=None),
    _sortable("E", "P1", opened_h=4, lasts_min=8, anomaly=7.0, errors=40, status="resolved",
              resolved_at=T0 + timedelta(hours=4, minutes=20)),
]
SORT_ORDERS = {
    "severity": ["B", "E", "A", "C", "D"],  # by severity, open before resolved, then newest
    "newest": ["E", "B", "D", "A", "C"],
    "oldest": ["C", "A", "D", "B", "E"],
    "longest": ["B", "C", "E", "A", "D"],
    "anomaly": ["C", "E", "A", "B", "D"],  # no score last
    "errors": ["E", "A", "C", "B", "D"],  # no count last
}


def test_every_sort_is_checked() -> None:
    assert set(SORT_ORDERS) == set(SORTS)
    assert len({tuple(order) for order in SORT_ORDERS.values()}) == len(SORT_ORDERS)  # no two sorts agree


@pytest.mark.parametrize("sort", list(SORT_ORDERS))
def test_each_sort_orders_the_incidents(tmp_path: Path, sort: str, open_repo: OpenRepo) -> None:
    _append(tmp_path, "incident_updates", SORTABLE)
    page = open_repo(tmp_path).incidents(IncidentFilter(sort=sort))
    assert page.total == 5 and page.rows["incident_id"].tolist() == SORT_ORDERS[sort]
