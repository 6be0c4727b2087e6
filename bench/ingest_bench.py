"""Log ingest throughput: records/s that log-ingest accepts (Kafka-acknowledged) from concurrent HTTP clients.

One embedded broker, one log-ingest process (`python -m incident_ingest.cli`, as `make up` starts it), and
in this process several concurrent HTTP clients (httpx, asyncio), each posting batches of 500 records and
waiting for the answer before the next (as the Collector's and the SDKs' exporters do):
  1. OTLP/HTTP protobuf (ExportLogsServiceRequest, 500 log records, 4 attributes each), and
  2. JSON lines (/v1/json, 500 objects per request).
Every answer must be 200; the topic's offsets are then checked to hold every accepted record. Reported:
records/s (median of repeats, min-max) and the p99 request latency. Client, service and broker share the
machine's cores, so the figure is what one service process sustains with its load generator beside it; the
CPU each of the three used per record (the service's and the broker's process groups, this process) is
reported too: their sum bounds what the cores can carry.

    .venv/bin/python bench/ingest_bench.py [--quick] [--json OUT.json] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from measure import percentile  # noqa: E402
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest  # noqa: E402
from report import emit, median_metric  # noqa: E402

from incident_contracts.kafka import TopicSpec, end_offsets, ensure_topics, wait_for_broker  # noqa: E402
from incident_contracts.settings import inherited_env  # noqa: E402
from incident_stack.broker import free_port, start_broker  # noqa: E402

BATCH = 500
CLIENTS = 8
SERVICES = ("checkout", "payments", "search", "auth", "inventory")
START_NS = 1_796_000_000_000_000_000


def otlp_batches(count: int) -> list[bytes]:
    """`count` distinct OTLP protobuf requests of BATCH records (one resource per service)."""
    return [_build_otlp(b) for b in range(count)]


def _build_otlp(b: int) -> bytes:
    request = ExportLogsServiceRequest()
    per = BATCH // len(SERVICES)
    for s, service in enumerate(SERVICES):
        resource = request.resource_logs.add()
        for key, value in (("service.name", service), ("host.name", f"{service}-{b % 3}"),
                           ("deployment.environment.name", "prod")):
            resource.resource.attributes.add(key=key).value.string_value = value
        scope = resource.scope_logs.add()
        scope.scope.name = f"com.example.{service}"
        for i in range(per):
            n = (b * BATCH) + s * per + i
            record = scope.log_records.add(time_unix_nano=START_NS + n * 1_000_000,
                                           severity_number=9 if n % 10 else 17,
                                           trace_id=(n + 1).to_bytes(16, "big"), span_id=(n + 1).to_bytes(8, "big"))
            record.body.string_value = f"request {n} handled for user {n % 977} in {n % 250} ms"
            attrs = record.attributes
            attrs.add(key="http.request.method").value.string_value = "GET"
            attrs.add(key="url.path").value.string_value = f"/api/v1/items/{n % 100}"
            attrs.add(key="http.response.status_code").value.int_value = 200 if n % 10 else 503
            attrs.add(key="user.id").value.string_value = str(n % 977)
    return request.SerializeToString()


def json_batches(count: int) -> list[bytes]:
    """`count` distinct JSON-lines requests of BATCH objects (Vector-like: timestamp, message, host, service)."""
    out = []
    for b in range(count):
        lines = []
        for i in range(BATCH):
            n = b * BATCH + i
            service = SERVICES[n % len(SERVICES)]
            lines.append(json.dumps({"timestamp": f"2026-11-30T10:{(n // 60000) % 60:02d}:{(n // 1000) % 60:02d}."
                                                  f"{n % 1000:03d}Z",
                                     "message": f"request {n} handled for user {n % 977} in {n % 250} ms",
                                     "level": "info" if n % 10 else "error", "service": service,
                                     "host": f"{service}-{b % 3}", "source_type": "file"}))
        out.append(("\n".join(lines) + "\n").encode())
    return out


async def load(url: str, path: str, bodies: list[bytes], requests: int, content_type: str) -> tuple[float, float, int]:
    """POST `requests` bodies with CLIENTS concurrent clients; (records/s, p99 latency ms, records accepted)."""
    latencies: list[float] = []
    next_index = 0
    accepted = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal next_index, accepted
        while next_index < requests:
            body = bodies[next_index % len(bodies)]
            next_index += 1
            started = time.perf_counter()
            response = await http.post(path, content=body, headers={"Content-Type": content_type})
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {response.status_code}: {response.text[:300]}")
            accepted += BATCH

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(CLIENTS)))
        elapsed = time.perf_counter() - started
    p99 = percentile(latencies, 99) * 1000
    return accepted / elapsed, p99, accepted


def cpu_seconds(group: int) -> float:
    """User + system CPU seconds the live processes of process group `group` have used so far (Linux /proc):
    the service with its worker processes, or the broker."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process has ended
            continue
        if int(fields[2]) == group:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def start_ingest(bootstrap: str, topic: str, port: int, log: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    env = inherited_env()
    env.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap, KAFKA_TOPIC_LOGS=topic, INGEST_PORT=str(port),
               INGEST_WORKERS=str(workers),
               INGEST_HOST="127.0.0.1", INGEST_TOKEN="", LOG_LEVEL="WARNING", ENV_FILE=str(log.parent / "none.env"),
               RUNTIME_DIR=str(log.parent / "runtime"), DATA_DIR=str(log.parent / "data"))
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "incident_ingest.cli"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"log-ingest exited: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    raise RuntimeError("log-ingest did not become ready in 60 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short repeat per encoding (under 30 s)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--workers", type=int, default=1,
                        help="log-ingest processes (INGEST_WORKERS); default 1, as `make up` runs it")
    args = parser.parse_args()
    requests = 80 if args.quick else 400  # of BATCH records: 40,000 or 200,000 records per run
    repeats = 1 if args.quick else 3

    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    port = free_port()
    broker = start_broker("127.0.0.1", port, work / "broker.log")
    bootstrap = f"127.0.0.1:{port}"
    topic = f"bench.ingest.{uuid.uuid4().hex[:8]}"
    ingest = None
    samples: dict[str, list[float]] = {"otlp": [], "json": []}
    p99: dict[str, list[float]] = {"otlp": [], "json": []}
    per_core: dict[str, list[float]] = {"otlp": [], "json": []}  # records per CPU-second of the service
    # CPU microseconds per record of the service, the broker and this process (the HTTP clients)
    split: dict[str, dict[str, list[float]]] = {name: {"service": [], "broker": [], "client": []}
                                                for name in ("otlp", "json")}
    total = 0
    try:
        wait_for_broker(bootstrap, timeout=60)
        ensure_topics(bootstrap, [TopicSpec(topic, 2)])
        ingest_port = free_port()
        ingest = start_ingest(bootstrap, topic, ingest_port, work / "ingest.log", args.workers)
        url = f"http://127.0.0.1:{ingest_port}"
        distinct = min(requests, 40)
        bodies = {"otlp": (otlp_batches(distinct), "/v1/logs", "application/x-protobuf"),
                  "json": (json_batches(distinct), "/v1/json", "application/x-ndjson")}
        # Warm-up: connections, the producer's metadata, the encoder's caches.
        for payloads, path, kind in bodies.values():
            asyncio.run(load(url, path, payloads, CLIENTS, kind))
            total += CLIENTS * BATCH
        for i in range(repeats):
            for name in ("otlp", "json") if i % 2 == 0 else ("json", "otlp"):
                payloads, path, kind = bodies[name]
                before = (cpu_seconds(ingest.pid), cpu_seconds(broker.pid), time.process_time())
                rate, latency, accepted = asyncio.run(load(url, path, payloads, requests, kind))
                after = (cpu_seconds(ingest.pid), cpu_seconds(broker.pid), time.process_time())
                used = [(b - a) / accepted * 1e6 for a, b in zip(before, after, strict=True)]  # us per record
                per_core[name].append(accepted / max(1e-3, after[0] - before[0]))
                for part, us in zip(("service", "broker", "client"), used, strict=True):
                    split[name][part].append(us)
                samples[name].append(rate)
                p99[name].append(latency)
                total += accepted
                print(f"  repeat {i + 1}/{repeats} {name:<5} {rate:>10,.0f} records/s  p99 {latency:,.0f} ms  "
                      f"{per_core[name][-1]:,.0f} records per CPU-second of log-ingest; CPU us per record: "
                      f"log-ingest {used[0]:.1f}, broker {used[1]:.1f}, load generator {used[2]:.1f}", flush=True)
        written = sum(end_offsets(bootstrap, topic).values())
        if written != total:
            raise RuntimeError(f"the topic holds {written} records but {total} were acknowledged")
    finally:
        if ingest is not None:
            os.killpg(ingest.pid, signal.SIGTERM)
            ingest.wait(timeout=30)
        os.killpg(broker.pid, signal.SIGTERM)
        broker.wait(timeout=10)

    note = (f"{requests} requests of {BATCH} records, {CLIENTS} concurrent clients, acks=all, lz4, "
            f"{args.workers} log-ingest process{'es' if args.workers > 1 else ''}")
    metrics = [
        median_metric("OTLP/HTTP protobuf accepted (Kafka-acknowledged)", samples["otlp"], "records/s",
                      target=50_000, note=note),
        median_metric("OTLP/HTTP protobuf p99 request latency", p99["otlp"], "ms"),
        median_metric("OTLP/HTTP protobuf per CPU-second of log-ingest", per_core["otlp"], "records/s",
                      note="the service's own CPU time (user+system), all its threads: its cost per record"),
        median_metric("JSON lines accepted (Kafka-acknowledged)", samples["json"], "records/s", target=50_000,
                      note=note),
        median_metric("JSON lines p99 request latency", p99["json"], "ms"),
        median_metric("JSON lines per CPU-second of log-ingest", per_core["json"], "records/s"),
    ]
    for name, label in (("otlp", "OTLP/HTTP protobuf"), ("json", "JSON lines")):
        for part, who in (("service", "log-ingest"), ("broker", "the broker"), ("client", "the HTTP clients")):
            metrics.append(median_metric(f"{label}: CPU per record, {who}", split[name][part], "us",
                                         note="the 2 cores are shared by the three: their sum bounds the rate"
                                         if part == "service" else ""))
    emit("ingest", metrics, args.json, batch=BATCH, clients=CLIENTS, requests=requests, repeats=repeats,
         workers=args.workers,
         records_checked_in_topic=total, cpus=os.cpu_count(), load_average=os.getloadavg())
    return 0  # a missed target is the table's to report; a non-zero exit means the benchmark itself failed


if __name__ == "__main__":
    sys.exit(main())
