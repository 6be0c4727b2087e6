"""Write demo tables so the dashboard can be tried without Kafka and Spark.

    python -m incident_dashboard.demo --data-dir /tmp/demo-data [--events 300000] [--hours 6]
    DATA_DIR=/tmp/demo-data streamlit run dashboard/app.py

Without --data-dir the tables go to DATA_DIR (a folder or s3://BUCKET/PREFIX, with the S3_* settings).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from incident_contracts.settings import SettingsError, get_settings
from incident_contracts.table_store import TableLayoutError, TableStore
from incident_contracts.tables import TABLES
from incident_dashboard.demo.builder import DemoConfig, build_demo_data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m incident_dashboard.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="folder to write the tables into (default: DATA_DIR)")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--incidents", type=int, default=21)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--files-per-hour", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--force", action="store_true", help="write even if the tables already hold rows")
    args = parser.parse_args(argv)
    try:
        if args.data_dir and "://" in args.data_dir:
            raise SettingsError("--data-dir takes a folder; for object storage set DATA_DIR=s3://... instead")
        settings = get_settings()
        if args.data_dir:
            settings = settings.model_copy(update={"data_dir": Path(args.data_dir)})
        store = TableStore.from_settings(settings)
        existing = [name for name in TABLES if (table := store.open(name)) is not None and table.file_uris()]
    except (SettingsError, TableLayoutError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if existing and not args.force:
        print(f"{store.root} already holds tables ({', '.join(existing)}); demo rows would mix with them. "
              "Use an empty folder, or --force to add to them.", file=sys.stderr)
        return 2
    started = time.perf_counter()
    summary = build_demo_data(store, DemoConfig(events=args.events, incidents=args.incidents, hours=args.hours,
                                                files_per_hour=args.files_per_hour, seed=args.seed))
    print(f"wrote {summary.events:,} events in {summary.event_files} files, {len(summary.incidents)} incidents "
          f"({summary.update_rows} lifecycle rows), {summary.dead_letters} dead letters, "
          f"{summary.metrics_rows} metrics rows to {store.root} in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
