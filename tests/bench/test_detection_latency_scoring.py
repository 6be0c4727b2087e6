"""How the detection benchmark scores injections: undetected ones count as the time they were watched."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
detection_bench = importlib.import_module("detection_bench")


def test_an_undetected_injection_counts_as_the_time_it_was_watched() -> None:
    inj = detection_bench.Injection("bad_deploy", "order-service", start_ms=1_000_000, first_error_wall_ms=1_002_000)
    assert detection_bench.watched_s(inj, observed_until_ms=1_090_000, fallback=44.0) == 88.0
    no_error_seen = detection_bench.Injection("disk_full", "search-service", start_ms=1_000_000)
    assert detection_bench.watched_s(no_error_seen, observed_until_ms=1_090_000, fallback=44.0) == 90.0
    assert detection_bench.watched_s(inj, observed_until_ms=None, fallback=44.0) == 44.0


def test_the_reader_knows_which_services_have_an_open_incident(tmp_path: Path) -> None:
    import datetime as dt

    import pyarrow as pa

    from incident_contracts.table_store import TableStore

    opened_at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    store = TableStore(str(tmp_path / "data"))

    def updates(rows: list[tuple[str, str, str]]) -> pa.Table:
        ids, kinds, services = zip(*rows, strict=True)
        count = len(rows)
        return pa.table({"incident_id": ids, "update_seq": [0] * count, "update_type": kinds,
                         "status": ["resolved" if k == "resolved" else "open" for k in kinds],
                         "update_time": [opened_at] * count, "service": services, "environment": ["prod"] * count,
                         "severity": ["P2"] * count, "opened_at": [opened_at] * count,
                         "first_seen": [opened_at] * count, "last_seen": [opened_at] * count})

    reader = detection_bench.UpdatesReader(store)
    reader.poll()  # no table yet
    store.append("incident_updates", updates([("a", "opened", "order-service"), ("b", "opened", "search-service")]))
    store.write_files("incident_updates", updates([("c", "opened", "cart-service")]))  # never committed
    reader.poll()
    assert reader.open_services() == {"order-service", "search-service"}
    store.append("incident_updates", updates([("a", "updated", "order-service"), ("a", "resolved", "order-service")]))
    reader.poll()
    assert reader.open_services() == {"search-service"}
    assert set(reader.snapshot()) == {"a", "b"}
