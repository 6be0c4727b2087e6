"""log-ingest across a restart of its Kafka broker: a shipper that retries what it is refused loses nothing.

A one-node Kafka of this test's own is stopped (SIGTERM) and started again on the same port and log
directory while a sender posts JSON lines without pause, retrying a refused request (503/429, or no
answer) with the same body, as Fluent Bit and Vector do. Afterwards every record of every request is in
the topic, the records the service answered 2xx for included, and each record's copies (a refused request
can land and then be sent again) carry one event id. Integration: about 30 s (two broker starts).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from ingest_helpers import read_events, start_server

from incident_contracts.kafka import TopicSpec, end_offsets, ensure_topics, wait_for_broker
from incident_stack.broker import KafkaNode, cluster_id_for, free_port, launch, prepare_node

pytestmark = pytest.mark.integration

REQUESTS, PER_REQUEST = 60, 50


def _start(node: KafkaNode, log: Path) -> subprocess.Popen[bytes]:
    prepare_node(node, [node], cluster_id_for(node.home))
    process = launch(node, log)
    wait_for_broker(node.bootstrap, timeout=60)
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _body(request: int) -> str:
    return "\n".join(json.dumps({"message": f"r{request} e{i}", "service": "billing",
                                 "timestamp": 1_796_000_000_000 + request * PER_REQUEST + i})
                     for i in range(PER_REQUEST))


def test_records_sent_across_a_broker_restart_are_all_in_the_topic(tmp_path: Path) -> None:
    node = KafkaNode(1, "127.0.0.1", free_port(), free_port(), tmp_path / "kafka")
    log = tmp_path / "kafka.log"
    broker = _start(node, log)
    topic = "restart.logs"
    ensure_topics(node.bootstrap, [TopicSpec(topic, partitions=2)])
    server = start_server(kafka_bootstrap_servers=node.bootstrap, kafka_topic_logs=topic,
                          ingest_delivery_timeout_seconds=3.0)
    answers: dict[int, list[int]] = {}  # request -> the status of each attempt
    sent_half = threading.Event()

    def ship() -> None:
        with httpx.Client(timeout=20) as client:
            for request in range(REQUESTS):
                deadline = time.monotonic() + 120
                while True:
                    try:
                        status = client.post(f"{server.url}/v1/json", content=_body(request)).status_code
                    except httpx.TransportError:
                        status = 0
                    answers.setdefault(request, []).append(status)
                    if status == 200 or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                if request == REQUESTS // 3:
                    sent_half.set()
                time.sleep(0.05)

    shipper = threading.Thread(target=ship, daemon=True)
    try:
        shipper.start()
        assert sent_half.wait(60), "the shipper sent nothing"
        _stop(broker)
        time.sleep(2)  # requests meanwhile meet no broker
        broker = _start(node, log)
        shipper.join(timeout=240)
        assert not shipper.is_alive(), "the shipper did not finish within 240 s of the restart"

        assert all(attempts[-1] == 200 for attempts in answers.values()), answers
        refused = {r: a for r, a in answers.items() if len(a) > 1}
        assert refused, "no request was refused: the restart did not happen while the shipper sent"
        written = read_events(node.bootstrap, topic, sum(end_offsets(node.bootstrap, topic).values()), timeout=30)
        expected = {f"r{r} e{i}" for r in range(REQUESTS) for i in range(PER_REQUEST)}
        assert {e["message"] for e in written} == expected  # nothing lost
        ids: dict[str, set[str]] = {}
        for event in written:
            ids.setdefault(event["message"], set()).add(event["event_id"])
        assert all(len(found) == 1 for found in ids.values())  # a retry's copies are one event
        duplicated = len(written) - len(expected)
        assert duplicated <= len(refused) * PER_REQUEST * max(len(a) for a in refused.values())
        print(f"\n{REQUESTS * PER_REQUEST} records in {REQUESTS} requests; {len(refused)} requests refused during "
              f"the restart and sent again; {len(written)} records in the topic, {duplicated} copies of retried ones")
    finally:
        server.stop()
        _stop(broker)
