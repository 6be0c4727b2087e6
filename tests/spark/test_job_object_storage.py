"""The streaming job as a user runs it with DATA_DIR=s3://bucket/prefix, against a local S3 server.

The real `incident-stream` process writes the tables to the bucket, is killed with SIGKILL in the middle
of its micro-batches, and is run again to the end: every produced record is in `events` or
`dead_letter` exactly once, read back from the bucket with the deltalake library. Then table
maintenance (`make maintain`'s command) runs on the bucket, and the dashboard's data layer reads the
tables from it: still every record once. The job's checkpoint is on the local disk
(RUNTIME_DIR/checkpoints): Spark's checkpoints need a file system. While the first run goes, its Prometheus
endpoints are scraped: the job's /metrics (STREAM_METRICS_PORT) and Spark's servlets on the driver UI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pipeline_checks import assert_exactly_once
from prometheus_client.parser import text_string_to_metric_families
from stream_helpers import make_event, produce_events

from incident_contracts.kafka import end_offsets

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def _env(broker: str, topic: str, base: Path, s3: Any, data_dir: str) -> dict[str, str]:
    from incident_stack.broker import free_port

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "SPARK_", "STREAM_", "DATA_DIR", "AWS_", "S3_", "CHECKPOINT_DIR"))}
    env.update(ENV_FILE=str(base / "none.env"), RUNTIME_DIR=str(base / "runtime"), KAFKA_BOOTSTRAP_SERVERS=broker,
               KAFKA_TOPIC_LOGS=topic, KAFKA_CONSUMER_GROUP="", SPARK_MASTER="local[2]",
               SPARK_UI_PORT=str(free_port()), STREAM_TRIGGER_SECONDS="0.5", STREAM_MAX_RECORDS_PER_TRIGGER="2500",
               STREAM_METRICS_PORT=str(free_port()), METRICS_HOST="127.0.0.1",
               PYTHONUNBUFFERED="1", **s3.env(data_dir))
    return env


def _job(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "incident-stream"), *args]
    with open(log, "ab") as out:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _committed_batches(checkpoint: Path) -> int:
    commits = checkpoint / "logs" / "commits"
    return len([p for p in commits.iterdir() if p.name.isdigit()]) if commits.is_dir() else 0


def _get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def _assert_prometheus_endpoints(env: dict[str, str]) -> None:
    """The running job's /metrics (STREAM_METRICS_PORT) counts its batches and reports the lag per partition;
    Spark's driver UI serves its PrometheusServlet with the streaming queries' gauges. (Its executor summary,
    /metrics/executors/prometheus, takes up to 20 s to answer first on a loaded machine: not scraped here.)"""
    job_url = f"http://127.0.0.1:{env['STREAM_METRICS_PORT']}/metrics"
    deadline = time.monotonic() + 10  # progress reports reach the listener shortly after the commit
    while True:
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(_get(job_url)) for s in family.samples}
        batches = samples.get(("incident_stream_batches_total", (("query", "logs"),)), 0)
        if batches > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert batches > 0, samples
    lag = {labels: v for (name, labels), v in samples.items() if name == "incident_stream_consumer_lag_records"}
    assert {dict(labels)["partition"] for labels in lag} == {"0", "1"}, samples
    assert all(dict(labels)["query"] == "logs" for labels in lag)
    servlet = _get(f"http://127.0.0.1:{env['SPARK_UI_PORT']}/metrics/prometheus", timeout=30)
    assert "metrics_incident_stream_driver_spark_streaming_logs_inputRate_total_Value" in servlet


def test_a_job_on_s3_killed_mid_batch_writes_every_record_once(broker: str, topic: str, s3: Any,
                                                                tmp_path: Path) -> None:
    produce_events(broker, topic, (make_event(i) for i in range(12_000)))
    data_dir = f"s3://{s3.new_bucket()}/incidents"
    env = _env(broker, topic, tmp_path, s3, data_dir)
    checkpoint = tmp_path / "runtime" / "checkpoints" / "incident_stream"
    log = tmp_path / "job.log"

    job = _job(env, log, "--no-detection")
    deadline = time.monotonic() + 240
    while _committed_batches(checkpoint) < 2 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.1)
    assert job.poll() is None, f"the job ended early: {log.read_text()[-3000:]}"
    assert _committed_batches(checkpoint) >= 2, f"no batch committed in time: {log.read_text()[-3000:]}"
    _assert_prometheus_endpoints(env)  # while it runs: the job's own metrics and Spark's servlet
    time.sleep(0.3)  # inside a later batch
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=30)

    final = _job(env, log, "--once", "--no-detection")
    assert final.wait(timeout=300) == 0, log.read_text()[-3000:]
    ranges = {p: (0, end) for p, end in end_offsets(broker, topic).items()}
    assert assert_exactly_once(data_dir, topic, ranges, storage=s3.storage_options()) == 12_000
    assert not (tmp_path / "data").exists(), "nothing of the tables may land on the local disk"

    maintenance = subprocess.run([sys.executable, "-m", "incident_contracts.table_maintenance"], env=env,
                                 cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert maintenance.returncode == 0, maintenance.stderr[-3000:]
    report = json.loads(maintenance.stdout)
    assert report["ok"] and report["data_dir"] == data_dir, report
    assert report["tables"]["events"]["files_after"] < report["tables"]["events"]["files_before"], report
    assert assert_exactly_once(data_dir, topic, ranges, storage=s3.storage_options()) == 12_000

    from incident_contracts.table_store import TableStore
    from incident_rca.data.repository import Repository

    repository = Repository(TableStore(data_dir, s3.storage_options()), cache_ttl=0)
    assert repository.event_totals()["events"] == 12_000
    assert repository.status("events").error is None
