"""offset_range while partition leadership moves (a broker restarting, a replica taking over).

A broker that has just restarted answers ListOffsets with UNKNOWN_LEADER_EPOCH (or NOT_LEADER...) for a
moment; the same question a little later, on fresh metadata, succeeds. These tests stand in for the admin
client, the only way to make a broker give those answers on demand.
"""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException

from incident_contracts import kafka


class ScriptedAdmin:
    """An admin client whose ListOffsets answers come from a script shared by every client made."""

    def __init__(self, script: list[int | None], partitions: list[int]):
        self.script, self.partitions, self.asked = script, partitions, 0

    def __call__(self, bootstrap: str) -> ScriptedAdmin:  # stands for admin_client(bootstrap)
        return self

    def list_topics(self, timeout: float):
        topic = SimpleNamespace(error=None, partitions={p: None for p in self.partitions})
        return SimpleNamespace(topics={"logs": topic})

    def list_offsets(self, requests, isolation_level, request_timeout):
        self.asked += 1
        error = self.script.pop(0) if self.script else None
        answers = {}
        for tp in requests:
            future: Future = Future()
            if error is None:
                future.set_result(SimpleNamespace(offset=10 * tp.partition + 5))
            else:
                future.set_exception(KafkaException(KafkaError(error)))
            answers[tp] = future
        return answers


@pytest.mark.parametrize("code", [KafkaError.UNKNOWN_LEADER_EPOCH, KafkaError.NOT_LEADER_FOR_PARTITION,
                                  KafkaError.LEADER_NOT_AVAILABLE])
def test_a_moving_leader_is_asked_again_until_it_answers(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    admin = ScriptedAdmin([code, code, None, None], [0, 1])
    monkeypatch.setattr(kafka, "admin_client", admin)
    assert kafka.offset_range("b:9092", "logs", timeout=5) == {0: (5, 5), 1: (15, 15)}
    assert admin.asked == 4  # one refused round (earliest and latest asked), then one answered round


def test_a_leader_that_never_settles_is_reported_with_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "admin_client", ScriptedAdmin([KafkaError.UNKNOWN_LEADER_EPOCH] * 1000, [0]))
    with pytest.raises(kafka.BrokerUnavailable, match=r"UNKNOWN_LEADER_EPOCH|Leader epoch"):
        kafka.offset_range("b:9092", "logs", timeout=0.5)


def test_other_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = ScriptedAdmin([KafkaError.BROKER_NOT_AVAILABLE, None, None], [0])
    monkeypatch.setattr(kafka, "admin_client", admin)
    with pytest.raises(kafka.BrokerUnavailable):
        kafka.offset_range("b:9092", "logs", timeout=5)
    assert admin.asked == 2  # earliest and latest asked once each, no second round
