"""Incident actions: the human-status state machine (unit + property tests) and the audit table under
concurrent writers (threads and processes)."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incident_contracts.table_store import TableStore
from incident_dashboard.actions.log import ActionLog, Record
from incident_dashboard.actions.status import (
    Action,
    ActionRefused,
    HumanStatus,
    State,
    allowed,
    apply,
    fold,
)

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _act(kind: str, minutes: float, argument: str | None = None, actor: str = "ana") -> Action:
    return Action(kind, _at(minutes), actor, argument, action_id=f"{minutes:08.2f}-{kind}")


def test_acknowledge_assign_and_resolve() -> None:
    state = fold([_act("acknowledge", 1), _act("assign", 2, "bo"), _act("note", 3, "db pool full"),
                  _act("resolve", 4, actor="bo")])
    assert state.status(_at(5)) == HumanStatus.RESOLVED
    assert state.acknowledged_by == "ana" and state.resolved_by == "bo" and state.assignee == "bo"
    assert state.actions == 4 and not state.ignored


def test_reopen_after_resolve_is_open_again_and_keeps_the_assignee() -> None:
    state = fold([_act("assign", 0, "bo"), _act("resolve", 1), _act("reopen", 2)])
    assert state.status(_at(3)) == HumanStatus.OPEN and state.assignee == "bo" and state.resolved_by is None


def test_snooze_expires_back_to_the_status_before_it() -> None:
    state = fold([_act("acknowledge", 0), _act("snooze", 1, "30")])
    assert state.status(_at(30)) == HumanStatus.SNOOZED
    assert state.label(_at(30)) == "snoozed until 2026-12-07 03:31 UTC"
    assert state.status(_at(31)) == HumanStatus.ACKNOWLEDGED
    assert fold([_act("snooze", 0, "5")]).status(_at(6)) == HumanStatus.OPEN


def test_refused_transitions_and_arguments() -> None:
    with pytest.raises(ActionRefused, match="cannot reopen an incident that is open"):
        apply(State(), _act("reopen", 0))
    resolved = apply(State(), _act("resolve", 0))
    for kind, arg in (("acknowledge", None), ("snooze", "10"), ("resolve", None)):
        with pytest.raises(ActionRefused, match="resolved"):
            apply(resolved, _act(kind, 1, arg))
    for arg in ("0", "1441", "ten", None):
        with pytest.raises(ActionRefused, match="snooze"):
            apply(State(), _act("snooze", 0, arg))
    with pytest.raises(ActionRefused, match="a note needs some text"):
        apply(State(), _act("note", 0, "  "))
    with pytest.raises(ActionRefused, match="unknown action"):
        apply(State(), _act("escalate", 0))


def test_a_concurrent_duplicate_is_skipped_and_reported() -> None:
    state = fold([_act("resolve", 1, actor="ana"), _act("resolve", 1.5, actor="bo")])
    assert state.resolved_by == "ana" and len(state.ignored) == 1 and "cannot resolve" in state.ignored[0]


def test_fold_orders_records_by_time_not_by_arrival() -> None:
    assert fold([_act("reopen", 2), _act("resolve", 1)]).status(_at(3)) == HumanStatus.OPEN


# --- property test: the fold against a plain reference model of the rules ---------------------------------
KINDS = ("acknowledge", "assign", "note", "snooze", "resolve", "reopen")
steps = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 120), st.integers(1, 90),
                           st.sampled_from(["", "ana", "bo"])), max_size=25)


def _reference(records: list[tuple[str, int, int, str]], now: datetime) -> tuple[str, str | None]:
    """The same rules written as a direct simulation over (kind, gap minutes, snooze minutes, name)."""
    base, until, assignee, clock = "open", None, None, T0
    for kind, gap, minutes, name in records:
        clock += timedelta(minutes=gap)
        snoozed = until is not None and clock < until and base != "resolved"
        current = "snoozed" if snoozed else base
        if kind == "acknowledge" and current in ("open", "snoozed"):
            base, until = "acknowledged", None
        elif kind == "assign":
            assignee = name or None
        elif kind == "snooze" and current != "resolved":
            until = clock + timedelta(minutes=minutes)
        elif kind == "resolve" and current != "resolved":
            base, until = "resolved", None
        elif kind == "reopen" and current == "resolved":
            base, until = "open", None
    status = "snoozed" if until is not None and now < until and base != "resolved" else base
    return status, assignee


@settings(max_examples=200, deadline=None)
@given(steps, st.integers(0, 200))
def test_fold_matches_the_reference_model(records: list[tuple[str, int, int, str]], later: int) -> None:
    actions, clock = [], T0
    for i, (kind, gap, minutes, name) in enumerate(records):
        clock += timedelta(minutes=gap)
        argument = {"assign": name, "note": "text", "snooze": str(minutes)}.get(kind)
        actions.append(Action(kind, clock, "ana", argument, action_id=f"{i:04d}"))
    now = clock + timedelta(minutes=later)
    state = fold(actions)
    assert (state.status(now).value, state.assignee) == _reference(records, now)
    # Invariants: resolved only through resolve; every allowed action applies; refused ones are counted.
    assert state.actions + len(state.ignored) == len(actions)
    for kind in allowed(state, now):
        apply(state, Action(kind, now, "x", {"note": "n", "snooze": "5"}.get(kind.value)))


# --- the audit table under concurrent writers -----------------------------------------------------------
WRITERS = 4
PER_WRITER = 5


def _write(root: str, writer: str) -> None:
    log = ActionLog(TableStore(root))
    for n in range(PER_WRITER):
        log.record(Record("INC-1", "note", f"user-{writer}", f"{writer}/{n}"), check=False)


def test_concurrent_threads_and_processes_append_every_record_exactly_once(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_write, args=(root, f"p{i}")) for i in range(2)]
    threads = [threading.Thread(target=_write, args=(root, f"t{i}")) for i in range(WRITERS - 2)]
    for worker in (*processes, *threads):
        worker.start()
    for worker in (*processes, *threads):
        worker.join(timeout=60)
    assert all(p.exitcode == 0 for p in processes), [p.exitcode for p in processes]
    notes = ActionLog(TableStore(root)).frame()["argument"].tolist()
    expected = [f"{w}/{n}" for w in ("p0", "p1", "t0", "t1") for n in range(PER_WRITER)]
    assert sorted(notes) == sorted(expected)  # every record, none twice
    assert TableStore(root).open("incident_actions").version() >= WRITERS * PER_WRITER


def test_record_stores_who_when_and_the_state_at_that_moment(tmp_path: Path) -> None:
    log = ActionLog(TableStore(str(tmp_path / "data")))
    log.record(Record("INC-9", "acknowledge", "ana", detector_status="open", detector_severity="P1",
                      detector_update_seq=3), now=_at(0))
    row = log.record(Record("INC-9", "assign", " bo ", "carla", actor_source="login"), now=_at(1))
    assert row["human_status"] == "acknowledged" and row["assignee"] is None and row["actor"] == "bo"
    with pytest.raises(ActionRefused, match="cannot acknowledge"):
        log.record(Record("INC-9", "acknowledge", "ana"), now=_at(2))
    with pytest.raises(ActionRefused, match="say who you are"):
        log.record(Record("INC-9", "note", " ", "x"))
    frame = log.for_incident("INC-9")
    assert frame["action"].tolist() == ["acknowledge", "assign"]
    assert frame["detector_severity"].tolist()[0] == "P1" and frame["actor_source"].tolist() == ["typed", "login"]
    assert log.state("INC-9").assignee == "carla"
    assert log.filter_ids(("acknowledged",), _at(3)) == (("INC-9",), ())
    assert log.filter_ids(("open",), _at(3)) == (None, ("INC-9",))
