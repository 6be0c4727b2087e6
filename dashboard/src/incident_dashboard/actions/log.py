"""The ``incident_actions`` table: appending audit records and reading them back.

Every action is one row appended with ``TableStore.append`` in its own Delta commit. Several dashboard
processes (or threads of one) may append at the same moment: Delta's optimistic concurrency makes each
commit take the next log version, and a writer that loses the race commits again on the new version
(appends read nothing, so they never conflict logically). No record is lost or doubled.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from incident_contracts.table_store import TableStore
from incident_contracts.tables import TABLES
from incident_dashboard.actions.status import Action, ActionRefused, State, apply, check_argument, fold

TABLE = "incident_actions"
MAX_CREATE_ATTEMPTS = 5


@dataclass(frozen=True)
class Record:
    """An action about to be written, with the incident's state at that moment."""

    incident_id: str
    action: str
    actor: str
    argument: str | None = None
    actor_source: str = "typed"
    detector_status: str | None = None
    detector_severity: str | None = None
    detector_update_seq: int | None = None


class ActionLog:
    """Audit records of one DATA_DIR. Reads are cached per table version."""

    def __init__(self, store: TableStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cache: tuple[int, pd.DataFrame] | None = None

    # --- writing ------------------------------------------------------------------------
    def record(self, record: Record, now: datetime | None = None, *, check: bool = True) -> dict[str, Any]:
        """Append one audit record; returns the row written. With ``check`` (the default) an action the
        incident's current human status does not allow raises ActionRefused and writes nothing."""
        actor = (record.actor or "").strip()
        if not actor:
            raise ActionRefused("say who you are first: a name is needed for the audit trail")
        argument = check_argument(record.action, record.argument)
        now = now or datetime.now(UTC)
        before = self.state(record.incident_id)
        action = Action(record.action, now, actor, argument)
        if check:
            apply(before, action)  # raises ActionRefused
        row = {
            "action_id": uuid.uuid4().hex, "incident_id": record.incident_id, "action": record.action,
            "argument": argument, "actor": actor[:200], "actor_source": record.actor_source, "action_time": now,
            "detector_status": record.detector_status, "detector_severity": record.detector_severity,
            "detector_update_seq": record.detector_update_seq, "human_status": before.status(now).value,
            "assignee": before.assignee,
        }
        self.append_rows([row])
        return row

    def append_rows(self, rows: list[dict[str, Any]]) -> None:
        data = pa.Table.from_pylist(rows, schema=TABLES[TABLE].schema)
        for attempt in range(MAX_CREATE_ATTEMPTS):
            try:
                self.store.append(TABLE, data)
                return
            except Exception:
                # Two writers creating the table at once: one creates it, the other finds it on the next try.
                if attempt == MAX_CREATE_ATTEMPTS - 1 or self.store.open(TABLE) is None:
                    raise

    # --- reading ------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        """Every audit record, oldest first (an empty frame with the table's columns when there is none)."""
        dt = self.store.open(TABLE)
        if dt is None:
            return TABLES[TABLE].schema.empty_table().to_pandas()
        version = dt.version()
        with self._lock:
            if self._cache is not None and self._cache[0] == version:
                return self._cache[1]
        frame = self.store.dataset(TABLE, dt).to_table().to_pandas()
        frame = frame.sort_values(["action_time", "action_id"], kind="stable").reset_index(drop=True)
        with self._lock:
            self._cache = (version, frame)
        return frame

    def for_incident(self, incident_id: str) -> pd.DataFrame:
        frame = self.frame()
        return frame[frame["incident_id"] == incident_id].reset_index(drop=True)

    def state(self, incident_id: str) -> State:
        return fold(actions_of(self.for_incident(incident_id)))

    def states(self) -> dict[str, State]:
        """The human state of every incident that has at least one record."""
        frame = self.frame()
        return {incident_id: fold(actions_of(group)) for incident_id, group in frame.groupby("incident_id")}

    def filter_ids(self, statuses: tuple[str, ...], now: datetime) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
        """(only, excluded) incident ids for a filter on human statuses: incidents without records are
        ``open``. ``only`` is None when incidents without records match too."""
        states = self.states()
        matching = {i for i, s in states.items() if s.status(now).value in statuses}
        excluded = tuple(sorted(set(states) - matching))
        if "open" in statuses:
            return None, excluded
        return tuple(sorted(matching)), ()


def actions_of(frame: pd.DataFrame) -> list[Action]:
    """Rows of incident_actions as the status module's Actions."""
    return [Action(r.action, pd.Timestamp(r.action_time).to_pydatetime(), r.actor,
                   None if pd.isna(r.argument) else r.argument, r.action_id) for r in frame.itertuples()]


_LOGS: dict[str, ActionLog] = {}
_LOGS_LOCK = threading.Lock()


def action_log(store: TableStore) -> ActionLog:
    """The process-wide ActionLog of a DATA_DIR (its read cache shared by every page run)."""
    with _LOGS_LOCK:
        log = _LOGS.get(store.root)
        if log is None or log.store != store:
            log = _LOGS[store.root] = ActionLog(store)
        return log
