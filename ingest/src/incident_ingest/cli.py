"""`log-ingest`: serve the ingest endpoints on INGEST_HOST:INGEST_PORT (settings in .env.example)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

from incident_contracts.settings import SettingsError, get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="log-ingest",
        description="Receive logs over HTTP (OTLP/HTTP at /v1/logs, JSON lines at /v1/json, text lines at "
                    "/v1/lines?format=NAME) and write them to the log topic. Configured by the INGEST_* "
                    "settings (.env.example).")
    parser.parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.value, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from incident_ingest.app import create_app
    from incident_ingest.metrics import MULTIPROCESS_DIR

    if not settings.ingest_token and settings.ingest_host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("log-ingest").warning(
            "INGEST_HOST=%s accepts connections from the network but INGEST_TOKEN is empty: anyone who reaches "
            "the port can write logs. Set INGEST_TOKEN.", settings.ingest_host)
    options: dict[str, Any] = {
        "host": settings.ingest_host, "port": settings.ingest_port, "log_level": settings.log_level.value.lower(),
        "access_log": False, "server_header": False,
        "timeout_graceful_shutdown": settings.ingest_delivery_timeout_seconds + 5}
    if settings.ingest_workers == 1:
        uvicorn.run(create_app(settings), **options)
        return 0
    # Several processes on one listening socket, each with its own producer; their metrics meet in files.
    metrics_dir = tempfile.mkdtemp(prefix="log-ingest-metrics-")
    os.environ[MULTIPROCESS_DIR] = metrics_dir
    try:
        uvicorn.run("incident_ingest.app:worker_app", factory=True, workers=settings.ingest_workers, **options)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
