"""The schema registration entry point of the distributed stack's `kafka-init` service.

The registry side is a local HTTP server answering like a Confluent Schema Registry (no registry can
be installed here); the topic side uses the real embedded broker.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from incident_contracts import avro_schemas
from incident_contracts.kafka import partitions_of
from incident_contracts.register_schema import build_parser, main, subject_for
from incident_contracts.settings import load_settings
from incident_stack.broker import free_port


class FakeRegistry:
    """Answers POST /subjects/<subject>/versions like the Confluent Schema Registry."""

    def __init__(self, status: int = 200, schema_id: int = 7):
        self.status = status
        self.schema_id = schema_id
        self.requests: list[tuple[str, str, dict]] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                registry.requests.append((self.path, self.headers["Content-Type"], body))
                if registry.status == 200:
                    answer = {"id": registry.schema_id}
                else:
                    answer = {"error_code": registry.status, "message": "Schema being registered is incompatible"}
                payload = json.dumps(answer).encode()
                self.send_response(registry.status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeRegistry:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    with FakeRegistry() as fake:
        yield fake


def test_defaults_come_from_the_settings(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "http://schema-registry:8081")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:29092")
    monkeypatch.setenv("KAFKA_TOPIC_PARTITIONS", "6")
    args = build_parser(load_settings()).parse_args([])
    assert args.registry_url == "http://schema-registry:8081"
    assert args.bootstrap_servers == "kafka:29092"
    assert args.topic == "logs.events"
    assert args.partitions == 6
    assert args.replication_factor == 1
    assert not args.no_topics


def test_arguments_override_the_settings(isolated_env: Path) -> None:
    args = build_parser(load_settings()).parse_args(
        ["--registry-url", "http://r:1", "--topic", "t", "--partitions", "3", "--wait", "0", "--no-topics"])
    assert (args.registry_url, args.topic, args.partitions, args.wait, args.no_topics) == (
        "http://r:1", "t", 3, 0.0, True)


@pytest.mark.parametrize("bad", [["--partitions", "0"], ["--wait", "-1"], ["--replication-factor", "x"]])
def test_bad_arguments_are_rejected(isolated_env: Path, bad: list[str],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser(load_settings()).parse_args(bad)
    assert exit_info.value.code == 2
    assert bad[0] in capsys.readouterr().err


def test_registers_the_newest_schema_under_the_topic_subject(
        isolated_env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--registry-url", registry.url, "--topic", "logs.events", "--no-topics", "--wait", "0"])
    assert code == 0
    assert len(registry.requests) == 1
    path, content_type, body = registry.requests[0]
    assert path == "/subjects/logs.events-value/versions"
    assert content_type == "application/vnd.schemaregistry.v1+json"
    assert body["schemaType"] == "AVRO"
    assert json.loads(body["schema"]) == avro_schemas.latest().raw
    out = capsys.readouterr().out
    assert f"LogEvent v{avro_schemas.latest().version} as id 7" in out


def test_an_incompatible_schema_fails_at_once_with_the_registry_answer(
        isolated_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeRegistry(status=409) as registry:
        code = main(["--registry-url", registry.url, "--no-topics", "--wait", "30"])
        assert len(registry.requests) == 1, "a final HTTP error must not be retried"
    assert code == 1
    err = capsys.readouterr().err
    assert "409" in err and "incompatible" in err and subject_for("logs.events") in err


def test_an_unreachable_registry_is_retried_then_named(isolated_env: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code = main(["--registry-url", url, "--no-topics", "--wait", "1.5"])
    assert code == 1
    err = capsys.readouterr().err
    assert url in err and "SCHEMA_REGISTRY_URL" in err


def test_without_a_registry_there_is_nothing_to_register(isolated_env: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--no-topics"]) == 0
    assert "single-object encoding" in capsys.readouterr().out


def test_a_bad_setting_exits_with_the_variable_named(isolated_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "schema-registry:8081")
    assert main([]) == 2
    assert "SCHEMA_REGISTRY_URL=" in capsys.readouterr().err


@pytest.mark.integration
def test_creates_the_topic_and_registers_on_a_real_broker(isolated_env: Path, broker: str,
                                                          registry: FakeRegistry) -> None:
    topic = f"test.init.{uuid.uuid4().hex[:8]}"
    args = ["--bootstrap-servers", broker, "--registry-url", registry.url, "--topic", topic,
            "--partitions", "3", "--wait", "10"]
    assert main(args) == 0
    assert partitions_of(broker, topic) == [0, 1, 2]
    assert registry.requests[0][0] == f"/subjects/{topic}-value/versions"
    assert main(args) == 0, "running it again must be harmless"
    assert len(registry.requests) == 2


def test_an_unreachable_broker_fails_with_a_message(isolated_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--bootstrap-servers", f"127.0.0.1:{free_port()}", "--wait", "1"])
    assert code == 1
    assert "could not create topic 'logs.events'" in capsys.readouterr().err
