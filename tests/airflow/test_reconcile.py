"""Reconciliation logic: every offset of a run's range in events or dead_letter exactly once."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from incident_airflow.reconcile import ProducerReport, check_partition, missing_ranges, reconcile


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


# --- gaps: offsets where Kafka holds no committed record ---------------------------------------------

def test_offsets_without_a_record_in_kafka_are_gaps_not_losses():
    # Offsets 3 and 7-8 are in neither table; Kafka says it holds no committed record there
    # (a transaction marker, the records of an aborted transaction).
    events, dead = {0: [0, 1, 2, 4, 5, 6]}, {0: [9]}
    assert not reconcile("logs", {0: (0, 10)}, events, dead).ok  # without asking Kafka: lost
    assert missing_ranges({0: (0, 10)}, events, dead) == {0: [(3, 3), (7, 8)]}
    result = reconcile("logs", {0: (0, 10)}, events, dead, ProducerReport(delivered=7, per_partition={0: 7}),
                       gaps={0: [(3, 3), (7, 8)]})
    assert result.ok, result.describe()
    assert (result.expected, result.gaps, result.missing) == (7, 3, 0)
    assert result.partitions[0].gap_ranges == ((3, 3), (7, 8))
    (note,) = result.notes  # the producer check counts records, not offsets: no "another producer" note
    assert note.startswith("partition 0: 3 offsets hold no committed record in Kafka") and "offsets 3, 7-8" in note
    assert "7 records in this run's offset ranges (and 3 offsets without a committed record)" in result.describe()
    assert result.to_dict()["gaps"] == 3 and result.to_dict()["partitions"]["0"]["gaps"] == 3


def test_an_offset_kafka_holds_a_record_for_is_still_missing():
    # Kafka answered for 3-5 and found records at 4 and 5: only 3 is a gap.
    result = reconcile("logs", {0: (0, 8), 1: (0, 2)}, {0: [0, 1, 2, 6, 7], 1: [0]}, {},
                       gaps={0: [(3, 3)]})
    assert not result.ok
    assert (result.missing, result.gaps) == (3, 1)
    assert result.problems[0] == ("partition 0: 2 of 7 records are in neither events nor dead_letter (offsets 4-5; "
                                  "Kafka shows no gap in its log there)")
    assert result.problems[1].startswith("partition 1: 1 of 2 records")


def test_gaps_outside_the_range_or_on_rows_found_do_not_count():
    check = check_partition(0, 10, 20, range(10, 20), [], gaps=[(0, 12), (19, 25)])
    assert check.ok and check.gaps == 0 and check.expected == 10
    check = check_partition(0, 10, 20, [10, 11, 13], [], gaps=[(5, 12), (14, 30)])
    assert (check.gaps, check.missing, check.gap_ranges) == (7, 0, ((12, 12), (14, 19)))


def test_delivered_records_beyond_the_records_of_the_range_are_missing_from_the_topic():
    result = reconcile("logs", {0: (0, 6)}, {0: [0, 1, 2, 3]}, {}, ProducerReport(delivered=6, per_partition={0: 6}),
                       gaps={0: [(4, 5)]})
    assert not result.ok
    assert result.problems == ("partition 0: the generator delivered 6 records but the topic grew by only 4 (offsets "
                               "[0, 6), 2 of them without a committed record): 2 records missing from the topic",)


def test_missing_ranges_lists_every_range_to_ask_about():
    present = [o for o in range(0, 100) if o % 10]
    assert missing_ranges({2: (0, 100), 3: (5, 5)}, {2: present}, {}) == {2: [(o, o) for o in range(0, 100, 10)]}
    assert missing_ranges({2: (0, 100)}, {2: present}, {2: range(0, 100, 10)}) == {}


@settings(max_examples=200, deadline=None)
@given(start=st.integers(0, 1_000), length=st.integers(0, 200), data=st.data())
def test_every_offset_is_a_row_a_gap_or_missing(start, length, data):
    end = start + length
    offsets = data.draw(st.lists(st.integers(max(0, start - 10), end + 10), max_size=250))
    gap_ranges = data.draw(st.lists(st.tuples(st.integers(max(0, start - 10), end + 10), st.integers(0, 5)).map(
        lambda t: (t[0], t[0] + t[1])), max_size=10))
    check = check_partition(1, start, end, offsets, [], gaps=gap_ranges)
    rows = {o for o in offsets if start <= o < end}
    gaps = {o for first, last in gap_ranges for o in range(first, last + 1) if start <= o < end} - rows
    assert check.gaps == len(gaps)
    assert check.missing == length - len(rows) - len(gaps)
    assert check.expected == length - len(gaps)
    for first, last in check.missing_ranges:
        assert not (rows | gaps) & set(range(first, last + 1))
    assert set().union(*(set(range(a, b + 1)) for a, b in check.gap_ranges)) <= gaps
