"""The notification benchmark's measuring parts: the commit time of each `opened` row from the Delta log, the
webhook receiver (a real HTTP server, posted to by the notifier's own client), and how incidents are scored."""

from __future__ import annotations

import datetime as dt
import importlib
import sys
import time
from pathlib import Path

import pyarrow as pa

from incident_contracts.table_store import TableStore
from incident_dashboard.notify.notifier import post_json

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
notify_bench = importlib.import_module("notify_bench")


def _updates(rows: list[tuple[str, str, str, str]], when: dt.datetime) -> pa.Table:
    ids, kinds, services, severities = zip(*rows, strict=True)
    count = len(rows)
    return pa.table({"incident_id": ids, "update_seq": [0] * count, "update_type": kinds,
                     "status": ["resolved" if k == "resolved" else "open" for k in kinds],
                     "update_time": [when] * count, "service": services, "environment": ["prod"] * count,
                     "severity": severities, "opened_at": [when] * count, "first_seen": [when] * count,
                     "last_seen": [when] * count})


def test_each_opened_row_gets_the_time_of_the_commit_that_made_it_visible(tmp_path: Path) -> None:
    store = TableStore(str(tmp_path / "data"))
    reader = notify_bench.CommitReader(tmp_path / "data" / "incident_updates")
    reader.poll()  # no table yet
    made = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    before = int(time.time() * 1000)
    store.append("incident_updates", _updates([("a", "opened", "order-service", "P1")], made))
    after_first = int(time.time() * 1000)
    time.sleep(0.05)
    store.write_files("incident_updates", _updates([("c", "opened", "cart-service", "P1")], made))  # not committed
    store.append("incident_updates", _updates([("b", "opened", "search-service", "P3"),
                                               ("a", "updated", "order-service", "P1")], made))
    after_second = int(time.time() * 1000)
    reader.poll()
    opened = reader.snapshot()
    assert set(opened) == {"a", "b"}
    assert before <= opened["a"].commit_ms <= after_first < opened["b"].commit_ms <= after_second
    assert opened["a"].update_ms == int(made.timestamp() * 1000) and opened["b"].severity == "P3"
    assert reader.open_services() == {"order-service", "search-service"}
    store.append("incident_updates", _updates([("a", "resolved", "order-service", "P1")], made))
    reader.poll()
    assert reader.open_services() == {"search-service"} and reader.snapshot()["a"] == opened["a"]


def test_the_receiver_notes_when_each_opening_arrived_alone_or_in_a_summary() -> None:
    receiver = notify_bench.Receiver()
    try:
        alone = {"event": "opened", "incident": {"id": "a", "service": "order-service"}, "route": "webhook"}
        raised = {"event": "severity_raised", "incident": {"id": "a", "service": "order-service"}}
        summary = {"event": "summary", "service": "search-service", "transitions": [
            {"event": "opened", "incident": {"id": "b", "service": "search-service"}},
            {"event": "resolved", "incident": {"id": "c", "service": "search-service"}}]}
        before = int(time.time() * 1000)
        assert post_json(receiver.url, alone, timeout=5) == 200
        middle = int(time.time() * 1000)
        time.sleep(0.02)
        assert post_json(receiver.url, raised, timeout=5) == 200
        assert post_json(receiver.url, summary, timeout=5) == 200
        found = receiver.opened()
        assert set(found) == {"a", "b"}
        assert before <= found["a"][0] <= middle and found["a"][1:] == (False, "order-service")
        assert found["b"][1:] == (True, "search-service")
        assert receiver.last_message_of("search-service", found["b"][0] + 1) == found["b"][0]
        assert receiver.last_message_of("search-service", found["b"][0]) is None
    finally:
        receiver.stop()


def test_scoring_counts_alone_messages_sets_apart_coalesced_and_unrouted_and_bounds_missing_ones() -> None:
    def opened(incident_id: str, service: str, severity: str, commit_ms: int) -> object:
        return notify_bench.Opened(incident_id, service, severity, commit_ms, commit_ms - 3000)

    first, end, window = 100_000, 200_000, 300_000
    incidents = {o.incident_id: o for o in (
        opened("history", "cart-service", "P1", 90_000),  # before the first injection: not counted
        opened("sent", "order-service", "P1", 110_000),
        opened("low", "search-service", "P3", 120_000),  # not routed
        opened("summary", "api-gateway", "P2", 130_000),  # went out in a summary
        opened("held", "order-service", "P2", 150_000),  # order-service had a message 10 s before
        opened("missing", "user-service", "P1", 160_000),  # no message, nothing recent: counted until the end
        opened("recent", "auth-service", "P1", 190_000),  # 10 s before the end, no message yet: not judged
    )}
    delivered = {"sent": (114_500, False, "order-service"), "summary": (170_000, True, "api-gateway")}
    last = {"order-service": 140_000}
    scored = notify_bench.score(incidents, delivered, lambda service, before: last.get(service), first, end, window)
    assert scored.samples == [4.5, 40.0]
    assert scored.from_update == [7.5]
    assert scored.late == ["user-service"] and scored.unrouted == ["search-service P3"]
    assert scored.unjudged == ["auth-service 10 s"]
    assert scored.held == ["api-gateway 40 s", "order-service 50 s"]
    # Without a recent message of its service, an undelivered incident is late, not held.
    scored = notify_bench.score(incidents, delivered, lambda service, before: None, first, end, window)
    assert scored.samples == [4.5, 50.0, 40.0]
