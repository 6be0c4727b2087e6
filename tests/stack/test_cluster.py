"""The cluster tier end to end: real brokers, Spark master and workers, PostgreSQL, Airflow, dashboard.

One pipeline run goes through the tier's Airflow with nothing but settings changed (three-broker
bootstrap list, SPARK_MASTER=spark://...); its records are checked in the tables independently of the
reconciliation, its executors are found on both workers, and `cluster down` leaves no process behind.
"""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from incident_stack.supervisor import port_taken

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

RUN = {"scenario": "mixed", "rate": 500, "duration": 20, "seed": 7}


def _status_lines(cluster) -> tuple[dict[str, str], str]:
    """`cluster status`: {first word of each line: line} and the whole output."""
    result = cluster.cli("status", timeout=120)
    assert result.returncode == 0, result.stderr
    return {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}, result.stdout


# Start (about a minute and a half cold), one run (a few minutes on a busy 2-core machine), stop.
@pytest.mark.timeout(1800)
def test_cluster_runs_the_pipeline_on_both_workers_and_stops_cleanly(cluster) -> None:
    settings = cluster.settings
    names = cluster.names()
    assert len(cluster.names("kafka")) == 3 and len(cluster.names("spark-worker")) == 2
    assert {"spark-master", "postgres", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "dashboard"} <= set(names)

    # Every process runs and answers, each on its own port, and status says so with its URL.
    rows, text = _status_lines(cluster)
    for name in names:
        assert name in rows, text
        assert re.search(rf"^{re.escape(name)}\s+pid \d+\s+yes\s", rows[name]), text
    assert f"kafka://127.0.0.1:{cluster.cluster.layout.kafka_ports[0]}" in rows["kafka-1"]
    assert "2 of 2 workers alive" in rows["spark-master"]
    pids = {name: cluster.pid(name) for name in names}
    assert len(set(pids.values())) == len(names), pids  # separate processes, the four Airflow ones included

    # The pipeline's settings on the tier: only these differ from the embedded stack.
    assert settings.kafka_bootstrap_servers.count(",") == 2
    assert settings.spark_master.startswith("spark://127.0.0.1:")
    assert settings.data_dir == cluster.root / "data" / "cluster"

    # The topic: 6 partitions, each on the 3 brokers, min.insync.replicas 2, all replicas in sync.
    topic = cluster.cluster.topic()
    assert sorted(topic.partitions) == list(range(6)), topic.describe()
    assert topic.replication_factors == {3}, topic.describe()
    assert topic.min_insync_replicas == 2, topic.describe()
    assert topic.under_replicated == [], topic.describe()
    assert f"{settings.kafka_topic_logs}: 6 partitions, replication factor 3, min.insync.replicas=2" in text

    # One run through the tier's Airflow, as `make cluster-trigger-dag WAIT=1` runs it.
    before = datetime.now().astimezone()
    result = cluster.cli("trigger", *(f"--{k}={v}" for k, v in RUN.items()), "--wait", timeout=1500)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{cluster.log_tails()}"
    assert "finished: SUCCESS" in result.stdout
    assert "reconciled: nothing lost, nothing duplicated" in result.stdout
    run_id = re.search(r"Triggered incident_processing_pipeline run (\S+) ", result.stdout).group(1)

    # Every record the run produced is in events or dead_letter exactly once (read here, not by reconcile).
    _, ranges = cluster.run_ranges(run_id)
    assert len(ranges) == 6 and sum(end - start for start, end in ranges.values()) == RUN["rate"] * RUN["duration"]
    assert cluster.missing_or_duplicated(run_id) == []
    assert sum(len(v) for v in cluster.offsets_held(settings.kafka_topic_logs, ranges).values()) == sum(
        end - start for start, end in ranges.values())

    # The job's executors ran on both workers (the master's and workers' JSON APIs).
    apps = cluster.stream_apps_since(before)
    assert apps, "the master lists no application of the streaming job"
    placements = cluster.cluster.executors([a["id"] for a in apps])
    alive = {w["id"] for w in cluster.cluster.spark_state()["workers"] if w["state"] == "ALIVE"}
    assert len(alive) == 2
    assert {p.worker_id for p in placements} == alive, placements
    assert "executors on 2 of 2 workers" in result.stdout
    rows, text = _status_lines(cluster)
    assert "Last Spark job: app-" in text and "executors on 2 of 2 workers" in text

    # Down stops every process of the tier, children included, and frees every port.
    result = cluster.cli("down", timeout=300)
    assert result.returncode == 0, result.stderr
    for name in names:
        assert re.search(rf"^\s+{re.escape(name)}: stopped", result.stdout, re.M), result.stdout
    assert cluster.table.names() == []
    assert cluster.cluster.leftover_processes() == [], "processes of the tier outlived `cluster down`"
    busy = [port for port, owner in cluster.cluster.layout.port_owners() if port_taken(port)]
    assert busy == [], f"ports still in use after down: {busy}"
    rows, text = _status_lines(cluster)
    assert all("not running" in rows[name] for name in names), text
