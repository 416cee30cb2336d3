"""Producer(metadata_max_age_ms=...): a running producer reads a topic's metadata again once
its cached copy is that old, so partitions added meanwhile (by any process) are used: keyed
records then map with murmur2(key) % the new count, as Kafka's producer does after its
metadata refresh. Nothing sent is lost on either side of the change."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from logq import (
    Admin,
    AIOProducer,
    ConfigError,
    Consumer,
    Producer,
    RecordsFailedError,
    TopicDeletedError,
    UnknownTopicError,
)
from logq.client.partitioner import partition_for_key

KEYS = [b"key-%d" % i for i in range(64)]
MOVED = [k for k in KEYS if partition_for_key(k, 2) != partition_for_key(k, 5)]


def read_all(root: str, topic: str = "t") -> list[tuple[int, bytes, bytes]]:
    """Every record of ``topic`` as (partition, key, value)."""
    out = []
    with Consumer(root, topic, auto_offset_reset="earliest") as c:
        while recs := c.poll(0.2, max_records=10_000):
            out += [(r.partition, r.key, r.value) for r in recs]
    return out


def test_the_default_max_age_is_one_second_and_bad_values_are_config_errors(tmp_path: Path) -> None:
    root = str(tmp_path)
    with Producer(root) as prod:
        assert prod.metadata_max_age_ms == 1000
    with Producer(root, metadata_max_age_ms=0) as prod:
        assert prod.metadata_max_age_ms == 0
    for bad in (-1, 1.5, "1000", True, None):
        with pytest.raises(ConfigError, match="metadata_max_age_ms"):
            Producer(root, metadata_max_age_ms=bad)  # type: ignore[arg-type]


def test_after_the_max_age_keyed_records_map_over_partitions_added_meanwhile(tmp_path: Path) -> None:
    root = str(tmp_path)
    with Admin(root) as admin:
        admin.create_topic("t", 2)
    assert MOVED, "some keys change partition between 2 and 5 partitions"
    with Producer(root, metadata_max_age_ms=0, linger_ms=0) as prod:
        before = {k: prod.send("t", b"old", key=k).get(timeout=10).partition for k in KEYS}
        with Admin(root) as admin:
            admin.create_partitions("t", 5)
        after = {k: prod.send("t", b"new", key=k).get(timeout=10).partition for k in KEYS}
        batch = prod.send_batch("t", [b"bulk"], key=MOVED[0])
    assert before == {k: partition_for_key(k, 2) for k in KEYS}
    assert after == {k: partition_for_key(k, 5) for k in KEYS}
    assert batch[0].partition == partition_for_key(MOVED[0], 5)


def test_within_the_max_age_the_cached_count_is_used(tmp_path: Path) -> None:
    root = str(tmp_path)
    with Admin(root) as admin:
        admin.create_topic("t", 2)
    with Producer(root, metadata_max_age_ms=3_600_000, linger_ms=0) as prod:
        prod.send("t", b"first", key=b"k").get(timeout=10)
        with Admin(root) as admin:
            admin.create_partitions("t", 5)
        placed = {k: prod.send("t", b"v", key=k).get(timeout=10).partition for k in MOVED}
        assert prod.partitions_for("t") == set(range(5))  # read fresh, whatever the age
    assert placed == {k: partition_for_key(k, 2) for k in MOVED}


def test_a_topic_deleted_under_a_refreshing_producer_fails_its_records_with_topic_deleted(tmp_path: Path) -> None:
    root = str(tmp_path)
    with Admin(root) as admin:
        admin.create_topic("t", 2)
    with Producer(root, metadata_max_age_ms=0, linger_ms=60_000) as prod:
        first = prod.send("t", b"a", key=b"k")
        prod.flush()
        assert first.get(timeout=10).partition == partition_for_key(b"k", 2)
        with Admin(root) as admin:
            admin.delete_topic("t")
        fut = prod.send("t", b"b", key=b"k")  # the refresh finds no topic: the write reports it
        with pytest.raises(RecordsFailedError):
            prod.flush()
        assert isinstance(fut.exception(timeout=10), TopicDeletedError)
        with pytest.raises(UnknownTopicError):
            prod.send("t", b"c")
        with Admin(root) as admin:
            admin.create_topic("t", 5)
        last = prod.send("t", b"d", key=MOVED[0])
        prod.flush()
        assert last.get(timeout=10).partition == partition_for_key(MOVED[0], 5)


def test_a_topic_created_again_with_another_count_is_used_after_the_max_age(tmp_path: Path) -> None:
    root = str(tmp_path)
    with Admin(root) as admin:
        admin.create_topic("t", 2)
    with Producer(root, metadata_max_age_ms=0, linger_ms=0) as prod:
        prod.send("t", b"a", key=b"k").get(timeout=10)
        with Admin(root) as admin:
            admin.delete_topic("t")
            admin.create_topic("t", 5)
        placed = {k: prod.send("t", b"v", key=k).get(timeout=10).partition for k in MOVED}
    assert placed == {k: partition_for_key(k, 5) for k in MOVED}
    assert sorted(read_all(root)) == sorted((partition_for_key(k, 5), k, b"v") for k in MOVED)


def test_aio_producer_takes_the_max_age_and_maps_over_added_partitions(tmp_path: Path) -> None:
    import asyncio

    root = str(tmp_path)
    with Admin(root) as admin:
        admin.create_topic("t", 2)

    async def main() -> dict[bytes, int]:
        async with AIOProducer(root, metadata_max_age_ms=0) as p:
            await p.send_and_wait("t", b"old", key=MOVED[0])
            with Admin(root) as admin:
                admin.create_partitions("t", 5)
            return {k: (await p.send_and_wait("t", b"new", key=k)).partition for k in MOVED}

    assert asyncio.run(main()) == {k: partition_for_key(k, 5) for k in MOVED}


WRITER = """
import os, sys, time
from logq import Producer
root, altered, ready, age_ms = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
keys = [b"key-%d" % i for i in range(64)]
sent = 0
with Producer(root, linger_ms=1, metadata_max_age_ms=age_ms) as producer:
    for i in range(2000):  # before: the topic has 2 partitions
        producer.send("t", b"before", key=keys[i % 64])
        sent += 1
    producer.flush()
    open(ready, "w").close()
    while not os.path.exists(altered):  # sending all along while partitions are added
        producer.send("t", b"during", key=keys[sent % 64])
        sent += 1
        if sent % 500 == 0:
            producer.flush()
    time.sleep(2 * age_ms / 1000)  # the precondition: the max age has passed
    for i in range(2000):
        producer.send("t", b"after", key=keys[i % 64])
        sent += 1
    producer.flush()
print(sent)
"""


def test_a_producer_in_another_process_maps_keys_over_partitions_added_after_the_max_age(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    with Admin(root) as admin:
        admin.create_topic("t", 2)
    altered, ready = tmp_path / "altered", tmp_path / "ready"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, root, str(altered), str(ready), "200"], stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120  # a bound for a stuck child, not a measurement
        while not ready.exists():
            assert child.poll() is None, "the writer exited early"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        subprocess.run(
            [sys.executable, "-m", "logq", "--data", root, "topics", "alter", "t", "--partitions", "5"],
            check=True,
            capture_output=True,
        )
        altered.touch()
        out, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0
    records = read_all(root)
    assert len(records) == int(out)  # nothing lost
    for partition, key, value in records:
        if value == b"before":
            assert partition == partition_for_key(key, 2)
        elif value == b"after":
            assert partition == partition_for_key(key, 5)
        else:
            assert partition in (partition_for_key(key, 2), partition_for_key(key, 5))
    assert {p for p, k, v in records if v == b"after" and k in MOVED} - {0, 1}, "moved keys reach new partitions"
