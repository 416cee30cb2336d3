"""Partitions added with Admin.create_partitions, seen by the clients: keyed records map with
murmur2(key) % the new count (as in Kafka: a key may move), and a subscribed consumer of a
group picks the new partitions up while it runs."""

from __future__ import annotations

import subprocess
import sys
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


WRITER = """
import sys
from logq import Producer
root, started, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Producer(root, linger_ms=1) as producer:
    futures = []
    for i in range(n):
        futures.append(producer.send("t", b"v%d" % i, key=b"key-%d" % (i % 100)))
        if i == 1000:
            producer.flush()
            open(started, "w").close()
    producer.flush()
    print(sum(1 for f in futures if f.result(timeout=60).offset >= 0))
"""


def test_a_producer_in_another_process_loses_nothing_while_partitions_are_added(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    with Admin(root) as admin:
        admin.create_topic("t", 2)
    started = tmp_path / "started"
    n = 50_000
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, root, str(started), str(n)], stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert child.poll() is None, "the writer exited early"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        with Admin(root) as admin:
            admin.create_partitions("t", 4)
        out, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0 and int(out) == n
    with Admin(root) as admin:
        desc = admin.describe_topic("t")
    assert len(desc.partitions) == 4 and desc.records == n
