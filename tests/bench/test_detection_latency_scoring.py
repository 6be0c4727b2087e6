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


def test_percentile_is_nearest_rank() -> None:
    values = [32.5, 37.6, 54.9, 81.5, 58.4, 88.0, 65.2, 70.0, 76.0, 60.0]
    assert detection_bench.percentile(values, 95) == 88.0
    assert detection_bench.percentile(values, 50) == 60.0
    assert detection_bench.percentile([5.0], 95) == 5.0


def test_the_reader_knows_which_services_have_an_open_incident(tmp_path: Path) -> None:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    opened_at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)

    def write(name: str, rows: list[tuple[str, str, str]]) -> None:
        ids, kinds, services = zip(*rows, strict=True)
        pq.write_table(pa.table({"incident_id": ids, "update_type": kinds, "service": services,
                                 "opened_at": [opened_at] * len(rows)}), tmp_path / name)

    reader = detection_bench.UpdatesReader(tmp_path)
    write("part-1.parquet", [("a", "opened", "order-service"), ("b", "opened", "search-service")])
    reader.poll()
    assert reader.open_services() == {"order-service", "search-service"}
    write("part-2.parquet", [("a", "updated", "order-service"), ("a", "resolved", "order-service")])
    reader.poll()
    assert reader.open_services() == {"search-service"}
    assert set(reader.snapshot()) == {"a", "b"}
