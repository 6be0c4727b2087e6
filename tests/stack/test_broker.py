"""The Kafka node definitions: configuration by cluster size, cluster ids, storage formatting."""

from __future__ import annotations

from pathlib import Path

import pytest

from incident_stack.broker import (
    KafkaNode,
    formatted_cluster_id,
    new_cluster_id,
    prepare_node,
    server_properties,
)


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def _nodes(count: int, home: Path) -> list[KafkaNode]:
    return [KafkaNode(i + 1, "127.0.0.1", 19092 + i, 19192 + i, home / f"n{i + 1}") for i in range(count)]


def test_internal_topics_replicate_as_far_as_the_cluster_allows(tmp_path: Path) -> None:
    single = _props(server_properties(_nodes(1, tmp_path)[0], _nodes(1, tmp_path)))
    assert single["offsets.topic.replication.factor"] == "1" and single["min.insync.replicas"] == "1"
    three = _nodes(3, tmp_path)
    props = _props(server_properties(three[1], three))
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19192,2@127.0.0.1:19193,3@127.0.0.1:19194"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19093,CONTROLLER://127.0.0.1:19193"
    assert props["offsets.topic.replication.factor"] == props["transaction.state.log.replication.factor"] == "3"
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    assert props["auto.create.topics.enable"] == "false"


def test_cluster_ids_look_like_kafkas_and_never_start_with_a_dash() -> None:
    ids = {new_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


@pytest.mark.integration
def test_storage_is_formatted_once_and_kept_for_its_cluster(tmp_path: Path) -> None:
    node = _nodes(1, tmp_path)[0]
    awkward = "-" + new_cluster_id()[1:]  # older ids, or ones given by hand, may start with a dash
    prepare_node(node, [node], awkward)
    assert formatted_cluster_id(node) == awkward
    meta = (node.log_dir / "meta.properties").read_text()
    prepare_node(node, [node], awkward)  # a second start leaves the formatted storage alone
    assert (node.log_dir / "meta.properties").read_text() == meta
    with pytest.raises(RuntimeError, match="belongs to cluster"):
        prepare_node(node, [node], new_cluster_id())
