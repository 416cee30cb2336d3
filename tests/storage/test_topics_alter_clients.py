"""Partitions added with Admin.create_partitions, seen by the clients: keyed records map with
murmur2(key) % the new count (as in Kafka: a key may move), and a subscribed consumer of a
group picks the new partitions up while it runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from logq import Admin, Consumer, InvalidPartitionsError, Producer, TopicPartition
from logq.client.partitioner import partition_for_key

KEYS = [f"key-{i}".encode() for i in range(64)]


def test_a_new_producer_maps_keys_over_the_new_partition_count(tmp_path: Path) -> None:
    root = str(tmp_path)
    with Admin(root) as admin:
        admin.create_topic("t", 2)
        assert admin.create_partitions("t", 5).partitions == 5
        assert admin.describe_topic("t").partitions[-1].partition == 4
    with Producer(root) as producer:
        placed = {k: producer.send("t", b"v", key=k).result(timeout=10).partition for k in KEYS}
    assert placed == {k: partition_for_key(k, 5) for k in KEYS}
    moved = [k for k in KEYS if partition_for_key(k, 2) != partition_for_key(k, 5)]
    assert moved, "some keys change partition when partitions are added (documented, as in Kafka)"


def test_create_partitions_refuses_to_shrink(tmp_path: Path) -> None:
    with Admin(str(tmp_path)) as admin:
        admin.create_topic("t", 3)
        with pytest.raises(InvalidPartitionsError):
            admin.create_partitions("t", 2)
        assert len(admin.describe_topic("t").partitions) == 3


def test_alter_topic_config_sets_and_deletes_overrides(tmp_path: Path) -> None:
    with Admin(str(tmp_path)) as admin:
        admin.create_topic("t", 1, retention_ms=-1)
        admin.alter_topic_config("t", retention_bytes=1 << 20)
        assert admin.registry.get("t", fresh=True).overrides == {"retention_ms": -1, "retention_bytes": 1 << 20}
        admin.alter_topic_config("t", delete=("retention_ms",))
        assert admin.topic_config("t").retention_ms == 7 * 24 * 3600 * 1000


def test_a_subscribed_consumer_reads_a_partition_added_while_it_runs(tmp_path: Path) -> None:
    root = str(tmp_path)
    with Admin(root) as admin:
        admin.create_topic("t", 1)
    consumer = Consumer(root, "t", group_id="g", auto_offset_reset="earliest", session_timeout_ms=300)
    try:
        consumer.poll(timeout=0.5)
        assert consumer.assignment() == {TopicPartition("t", 0)}
        with Admin(root) as admin:
            admin.create_partitions("t", 2)
        with Producer(root) as producer:
            producer.send("t", b"in-new-partition", partition=1).result(timeout=10)
        got = []
        deadline = time.monotonic() + 60  # a bound, not a measurement: the group checks every ~100 ms
        while not got and time.monotonic() < deadline:
            got = consumer.poll(timeout=0.2)
        assert [(r.partition, r.value) for r in got] == [(1, b"in-new-partition")]
        assert consumer.assignment() == {TopicPartition("t", 0), TopicPartition("t", 1)}
    finally:
        consumer.close()
