"""What `cluster status` and `cluster trigger --wait` say about where the streaming job's executors ran."""

from __future__ import annotations

from types import SimpleNamespace

from incident_stack.cluster_cli import describe_apps
from incident_stack.spark_standalone import ExecutorPlacement


class TierWithTwoWorkers:
    """The two calls describe_apps makes on the tier, answering with fixed placements."""

    layout = SimpleNamespace(workers=2)

    def __init__(self, placements: list[ExecutorPlacement]):
        self.placements = placements

    def executors(self, app_ids: list[str]) -> list[ExecutorPlacement]:
        return [p for p in self.placements if p.app_id in app_ids]


def test_a_worker_restarted_under_a_new_id_counts_once_and_both_of_its_ids_are_listed() -> None:
    app = "app-1"
    placements = [ExecutorPlacement(app, 0, "worker-a", "http://127.0.0.1:8081", finished=False),
                  ExecutorPlacement(app, 1, "worker-b-before-kill", "http://127.0.0.1:8082", finished=True),
                  ExecutorPlacement(app, 2, "worker-b-restarted", "http://127.0.0.1:8082", finished=False)]
    lines = describe_apps(TierWithTwoWorkers(placements), [{"id": app, "state": "RUNNING"}], "Last Spark job")
    assert lines[1].strip() == "executors on 2 of 2 workers (the workers' JSON API):"
    assert any("worker-b-before-kill" in line and "executor 1 of app-1" in line for line in lines)
    assert any("worker-b-restarted" in line and "executor 2 of app-1 (running)" in line for line in lines)

    one_worker = describe_apps(TierWithTwoWorkers(placements[:1]), [{"id": app}], "Last Spark job")
    assert "executors on 1 of 2 workers" in one_worker[1]
