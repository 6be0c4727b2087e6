"""Reconciliation logic: every offset of a run's range in events or dead_letter exactly once."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from incident_airflow.reconcile import ProducerReport, check_partition, reconcile


def test_complete_run_passes():
    result = reconcile("logs", {0: (10, 20), 1: (0, 5)},
                       {0: range(10, 18), 1: range(0, 5)}, {0: [18, 19]},
                       ProducerReport(delivered=15, per_partition={0: 10, 1: 5}))
    assert result.ok, result.describe()
    assert (result.expected, result.events, result.dead_letters) == (15, 13, 2)
    assert "PASSED" in result.describe()


def test_rows_outside_the_range_are_ignored():
    result = reconcile("logs", {0: (100, 103)}, {0: [5, 99, 100, 101, 102, 103, 500]}, {})
    assert result.ok
    assert result.events == 3


def test_missing_offsets_are_named_by_partition_and_range():
    result = reconcile("logs", {0: (0, 10), 1: (0, 4)}, {0: [0, 1, 2, 5, 6, 9], 1: [0, 1, 2, 3]}, {})
    assert not result.ok
    assert result.missing == 4
    (problem,) = result.problems
    assert problem.startswith("partition 0: 4 of 10 records")
    assert "offsets 3-4, 7-8" in problem


def test_a_deleted_file_shows_as_a_gap_at_the_end():
    result = reconcile("logs", {1: (50, 60)}, {1: range(50, 55)}, {})
    assert result.partitions[0].missing_ranges == ((55, 59),)
    assert "offsets 55-59" in result.problems[0]


def test_duplicates_within_and_across_tables_are_named():
    result = reconcile("logs", {0: (0, 5)}, {0: [0, 1, 1, 2, 3]}, {0: [3, 4]})
    assert not result.ok
    assert result.duplicates == 2
    assert result.missing == 0
    assert "duplicated offsets 1, 3" in result.problems[0]


def test_delivery_failures_fail_the_run():
    result = reconcile("logs", {0: (0, 3)}, {0: [0, 1, 2]}, {}, ProducerReport(delivered=3, failed=2))
    assert not result.ok
    assert "could not deliver 2 events" in result.problems[0]


def test_records_missing_from_the_topic_fail_the_run():
    result = reconcile("logs", {0: (0, 3), 1: (0, 2)}, {0: [0, 1, 2], 1: [0, 1]}, {},
                       ProducerReport(delivered=7, per_partition={0: 5, 1: 2}))
    assert not result.ok
    assert "partition 0: the generator delivered 5 records but the topic grew by only 3" in result.problems[0]


def test_another_producer_is_a_note_not_a_failure():
    result = reconcile("logs", {0: (0, 6)}, {0: range(6)}, {}, ProducerReport(delivered=4))
    assert result.ok
    assert "2 more than this run produced" in result.notes[0]


def test_empty_range_and_end_before_start():
    assert check_partition(0, 7, 7, [], []).ok
    try:
        check_partition(0, 8, 7, [], [])
    except ValueError as exc:
        assert "before start" in str(exc)
    else:
        raise AssertionError("an end before the start must be refused")


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 1_000_000),
    length=st.integers(0, 300),
    data=st.data(),
)
def test_counts_match_a_direct_computation(start, length, data):
    end = start + length
    offsets = data.draw(st.lists(st.integers(max(0, start - 20), end + 20), max_size=400))
    split = data.draw(st.integers(0, len(offsets)))
    events, dead = offsets[:split], offsets[split:]
    check = check_partition(3, start, end, np.array(events, dtype=np.int64), dead)
    inside = [o for o in offsets if start <= o < end]
    assert check.in_events + check.in_dead_letter == len(inside)
    assert check.unique == len(set(inside))
    assert check.missing == length - len(set(inside))
    assert check.duplicates == len(inside) - len(set(inside))
    covered = set(inside)
    for first, last in check.missing_ranges:
        assert start <= first <= last < end
        assert not covered & set(range(first, last + 1))
    if check.missing and len(check.missing_ranges) < 5:
        assert sum(last - first + 1 for first, last in check.missing_ranges) == check.missing
    assert check.ok == (check.missing == 0 and check.duplicates == 0)
