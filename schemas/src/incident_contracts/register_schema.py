"""`python -m incident_contracts.register_schema`: register the LogEvent schema and create the log topic.

Run once when a stack with a Schema Registry starts (the `kafka-init` service of docker-compose.yml),
so that the schema is registered under `<topic>-value` before the first event is produced, the Kafka
UI can decode the topic, and the topic exists with its configured partitions. Without a registry
(SCHEMA_REGISTRY_URL empty) it only creates the topic. Safe to run again: both steps are idempotent.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
from collections.abc import Sequence

from incident_contracts import avro_schemas
from incident_contracts.kafka import BrokerUnavailable, TopicSpec, ensure_topics, wait_for_broker
from incident_contracts.registry import RegistryUnavailable, SchemaRegistry
from incident_contracts.settings import Settings, SettingsError, load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m incident_contracts.register_schema",
        description="Register the newest LogEvent Avro schema in the Schema Registry and create the log "
                    "topic. Defaults come from the settings (environment, .env).",
    )
    parser.add_argument("--registry-url", default=settings.schema_registry_url,
                        help="Schema Registry URL (default: SCHEMA_REGISTRY_URL; empty skips registration)")
    parser.add_argument("--bootstrap-servers", default=settings.kafka_bootstrap_servers,
                        help="Kafka brokers (default: KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--topic", default=settings.kafka_topic_logs, help="log topic (default: KAFKA_TOPIC_LOGS)")
    parser.add_argument("--partitions", type=_positive_int, default=settings.kafka_topic_partitions,
                        help="partitions when the topic is created (default: KAFKA_TOPIC_PARTITIONS)")
    parser.add_argument("--replication-factor", type=_positive_int, default=settings.kafka_replication_factor,
                        help="replication factor when the topic is created (default: KAFKA_REPLICATION_FACTOR)")
    parser.add_argument("--wait", type=_non_negative_float, default=60.0, metavar="SECONDS",
                        help="how long to keep retrying while the broker or the registry is still starting")
    parser.add_argument("--no-topics", action="store_true", help="only register the schema")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more seconds, got {text}")
    return value


def subject_for(topic: str) -> str:
    """The Confluent TopicNameStrategy subject of a topic's values."""
    return f"{topic}-value"


def register_latest(registry_url: str, subject: str, wait: float) -> tuple[int, int]:
    """Register the newest schema version; retry while the registry is unreachable. Returns (id, version)."""
    schema = avro_schemas.latest()
    registry = SchemaRegistry(registry_url, subject=subject)
    deadline = time.monotonic() + wait
    while True:
        try:
            return registry.register(schema), schema.version
        except RegistryUnavailable as exc:
            # Only an unreachable registry is worth retrying; an HTTP error answer (409 incompatible) is final.
            if isinstance(exc.__cause__, urllib.error.HTTPError) or time.monotonic() >= deadline:
                raise
            time.sleep(1.0)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    args = build_parser(settings).parse_args(argv)
    registry_url = args.registry_url.strip().rstrip("/")

    if not args.no_topics:
        try:
            wait_for_broker(args.bootstrap_servers, timeout=max(args.wait, 1.0))
            outcome = ensure_topics(args.bootstrap_servers, [TopicSpec(args.topic, args.partitions,
                                                                       args.replication_factor)])
        except (BrokerUnavailable, RuntimeError) as exc:
            print(f"error: could not create topic {args.topic!r}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        for topic, what in outcome.items():
            print(f"topic {topic}: {what}")

    if not registry_url:
        print("no Schema Registry configured (SCHEMA_REGISTRY_URL is empty): producers use Avro "
              "single-object encoding, nothing to register")
        return EXIT_OK
    subject = subject_for(args.topic)
    try:
        schema_id, version = register_latest(registry_url, subject, args.wait)
    except RegistryUnavailable as exc:
        print(f"error: could not register the LogEvent schema under {subject!r}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"schema registry {registry_url}: subject {subject} has LogEvent v{version} as id {schema_id}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
