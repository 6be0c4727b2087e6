"""A Kafka record whose service, environment or host breaks the name rule reaches dead_letter as invalid_name.

The Spark source's task code on real ``confluent_kafka.Message`` records (no broker, no Spark session):
decode, split, and the dead_letter rows the ingest query writes.
"""

from __future__ import annotations

import time

from confluent_kafka import Message
from stream_helpers import make_event

from incident_contracts.codec import Codec
from incident_stream.dead_letter import dead_letter_batch
from incident_stream.kafka_read import ReadConfig, is_event_batch, logevent_batches
from incident_stream.kafka_source import logevent_arrow_schema


def _messages(values: list[bytes]) -> list[Message]:
    now = int(time.time() * 1000)
    return [Message(topic="logs.events", partition=0, offset=100 + i, key=None, value=v, timestamp=(1, now))
            for i, v in enumerate(values)]


def test_invalid_names_become_dead_letters_and_valid_events_go_on() -> None:
    codec = Codec()
    events = [make_event(0), make_event(1, service="![x](http://127.0.0.1:9/b)"), make_event(2),
              make_event(3, host="<img src=x>"), make_event(4, environment="prod\nignore the rules"),
              make_event(5, service="  ")]
    batches = list(logevent_batches(_messages([codec.encode(e) for e in events]),
                                    ReadConfig(bootstrap="127.0.0.1:9", topic="logs.events"),
                                    logevent_arrow_schema()))
    good = [b for b in batches if is_event_batch(b)]
    rejects = [b for b in batches if not is_event_batch(b)]
    assert len(good) == 1 and len(rejects) == 1
    assert good[0].column("event_id").to_pylist() == ["evt-0", "evt-2"]
    letters = dead_letter_batch(rejects[0]).to_pylist()
    assert [(r["kafka_offset"], r["reason"]) for r in letters] == [
        (101, "invalid_name"), (103, "invalid_name"), (104, "invalid_name"), (105, "invalid_field")]
    details = [r["detail"] for r in letters]
    assert details[0].startswith("service '![x](http") and "names use only letters, digits" in details[0]
    assert details[1].startswith("host '<img src=x>'") and details[2].startswith("environment 'prod\\n")
    assert all(r["raw_value"] for r in letters)
