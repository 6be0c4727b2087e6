"""Builds the class-data archive of Spark's JVMs (incident_contracts.class_data).

    python -m incident_stream.class_data [--force]

A JVM started with ``-XX:ArchiveClassesAtExit`` writes the classes it loaded into an archive as it exits.
The training run (class_data_training.py, a child process) runs the streaming job's kinds of work in a
session whose JVM does that. The archive is moved into place only once complete: a failed run leaves no
archive, and Spark starts as before. An archive for this Java runtime and PySpark already there is kept.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from incident_contracts.class_data import ARCHIVE_PREFIX, archive_path

TRAINING_TIMEOUT_SECONDS = 600


def build(force: bool = False) -> int:
    target = archive_path()
    if target is None:
        print("class-data archive: not built (no java or no PySpark found)", file=sys.stderr)
        return 1
    if target.is_file() and not force:
        print(f"class-data archive: up to date ({target})")
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    started = time.monotonic()
    print("class-data archive: building (a short Spark run, about a minute)...", flush=True)
    try:
        try:
            run = subprocess.run([sys.executable, "-m", "incident_stream.class_data_training", str(partial)],
                                 capture_output=True, text=True, timeout=TRAINING_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            print(f"class-data archive: the training run took more than {TRAINING_TIMEOUT_SECONDS} s and was "
                  "stopped (a very busy machine?); Spark starts without it. Run `make setup` again later.",
                  file=sys.stderr)
            return 1
        if run.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
            print(f"class-data archive: the training run failed (exit {run.returncode}); Spark starts without "
                  f"it. Its output:\n{(run.stdout + run.stderr)[-3000:]}", file=sys.stderr)
            return 1
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    for old in target.parent.glob(f"{ARCHIVE_PREFIX}*.jsa"):
        if old != target:
            old.unlink(missing_ok=True)  # archives of an earlier Java or PySpark
    print(f"class-data archive: {target} ({target.stat().st_size / 1e6:.0f} MB, {time.monotonic() - started:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="build it again even if it is up to date")
    args = parser.parse_args(argv)
    return build(force=args.force)


if __name__ == "__main__":
    sys.exit(main())
