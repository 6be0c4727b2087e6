"""The human status of an incident, computed from its audit records (pure: no I/O, no clock).

The detector's lifecycle (``incident_updates``: open / resolved, severity) says what the data shows; the
human status says what the responders did about it. They are kept apart: a responder may resolve an
incident the detector still sees, and the detector may resolve one nobody acknowledged.

States (``HumanStatus``): ``open`` (nobody acted yet, or reopened), ``acknowledged``, ``snoozed`` (until a
time; afterwards the status it had before the snooze), ``resolved``. The assignee is separate from the
status. Transitions (:func:`apply`):

==============  ==========================================  ===========================
action          allowed when                                 gives
==============  ==========================================  ===========================
acknowledge     open, snoozed                                acknowledged (ends a snooze)
assign NAME     any                                          assignee NAME ("" unassigns)
note TEXT       any                                          no change
snooze N        open, acknowledged, snoozed; 1 <= N <= 1440  snoozed until time + N min
resolve         open, acknowledged, snoozed                  resolved (ends a snooze)
reopen          resolved                                     open
==============  ==========================================  ===========================

A record that is not allowed in the state it finds (two people resolved at once; the second record
arrives after the first) changes nothing: :func:`fold` skips it and says so in ``State.ignored``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from incident_contracts.tables import ActionKind

MAX_SNOOZE_MINUTES = 24 * 60
MAX_NAME_LENGTH = 100
MAX_NOTE_LENGTH = 2000


class HumanStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


HUMAN_STATUSES = tuple(s.value for s in HumanStatus)


class ActionRefused(ValueError):
    """The action is not allowed in the incident's current human status, or its argument is invalid."""


@dataclass(frozen=True)
class Action:
    """One audit record, as far as the status is concerned."""

    action: str  # ActionKind
    time: datetime
    actor: str
    argument: str | None = None
    action_id: str = ""


@dataclass(frozen=True)
class State:
    """The human status after some actions. ``base`` is the status outside a snooze; while
    ``snoozed_until`` is in the future the status is ``snoozed``."""

    base: HumanStatus = HumanStatus.OPEN
    snoozed_until: datetime | None = None
    assignee: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    last_action_at: datetime | None = None
    actions: int = 0
    ignored: tuple[str, ...] = field(default=())  # why records were skipped

    def status(self, now: datetime) -> HumanStatus:
        """The status at ``now``: a snooze is over once its time has come."""
        if self.snoozed_until is not None and now < self.snoozed_until and self.base != HumanStatus.RESOLVED:
            return HumanStatus.SNOOZED
        return self.base

    def label(self, now: datetime) -> str:
        status = self.status(now)
        if status == HumanStatus.SNOOZED:
            return f"snoozed until {self.snoozed_until:%Y-%m-%d %H:%M} UTC"
        return status.value


def snooze_minutes(argument: str | None) -> int:
    """The minutes of a snooze argument; ActionRefused when it is not a whole number in range."""
    try:
        minutes = int(str(argument).strip())
    except (TypeError, ValueError):
        raise ActionRefused(f"snooze needs a whole number of minutes, got {argument!r}") from None
    if not 1 <= minutes <= MAX_SNOOZE_MINUTES:
        raise ActionRefused(f"snooze between 1 and {MAX_SNOOZE_MINUTES} minutes, got {minutes}")
    return minutes


def check_argument(kind: str, argument: str | None) -> str | None:
    """The argument the action stores (trimmed), or ActionRefused with what is wrong with it."""
    try:
        kind = ActionKind(kind)
    except ValueError:
        raise ActionRefused(f"unknown action {kind!r}; expected one of {', '.join(ActionKind)}") from None
    text = (argument or "").strip()
    if kind == ActionKind.ASSIGN:
        if len(text) > MAX_NAME_LENGTH:
            raise ActionRefused(f"an assignee's name has at most {MAX_NAME_LENGTH} characters")
        return text
    if kind == ActionKind.NOTE:
        if not text:
            raise ActionRefused("a note needs some text")
        if len(text) > MAX_NOTE_LENGTH:
            raise ActionRefused(f"a note has at most {MAX_NOTE_LENGTH} characters")
        return text
    if kind == ActionKind.SNOOZE:
        return str(snooze_minutes(text))
    return None


def allowed(state: State, now: datetime) -> list[ActionKind]:
    """The actions allowed at ``now`` (for the page's choices)."""
    status = state.status(now)
    if status == HumanStatus.RESOLVED:
        return [ActionKind.REOPEN, ActionKind.ASSIGN, ActionKind.NOTE]
    kinds = [ActionKind.ACKNOWLEDGE] if status != HumanStatus.ACKNOWLEDGED else []
    return [*kinds, ActionKind.ASSIGN, ActionKind.NOTE, ActionKind.SNOOZE, ActionKind.RESOLVE]


def apply(state: State, action: Action) -> State:
    """The state after ``action``; ActionRefused when the action is not allowed in ``state``."""
    argument = check_argument(action.action, action.argument)
    kind = ActionKind(action.action)
    now = action.time
    if kind not in allowed(state, now):
        raise ActionRefused(f"cannot {kind.value} an incident that is {state.label(now)}")
    done = replace(state, last_action_at=now, actions=state.actions + 1)
    if kind == ActionKind.ACKNOWLEDGE:
        return replace(done, base=HumanStatus.ACKNOWLEDGED, snoozed_until=None, acknowledged_by=action.actor,
                       acknowledged_at=now)
    if kind == ActionKind.ASSIGN:
        return replace(done, assignee=argument or None)
    if kind == ActionKind.SNOOZE:
        return replace(done, snoozed_until=now + timedelta(minutes=int(argument or 0)))
    if kind == ActionKind.RESOLVE:
        return replace(done, base=HumanStatus.RESOLVED, snoozed_until=None, resolved_by=action.actor,
                       resolved_at=now)
    if kind == ActionKind.REOPEN:
        return replace(done, base=HumanStatus.OPEN, snoozed_until=None, resolved_by=None, resolved_at=None,
                       acknowledged_by=None, acknowledged_at=None)
    return done  # a note


def fold(actions: Iterable[Action], state: State | None = None) -> State:
    """The state after the records in time order (ties by action id); refused records are skipped."""
    state = state or State()
    for action in sorted(actions, key=lambda a: (a.time, a.action_id)):
        try:
            state = apply(state, action)
        except ActionRefused as exc:
            state = replace(state, ignored=(*state.ignored, f"{action.action_id or action.action}: {exc}"))
    return state
