"""Planning micro-batches from checkpointed offsets: limits, new partitions, data loss (pure logic)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incident_stream.kafka_source import plan_partitions
from incident_stream.offsets import DataLossError, SourceOffset, TopicState, lag, plan_batch

TOPIC = "logs.events"


def offset(offsets: dict[int, int], topic_id: str | None = "id-1",
           starts: dict[int, int] | None = None) -> SourceOffset:
    return SourceOffset(TOPIC, topic_id, offsets, starts or {})


def state(ranges: dict[int, tuple[int, int]], topic_id: str | None = "id-1") -> TopicState:
    return TopicState(topic_id, ranges)


def test_reads_everything_available_without_a_limit() -> None:
    plan = plan_batch(offset({0: 10, 1: 0}), state({0: (0, 50), 1: (0, 7)}), None, True)
    assert plan.end.offsets == {0: 50, 1: 7}
    assert plan.end.starts == {} and plan.warnings == []


def test_no_new_records_returns_the_start_itself() -> None:
    start = offset({0: 50, 1: 7})
    assert plan_batch(start, state({0: (0, 50), 1: (0, 7)}), 100, True).end is start


def test_limit_is_spread_over_partitions_by_backlog() -> None:
    plan = plan_batch(offset({0: 0, 1: 0}), state({0: (0, 3000), 1: (0, 1000)}), 1000, True)
    assert plan.end.offsets == {0: 750, 1: 250}


@given(st.dictionaries(st.integers(0, 8), st.integers(0, 10_000), min_size=1), st.integers(1, 5_000))
def test_limit_never_exceeded_and_always_progresses(backlog: dict[int, int], limit: int) -> None:
    plan = plan_batch(offset(dict.fromkeys(backlog, 0)), state({p: (0, n) for p, n in backlog.items()}), limit, True)
    taken = {p: plan.end.offsets[p] for p in backlog}
    assert sum(taken.values()) == min(limit, sum(backlog.values()))
    assert all(0 <= taken[p] <= backlog[p] for p in backlog)


def test_new_partition_is_read_from_its_earliest_offset() -> None:
    start = offset({0: 40})
    plan = plan_batch(start, state({0: (0, 40), 1: (5, 25)}), None, True)
    assert plan.end.offsets == {0: 40, 1: 25}
    assert plan.end.starts == {1: 5}
    [task] = plan_partitions(start, plan.end)
    assert (task.partition, task.start, task.end) == (1, 5, 25)


def test_partitions_are_one_task_per_partition_range() -> None:
    start, end = offset({0: 10, 1: 20, 2: 5}), offset({0: 30, 1: 20, 2: 9})
    assert [(t.partition, t.start, t.end) for t in plan_partitions(start, end)] == [(0, 10, 30), (2, 5, 9)]


def test_offset_round_trips_through_json() -> None:
    original = offset({1: 5, 0: 7}, starts={1: 2})
    assert SourceOffset.from_json(original.to_json()) == original
    assert list(original.to_json()["offsets"]) == ["0", "1"]  # stable order: Spark compares the JSON


def test_expired_offsets_fail_by_default_with_a_clear_message() -> None:
    with pytest.raises(DataLossError, match=r"Partition 0 .* offsets 10\.\.99 expired.*failOnDataLoss=false"):
        plan_batch(offset({0: 10}), state({0: (100, 200)}), None, True)


def test_expired_offsets_continue_from_earliest_when_allowed() -> None:
    plan = plan_batch(offset({0: 10}), state({0: (100, 200)}), None, False)
    assert plan.end.starts == {0: 100} and plan.end.offsets == {0: 200}
    assert "lost" in plan.warnings[0]


def test_offsets_beyond_the_end_mean_the_topic_was_truncated_or_recreated() -> None:
    with pytest.raises(DataLossError, match="recreated or truncated"):
        plan_batch(offset({0: 5000}), state({0: (0, 100)}, topic_id=None), None, True)
    plan = plan_batch(offset({0: 5000}), state({0: (0, 100)}, topic_id=None), 60, False)
    assert plan.end.starts == {0: 0} and plan.end.offsets == {0: 60}


def test_a_recreated_topic_is_detected_by_its_id() -> None:
    with pytest.raises(DataLossError, match="deleted and recreated"):
        plan_batch(offset({0: 10, 1: 10}), state({0: (0, 500), 1: (0, 500)}, topic_id="id-2"), None, True)
    plan = plan_batch(offset({0: 10, 1: 10}), state({0: (0, 500), 1: (0, 500)}, topic_id="id-2"), None, False)
    assert plan.end.starts == {0: 0, 1: 0} and plan.end.topic_id == "id-2"


def test_a_vanished_partition_is_data_loss() -> None:
    with pytest.raises(DataLossError, match=r"Partition 1 .* no longer exists"):
        plan_batch(offset({0: 1, 1: 1}), state({0: (0, 5)}), None, True)


def test_available_now_cap_bounds_the_run() -> None:
    plan = plan_batch(offset({0: 0, 1: 0}), state({0: (0, 500), 1: (0, 500), 2: (0, 9)}), None, True,
                      cap={0: 100, 1: 120})
    assert plan.end.offsets == {0: 100, 1: 120, 2: 0}


def test_lag_counts_records_beyond_the_batch_end() -> None:
    assert lag(offset({0: 100, 1: 50}), offset({0: 90, 1: 50})) == 10
    assert lag(None, offset({0: 1})) is None
