"""The cluster tier end to end: real brokers, Spark master and workers, PostgreSQL, Airflow, dashboard.

The tests share one start of the tier (``cluster up``, a minute and more) and run in this order:

1. Every process of the tier runs and answers on its own port, the topic is laid out for three brokers, and
   the pipeline's settings differ from the embedded stack's only in addresses and folders.
2. One pipeline run through the tier's Airflow, triggered and followed as `make cluster-trigger-dag WAIT=1`
   does (with nothing but settings changed: three-broker bootstrap list, SPARK_MASTER=spark://...), with
   two faults on the way: (a) ``kill -9`` the Kafka broker that leads the busiest partition while the
   generator produces: the idempotent producer (acks=all) loses and duplicates nothing, another replica
   takes over the partition, and the restarted broker rejoins the in-sync replicas. (b) ``kill -9`` one
   Spark worker (its process group: the worker daemon, its executor and the executor's Python workers)
   while a micro-batch is in flight: the tasks it ran are run again on the other worker, the same
   application finishes the batch, and the restarted worker gets a new executor. The run's records are
   checked in the tables independently of the reconciliation, and its executors are found on both workers.
3. (d) ``kill -9`` every process of the tier at once while a micro-batch of a run's streaming job is in
   flight (every process crashes; unlike a power cut, the operating system's page cache survives), start
   the tier again with ``cluster up``: Airflow takes the interrupted run up again (its stream task's next
   try replays the interrupted batch on the restarted tier). It ends SUCCESS, or FAILED with the reason
   printed, and then a new run must end SUCCESS: either way a run succeeds end to end after the crash.
4. ``cluster down`` leaves no process behind and frees every port.

Every fault test ends with its runs SUCCESS, every record they produced in `events` or `dead_letter` exactly
once and no `(incident_id, update_seq)` twice, read from the Parquet files by tests/pipeline_checks.py. Each
prints what it measured (lines starting with ``fault (x)``; helpers in tests/stack/cluster_faults.py).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

import cluster_faults as faults
import pytest
from pipeline_checks import assert_exactly_once, assert_no_duplicate_updates

from incident_stack.supervisor import port_taken

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

# Scenarios that open incidents (so the duplicate-update check has updates to look at). The generator of the
# (a)+(b) run produces for long after the broker fault; the streaming job starts about when it ends.
RUN_AB = {"scenario": "bad_deploy", "rate": 300, "duration": 40, "seed": 11}
RUN_D = {"scenario": "bad_deploy", "rate": 300, "duration": 20, "seed": 12}
RUN_D_AGAIN = {"scenario": "memory_leak", "rate": 300, "duration": 10, "seed": 13}  # only if that run failed


def _status_lines(cluster) -> tuple[dict[str, str], str]:
    """`cluster status`: {first word of each line: line} and the whole output."""
    result = cluster.cli("status", timeout=120)
    assert result.returncode == 0, result.stderr
    return {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}, result.stdout


# Start: about a minute and a half cold on a busy 2-core machine.
@pytest.mark.timeout(1200)
def test_every_process_answers_on_its_own_port_with_the_topic_on_three_brokers(cluster) -> None:
    settings = cluster.settings
    names = cluster.names()
    assert len(cluster.names("kafka")) == 3 and len(cluster.names("spark-worker")) == 2
    assert {"spark-master", "postgres", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "dashboard", "log-ingest", "notifier"} <= set(names)

    # Every process runs and answers, each on its own port, and status says so with its URL. (A probe the
    # loaded machine leaves unanswered for its timeout says "no" once: status is asked again for a while.)
    deadline = time.monotonic() + 120
    while True:
        rows, text = _status_lines(cluster)
        answering = all(re.search(rf"^{re.escape(name)}\s+pid \d+\s+yes\s", rows.get(name, "")) for name in names)
        if answering or time.monotonic() > deadline:
            break
        time.sleep(5)
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


# One run of 40 s with both faults, on a busy 2-core machine: several minutes.
@pytest.mark.timeout(1500)
def test_a_run_on_both_workers_survives_its_broker_leader_then_a_spark_worker_killed(cluster) -> None:
    settings = cluster.settings
    topic = settings.kafka_topic_logs
    before = faults.topic_end_offsets(cluster)
    data = settings.data_dir
    since = datetime.now().astimezone()
    t0 = time.monotonic()
    # Triggered and followed as `make cluster-trigger-dag WAIT=1` does, while the faults are injected.
    trigger = cluster.cli_background("trigger", *(f"--{k}={v}" for k, v in RUN_AB.items()), "--wait")
    run_id = trigger.wait_for(r"Triggered incident_processing_pipeline run (\S+) ", timeout=300).group(1)
    faults.say(f"fault (a)+(b): run {run_id} triggered ({RUN_AB})")
    watch = faults.KafkaWatch(settings.kafka_bootstrap_servers, topic)
    try:
        broker = faults.kill_leader_of_busiest_partition(cluster, watch, before)
    finally:
        watch.close()
    worker = faults.kill_worker_mid_batch(cluster, since)

    code = trigger.finish(timeout=1200)
    run = cluster.wait_for_run(run_id, timeout=60)
    assert run["state"] == "success", faults.failure_report(cluster, run_id)
    assert code == 0, trigger.output
    assert "finished: SUCCESS" in trigger.output
    assert "reconciled: nothing lost, nothing duplicated" in trigger.output
    faults.say(f"fault (a)+(b): the run's tasks, seconds after the trigger: {faults.timeline(cluster, run_id, since)}")
    tries = faults.tries(cluster, run_id)
    took = time.monotonic() - t0

    # (a) The producer lost and duplicated nothing: what it counts as delivered is what Kafka holds.
    produced = faults.produced(cluster, run_id)
    generator, ranges = produced["generator"], faults.ranges(produced)
    expected = RUN_AB["rate"] * RUN_AB["duration"]
    assert generator["failed"] == 0 and generator["events_sent"] == generator["delivered"] == expected, generator
    in_kafka = {p: end - start for p, (start, end) in ranges.items()}
    assert {int(p): int(n) for p, n in generator["partitions"].items()} == {p: n for p, n in in_kafka.items() if n}, (
        f"delivered per partition {generator['partitions']} != records in Kafka {in_kafka}")
    assert {p: start for p, (start, _) in ranges.items()} == before

    # Every record once in the tables, no incident update twice (read from the files, not by reconcile).
    assert assert_exactly_once(data, topic, ranges) == expected
    updates = assert_no_duplicate_updates(data)
    assert updates > 0, "the bad_deploy scenario opened no incident"
    topic_name, run_ranges = cluster.run_ranges(run_id)
    assert topic_name == topic and len(run_ranges) == 6 and cluster.missing_or_duplicated(run_id) == []

    # The job's executors ran on both workers (the master's and workers' JSON APIs): the worker killed
    # mid-batch came back under a new worker id, and the job's application had an executor on it too (the
    # executor it had on the killed one is listed as well, finished).
    apps = cluster.stream_apps_since(since)
    assert apps, "the master lists no application of the streaming job"
    placements = cluster.cluster.executors([a["id"] for a in apps])
    alive = {w["id"] for w in cluster.cluster.spark_state()["workers"] if w["state"] == "ALIVE"}
    assert len(alive) == 2
    assert alive <= {p.worker_id for p in placements}, placements
    assert "executors on 2 of 2 workers" in trigger.output
    _, text = _status_lines(cluster)
    assert "Last Spark job: app-" in text and "executors on 2 of 2 workers" in text
    faults.say(f"fault (a)+(b): run {run_id} SUCCESS in {took:.0f} s (tries: "
        f"{', '.join(f'{t} {n}' for t, (_, n) in tries.items())}); generator delivered {generator['delivered']} "
        f"of {generator['events_sent']}, failed {generator['failed']}; records in Kafka {sum(in_kafka.values())} "
        f"{in_kafka}; in events/dead_letter exactly once: {expected}; lost 0, duplicated 0; incident updates "
        f"{updates}, none twice")
    faults.say(f"fault (a) figures: {json.dumps(broker)}")
    faults.say(f"fault (b) figures: {json.dumps(worker)}")


@pytest.mark.timeout(1800)
def test_whole_cluster_killed_mid_run_restarts_and_runs_again(cluster) -> None:
    settings = cluster.settings
    topic = settings.kafka_topic_logs
    data = settings.data_dir
    before = faults.topic_end_offsets(cluster)
    checkpoint = faults.IngestCheckpoint(settings)
    planned_before, committed_before = len(checkpoint.planned()), len(checkpoint.committed())
    since = datetime.now().astimezone()
    first = cluster.start_run(RUN_D)
    faults.say(f"fault (d): run {first} triggered ({RUN_D})")

    # Mid-run: a micro-batch of the run's streaming job in flight, its tasks running on the executors.
    def mid_batch() -> bool:
        app = faults.running_app(cluster, since)
        if app is None or checkpoint.in_flight() is None or len(checkpoint.planned()) <= planned_before:
            return False
        executors = faults.driver_api(settings, f"applications/{app}/executors") or []
        return sum(int(e.get("activeTasks", 0)) for e in executors if e.get("id") != "driver") > 0

    faults.wait_for(mid_batch, 600, "a micro-batch of the run's streaming job in flight", poll=0.2)
    at_kill = {"records_so_far": sum(faults.topic_end_offsets(cluster).values()) - sum(before.values()),
               "batches_committed": len(checkpoint.committed()) - committed_before,
               "batch_in_flight": checkpoint.in_flight(),
               "tasks": {t: s for t, (s, _) in faults.tries(cluster, first).items() if s}}
    killed = faults.kill_everything(cluster)
    t_kill, killed_at = time.monotonic(), datetime.now().astimezone()
    faults.say(f"fault (d): killed every process of the tier (kill -9: {', '.join(killed['groups'])}; "
        f"{len(killed['strays'])} processes outside those groups: {killed['strays']}) with {at_kill}")
    assert len(killed["groups"]) == len(cluster.names())
    assert all(cluster.pid(n) is None for n in cluster.names())

    # `cluster up` (what `make cluster-up` runs) brings the whole tier back on its files.
    result = cluster.cli("up", timeout=900)
    t_up = time.monotonic()
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{cluster.log_tails()}"
    cluster.wait_until(lambda: all(cluster.healthy(n) for n in cluster.names()), 120,
                       "every process of the tier answering after `cluster up`")
    assert cluster.cluster.topic().under_replicated == [], cluster.cluster.topic().describe()

    # Airflow takes the interrupted run up again (the new scheduler resets the orphaned stream task); its next
    # try runs on the restarted tier. Should it fail, the reason is printed and a new run must succeed.
    run = cluster.wait_for_run(first, timeout=900)
    t_done = time.monotonic()
    first_tries = faults.tries(cluster, first)
    faults.say("fault (d): the interrupted run's tasks, seconds after the kill: "
               f"{faults.timeline(cluster, first, killed_at)}")
    faults.say("fault (d): the scheduler after the restart: " + " | ".join(faults.orphan_lines(cluster)))
    for number in range(1, first_tries["process_stream"][1] + 1):
        story = faults.stream_story(cluster, first, number)
        faults.say(f"fault (d): process_stream try {number}: " + " | ".join(story))
    assert first_tries["process_stream"][1] >= 2, first_tries  # the killed try, then one on the restarted tier
    last, again = first, None
    if run["state"] != "success":
        report = faults.failure_report(cluster, first)
        faults.say(f"fault (d): the interrupted run ended {run['state'].upper()}:\n{report}")
        again = last = cluster.start_run(RUN_D_AGAIN)
        run_again = cluster.wait_for_run(again, timeout=900)
        assert run_again["state"] == "success", faults.failure_report(cluster, again)
    t_success = time.monotonic()

    # Everything produced since the run was triggered (before the kill, and by a new run if there was one) is in
    # the tables exactly once, and nothing produced earlier in the module was lost or doubled either.
    end_run = faults.produced(cluster, last)
    ranges = {p: (before[p], int(end_run["end_offsets"][str(p)])) for p in before}
    records = assert_exactly_once(data, topic, ranges)
    assert records >= at_kill["records_so_far"]
    whole = assert_exactly_once(data, topic, {p: (0, e) for p, (_, e) in ranges.items()})
    produced = faults.produced(cluster, first)
    delivered = produced["generator"]["delivered"]
    assert delivered == RUN_D["rate"] * RUN_D["duration"]
    assert assert_exactly_once(data, topic, faults.ranges(produced)) == delivered
    if again is not None:
        assert assert_exactly_once(data, topic, faults.ranges(end_run)) == end_run["generator"]["delivered"]
    updates = assert_no_duplicate_updates(data)
    assert updates > 0
    figures = {"killed_at": at_kill, "up_s": round(t_up - t_kill, 1), "interrupted_run": run["state"],
               "interrupted_run_tries": {t: n for t, (_, n) in first_tries.items()},
               "interrupted_run_done_s": round(t_done - t_kill, 1), "interrupted_run_delivered": delivered,
               "new_run": again, "success_s": round(t_success - t_kill, 1),
               "records_checked_since_run": records, "records_checked_whole_topic": whole,
               "incident_updates": updates}
    faults.say(f"fault (d): tier up again {figures['up_s']} s after the kill; interrupted run {first} ended "
        f"{run['state'].upper()} {figures['interrupted_run_done_s']} s after the kill (tries: "
        f"{figures['interrupted_run_tries']}){f'; new run {again} SUCCESS' if again else ''}; {records} records "
        f"produced since it was triggered, {whole} in the whole topic, each in events/dead_letter exactly once; "
        f"lost 0, duplicated 0; incident updates {updates}, none twice")
    faults.say(f"fault (d) figures: {json.dumps(figures)}")


@pytest.mark.timeout(600)
def test_cluster_down_stops_every_process_and_frees_every_port(cluster) -> None:
    names = cluster.names()
    # Every process of the tier, children included, stops; every port is free again.
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
