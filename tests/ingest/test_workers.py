"""log-ingest with INGEST_WORKERS=2: two processes on one port, each with its own producer; /metrics,
whichever process answers it, counts the records of both. Integration: about 10 s (two processes start)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from incident_contracts.settings import inherited_env
from incident_stack.broker import free_port

pytestmark = pytest.mark.integration

LINES = b"".join(b'{"message": "hello %d", "service": "web"}\n' % i for i in range(10))
ACCEPTED = re.compile(rb'^ingest_records_accepted_total\{endpoint="json"\} (\S+)$', re.MULTILINE)


def _workers(pid: int) -> list[int]:
    """The worker processes uvicorn started (not multiprocessing's resource tracker)."""
    children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [child for child in children if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


def _post(url: str) -> int:
    with httpx.Client(base_url=url) as client:  # a connection of its own: the kernel picks the process
        return client.post("/v1/json", content=LINES).status_code


def test_two_worker_processes_share_the_port_and_report_metrics_together(
        broker: str, topic: str, tmp_path: Path, events_of: Any) -> None:
    port = free_port()
    env = inherited_env()
    env.update(KAFKA_BOOTSTRAP_SERVERS=broker, KAFKA_TOPIC_LOGS=topic, INGEST_PORT=str(port),
               INGEST_HOST="127.0.0.1", INGEST_TOKEN="", INGEST_WORKERS="2", LOG_LEVEL="INFO",
               ENV_FILE=str(tmp_path / "none.env"), RUNTIME_DIR=str(tmp_path / "runtime"),
               DATA_DIR=str(tmp_path / "data"))
    process = subprocess.Popen([sys.executable, "-m", "incident_ingest.cli"], env=env, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "log-ingest did not become ready"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200 and len(_workers(process.pid)) == 2:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        workers = _workers(process.pid)
        environ = Path(f"/proc/{workers[0]}/environ").read_bytes().split(b"\0")
        metrics_dir = Path(next(v.split(b"=", 1)[1] for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")
                                ).decode())
        # Both workers must have written records, or the sum below would prove nothing: the kernel hands new
        # connections to either process, so concurrent requests on fresh connections reach both.
        sent = 0
        with ThreadPoolExecutor(8) as pool:
            while True:
                assert all(code == 200 for code in pool.map(_post, [url] * 8))
                sent += 8
                served = {pid for pid in workers if (metrics_dir / f"counter_{pid}.db").exists()}
                if len(served) == 2 or sent >= 80:
                    break
        for _ in range(4):  # each answer, from whichever process, counts every record
            found = ACCEPTED.search(httpx.get(f"{url}/metrics").content)
            assert found is not None and float(found.group(1)) == sent * 10
        assert len(events_of(sent * 10)) == sent * 10
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
    assert output.count("Application shutdown complete") == 2, output  # each worker flushed its producer
    assert not metrics_dir.exists()
