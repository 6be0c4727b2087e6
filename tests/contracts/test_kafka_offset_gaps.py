"""Offsets on Apache Kafka with transactions and deleted records: the two ends, and offsets without records."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka_gaps import GapWriter, delete_before, settle

from incident_contracts.kafka import READ_COMMITTED, end_offsets, offset_range, offsets_without_records

pytestmark = pytest.mark.integration


def test_an_open_transaction_holds_the_read_committed_end_at_its_first_offset(broker: str, topic: str) -> None:
    writer = GapWriter(broker, topic)
    writer.plain([(0, b"before-%d" % i) for i in range(5)])
    writer.begin([(0, b"open-%d" % i) for i in range(3)])
    writer.plain([(0, b"after-%d" % i) for i in range(2)])  # behind the open transaction

    assert offset_range(broker, topic) == {0: (0, 10), 1: (0, 0)}  # high watermark: every record written
    assert end_offsets(broker, topic) == {0: 10, 1: 0}
    assert offset_range(broker, topic, isolation=READ_COMMITTED) == {0: (0, 5), 1: (0, 0)}  # the LSO
    # librdkafka's own watermark query answers at the consumer's isolation level (read_committed by default).
    probe = Consumer({"bootstrap.servers": broker, "group.id": "watermarks"})
    assert probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 5)
    probe.close()

    writer.end(commit=True)
    assert settle(broker, topic) == {0: (0, 11), 1: (0, 0)}  # the commit marker took offset 10


def test_offsets_without_records_are_markers_and_aborted_records(broker: str, topic: str) -> None:
    writer = GapWriter(broker, topic)
    for round_ in range(3):
        writer.plain([(p, b"plain-%d-%d" % (round_, i)) for p in (0, 1) for i in range(3)])
        writer.transaction([(p, b"kept-%d-%d" % (round_, i)) for p in (0, 1) for i in range(2)], commit=True)
        writer.transaction([(0, b"dropped-%d-%d" % (round_, i)) for i in range(4)], commit=False)
    ends = settle(broker, topic)

    gaps = offsets_without_records(broker, topic, {p: [(0, high - 1)] for p, (_, high) in ends.items()})
    for p, (_, high) in ends.items():
        expected = sorted(set(range(high)) - set(writer.committed[p]))
        found = sorted(o for first, last in gaps.get(p, []) for o in range(first, last + 1))
        assert found == expected, f"partition {p}"
    assert set(writer.aborted[0]) <= {o for first, last in gaps[0] for o in range(first, last + 1)}
    # Only what is asked is answered: a range of committed records has no gap, a lone marker is one.
    first_committed = min(writer.committed[1])
    marker = next(o for o in range(ends[1][1]) if o not in writer.committed[1])
    assert offsets_without_records(broker, topic, {1: [(first_committed, first_committed), (marker, marker)]}) == {
        1: [(marker, marker)]}


def test_offsets_kafka_cannot_answer_for_are_not_gaps(broker: str, topic: str) -> None:
    writer = GapWriter(broker, topic)
    writer.plain([(0, b"old-%d" % i) for i in range(10)])
    writer.transaction([(0, b"dropped-%d" % i) for i in range(3)], commit=False)  # offsets 10-12, marker 13
    settle(broker, topic)
    delete_before(broker, topic, 0, 5)
    writer.begin([(0, b"open-%d" % i) for i in range(2)])  # offsets 14-15, beyond the LSO while open
    try:
        # Below the log start (deleted: were they records?) and beyond the LSO (open): no answer.
        assert offsets_without_records(broker, topic, {0: [(0, 15)]}) == {0: [(10, 13)]}
    finally:
        writer.end(commit=False)
