"""Write demo tables so the dashboard can be tried without Kafka and Spark.

    python -m incident_dashboard.demo --data-dir /tmp/demo-data [--events 300000] [--hours 6]
    DATA_DIR=/tmp/demo-data streamlit run dashboard/app.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from incident_dashboard.demo.builder import DemoConfig, build_demo_data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m incident_dashboard.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, type=Path, help="folder to write the tables into")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--incidents", type=int, default=21)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--files-per-hour", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--force", action="store_true", help="write even if the tables already hold files")
    args = parser.parse_args(argv)
    existing = [t for t in ("events", "incident_updates", "dead_letter", "metrics")
                if (args.data_dir / t).is_dir() and any((args.data_dir / t).rglob("*.parquet"))]
    if existing and not args.force:
        print(f"{args.data_dir} already holds tables ({', '.join(existing)}); demo rows would mix with them. "
              "Use an empty folder, or --force to add to them.", file=sys.stderr)
        return 2
    started = time.perf_counter()
    summary = build_demo_data(args.data_dir, DemoConfig(events=args.events, incidents=args.incidents,
                                                        hours=args.hours, files_per_hour=args.files_per_hour,
                                                        seed=args.seed))
    print(f"wrote {summary.events:,} events in {summary.event_files} files, {len(summary.incidents)} incidents "
          f"({summary.update_rows} lifecycle rows), {summary.dead_letters} dead letters, "
          f"{summary.metrics_rows} metrics rows to {args.data_dir} in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
