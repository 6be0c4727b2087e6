"""The data-access layer over Parquet folders: listing, incremental mirrors, current state, tolerance."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from incident_contracts import tables as contract
from incident_dashboard.data import IncidentFilter, Repository
from incident_dashboard.data.files import list_table_files, prune_by_hour
from incident_dashboard.data.ttl import TTLCache

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


def _write(folder: Path, name: str, rows: list[dict], schema: pa.Schema = contract.INCIDENT_UPDATES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def test_listing_skips_scratch_hidden_and_empty_files(tmp_path: Path) -> None:
    root = tmp_path / "events"
    good = root / "event_date=2026-11-23" / "event_hour=9" / "part-1.parquet"
    good.parent.mkdir(parents=True)
    good.write_bytes(b"data")
    (good.parent / "part-2.parquet").write_bytes(b"")
    (good.parent / ".part-3.parquet.crc").write_bytes(b"x")
    (good.parent / "notes.txt").write_bytes(b"x")
    (root / "_temporary" / "0").mkdir(parents=True)
    (root / "_temporary" / "0" / "part-4.parquet").write_bytes(b"x")
    listing = list_table_files(root)
    assert [f.path for f in listing.files] == [str(good)]
    assert listing.files[0].partition == {"event_date": "2026-11-23", "event_hour": "9"}
    assert list_table_files(tmp_path / "missing").files == []


def test_listing_honours_a_spark_manifest(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    for name in ("part-a.parquet", "part-b.parquet", "part-c.parquet"):
        (root / name).write_bytes(b"x")
    manifest = root / "_spark_metadata"
    manifest.mkdir()
    entry = {"path": f"file://{root}/part-a.parquet", "size": 1, "isDir": False, "action": "add"}
    (manifest / "0").write_text("v1\n" + json.dumps(entry) + "\n")
    (manifest / "1").write_text("v1\n" + json.dumps({**entry, "path": f"file://{root}/part-b.parquet"}) + "\n")
    (manifest / "2").write_text("v1\n" + json.dumps({**entry, "action": "delete"}) + "\n")
    listing = list_table_files(root)
    assert [Path(f.path).name for f in listing.files] == ["part-b.parquet"]
    assert listing.manifest and listing.uncommitted == 2


def test_prune_by_hour_keeps_overlapping_partitions(tmp_path: Path) -> None:
    from incident_dashboard.data.files import FileEntry

    files = [FileEntry(f"/t/event_date=2026-11-23/event_hour={h}/p.parquet", 1, 0) for h in (7, 8, 9, 10)]
    files.append(FileEntry("/t/unpartitioned.parquet", 1, 0))
    kept = prune_by_hour(files, T0 - timedelta(minutes=30), T0 + timedelta(minutes=20))
    assert [f.path for f in kept] == [files[1].path, files[2].path, "/t/unpartitioned.parquet"]


def test_current_state_is_the_highest_update_seq(tmp_path: Path) -> None:
    folder = tmp_path / "incident_updates"
    # written out of order, in separate small files, as micro-batches would
    _write(folder, "part-2.parquet", [_update("INC-1", 3, severity="P1", status="resolved", resolved_at=T0)])
    _write(folder, "part-1.parquet", [_update("INC-1", 1), _update("INC-1", 2, severity="P2"), _update("INC-2", 1)])
    repo = Repository(tmp_path, cache_ttl=0)
    incident = repo.incident("INC-1")
    assert incident["update_seq"] == 3 and incident["severity"] == "P1" and incident["status"] == "resolved"
    assert repo.incident_history("INC-1")["update_seq"].tolist() == [1, 2, 3]
    page = repo.incidents(IncidentFilter())
    assert page.total == 2 and page.rows["incident_id"].tolist() == ["INC-1", "INC-2"]  # P1 before P3
    assert repo.open_by_severity().set_index("severity")["incidents"].to_dict() == {"P1": 0, "P2": 0, "P3": 1,
                                                                                    "P4": 0}


def test_filters_text_and_limits(tmp_path: Path) -> None:
    rows = [_update(f"INC-{i}", 1, service="auth-service" if i % 2 else "order-service",
                    severity="P1" if i < 3 else "P4", opened_at=T0 + timedelta(hours=i),
                    last_seen=T0 + timedelta(hours=i, minutes=10), title=f"incident {i} expired certificate"
                    if i == 5 else f"incident {i}") for i in range(10)]
    _write(tmp_path / "incident_updates", "part-0.parquet", rows)
    repo = Repository(tmp_path, cache_ttl=0)
    assert repo.incidents(IncidentFilter(services=("auth-service",))).total == 5
    assert repo.incidents(IncidentFilter(severities=("P1",))).total == 3
    assert repo.incidents(IncidentFilter(text="EXPIRED certificate")).rows["incident_id"].tolist() == ["INC-5"]
    window = IncidentFilter(start=T0 + timedelta(hours=2, minutes=30), end=T0 + timedelta(hours=4, minutes=5))
    assert sorted(repo.incidents(window).rows["incident_id"]) == ["INC-3", "INC-4"]
    limited = repo.incidents(IncidentFilter(limit=4, sort="newest"))
    assert limited.total == 10 and limited.rows["incident_id"].tolist() == ["INC-9", "INC-8", "INC-7", "INC-6"]


def test_missing_tables_read_as_empty_with_the_contract_columns(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "nothing-here", cache_ttl=0)
    assert not repo.status("incident_updates").exists
    page = repo.incidents(IncidentFilter())
    assert page.total == 0 and "severity" in page.rows.columns
    assert repo.traffic(T0, T0 + timedelta(hours=1), "10 minutes").empty
    assert repo.metrics_series().empty and repo.dead_letter_summary().empty
    assert repo.freshness().latest_event_time is None
    assert repo.incident_window(["api-gateway"], T0, T0 + timedelta(hours=1)).empty


def test_half_written_file_is_retried_until_complete(tmp_path: Path) -> None:
    folder = tmp_path / "incident_updates"
    _write(folder, "part-1.parquet", [_update("INC-1", 1)])
    complete = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist([_update("INC-2", 1)], schema=contract.INCIDENT_UPDATES), complete)
    data = complete.getvalue().to_pybytes()
    late = folder / "part-2.parquet"
    late.write_bytes(data[: len(data) // 2])  # the writer is half-way through

    repo = Repository(tmp_path, cache_ttl=0)
    assert repo.incidents(IncidentFilter()).total == 1
    status = repo.status("incident_updates")
    assert status.pending == [str(late)] and status.files == 1

    late.write_bytes(data)  # the writer finished
    os.utime(late, ns=(late.stat().st_mtime_ns + 1_000_000, late.stat().st_mtime_ns + 1_000_000))
    assert repo.incidents(IncidentFilter()).total == 2
    assert repo.status("incident_updates").pending == []


def test_compaction_replaces_files_without_duplicates(tmp_path: Path) -> None:
    folder = tmp_path / "incident_updates"
    small = [_write(folder, f"part-{i}.parquet", [_update(f"INC-{i}", 1)]) for i in range(5)]
    repo = Repository(tmp_path, cache_ttl=0)
    assert repo.incidents(IncidentFilter()).total == 5
    _write(folder, "part-compacted.parquet", [_update(f"INC-{i}", 1) for i in range(5)])
    for path in small:
        path.unlink()
    assert repo.incidents(IncidentFilter()).total == 5
    assert repo.status("incident_updates").files == 1
    assert len(repo.db.rows("SELECT * FROM incident_updates")) == 5


def test_older_files_without_newer_columns_still_load(tmp_path: Path) -> None:
    folder = tmp_path / "incident_updates"
    old_schema = pa.schema([f for f in contract.INCIDENT_UPDATES if f.name not in ("linked_incident_ids",
                                                                                     "origin_incident_id")])
    row = {k: v for k, v in _update("INC-OLD", 1).items() if k in old_schema.names}
    _write(folder, "part-old.parquet", [row], old_schema)
    _write(folder, "part-new.parquet", [_update("INC-NEW", 1, linked_incident_ids=["INC-OLD"])])
    repo = Repository(tmp_path, cache_ttl=0)
    assert repo.incident("INC-OLD")["linked_incident_ids"] is None
    assert repo.incident("INC-NEW")["linked_incident_ids"] == ["INC-OLD"]


def test_many_small_event_files_roll_up(tmp_path: Path) -> None:
    folder = tmp_path / "events" / "event_date=2026-11-23" / "event_hour=9"
    folder.mkdir(parents=True)
    schema = contract.EVENTS.remove(contract.EVENTS.get_field_index("event_date"))
    schema = schema.remove(schema.get_field_index("event_hour"))
    for i in range(120):
        rows = [{
            "event_id": f"e{i}-{j}", "event_time": T0 + timedelta(seconds=i * 10 + j), "ingest_time": T0,
            "service": "api-gateway", "environment": "prod", "host": "gw-1", "level": "ERROR" if j == 0 else "INFO",
            "is_error": j == 0, "message": "m", "signature": "s", "signature_id": "s0", "latency_ms": 10.0 + j,
            "topic": "logs.events", "kafka_partition": 0, "kafka_offset": i * 10 + j, "http_status": 500 if j == 0
            else 200} for j in range(10)]
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / f"part-{i:05d}.parquet")
    repo = Repository(tmp_path, cache_ttl=0)
    traffic = repo.traffic(T0, T0 + timedelta(hours=1), "10 minutes", by_service=False)
    assert traffic["events"].sum() == 1200 and traffic["errors"].sum() == 120
    assert repo.event_totals()["events"] == 1200
    window = repo.incident_window(["api-gateway"], T0, T0 + timedelta(minutes=30))
    assert window["events"].sum() == 1200
    assert repo.noisiest_services(T0, T0 + timedelta(hours=1)).iloc[0]["errors"] == 120


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


@pytest.mark.parametrize("sort", ["severity", "newest", "oldest", "longest", "anomaly", "errors"])
def test_every_sort_runs(tmp_path: Path, sort: str) -> None:
    _write(tmp_path / "incident_updates", "p.parquet", [_update("INC-1", 1), _update("INC-2", 1, severity="P1")])
    assert Repository(tmp_path, cache_ttl=0).incidents(IncidentFilter(sort=sort)).total == 2
