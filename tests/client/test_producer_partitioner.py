"""A user's partitioner (kafka-python's ``partitioner(key_bytes, all_partitions,
available_partitions)``), ``partitions_for(topic)`` and ``metrics()``."""

from __future__ import annotations

import glob
import os
from typing import Any

import pytest
from logq import (
    Admin,
    ClientClosedError,
    ConfigError,
    Producer,
    RecordsFailedError,
    UnknownPartitionError,
    UnknownTopicError,
)
from logq.client.partitioner import partition_for_key

from tests.support.clients import make_topic

# ----------------------------------------------------------------------------- partitioner


def test_the_partitioner_gets_the_serialized_key_and_every_partition_and_picks_the_partition(root: str) -> None:
    make_topic(root, "t", 4)
    calls: list[tuple[Any, list[int], list[int]]] = []

    def last(key: bytes | None, every: list[int], available: list[int]) -> int:
        calls.append((key, every, available))
        return every[-1]

    with Producer(root, partitioner=last, key_serializer=lambda s: s and s.encode()) as prod:
        assert prod.send("t", b"v", key="user-1").get(timeout=10).partition == 3
        assert prod.send("t", b"w").get(timeout=10).partition == 3  # no key: called with None
        assert prod.send("t", b"x", key="k", partition=1).get(timeout=10).partition == 1  # explicit wins
        assert [m.partition for m in prod.send_batch("t", [b"a", b"b"], key="k")] == [3]
    assert calls == [(b"user-1", [0, 1, 2, 3], [0, 1, 2, 3]), (None, [0, 1, 2, 3], [0, 1, 2, 3])] + [
        (b"k", [0, 1, 2, 3], [0, 1, 2, 3])
    ]


def test_a_partitioner_can_reproduce_kafkas_default(root: str) -> None:
    make_topic(root, "t", 5)

    def murmur(key: bytes | None, every: list[int], available: list[int]) -> int:
        assert key is not None
        return every[partition_for_key(key, len(every))]

    with Producer(root, partitioner=murmur) as custom, Producer(root) as default:
        for i in range(50):
            k = b"key-%d" % i
            assert custom.send("t", b"v", key=k).get(10).partition == default.send("t", b"v", key=k).get(10).partition


@pytest.mark.parametrize("bad", [4, -1, "1", 1.0, None, True])
def test_a_partition_the_topic_does_not_have_fails_that_send_naming_the_partitioner(root: str, bad: object) -> None:
    make_topic(root, "t", 4)
    with Producer(root, partitioner=lambda k, a, b: bad, linger_ms=60_000) as prod:
        with pytest.raises(UnknownPartitionError) as e:
            prod.send("t", b"v")
        assert "partitioner" in str(e.value) and repr(bad) in str(e.value)
        with pytest.raises(UnknownPartitionError):
            prod.send_batch("t", [b"v"])
        assert prod.metrics()["buffer-available-bytes"] == prod.buffer_bytes  # nothing queued
        prod.flush()
        assert prod.metrics()["record-send-total"] == 0


def test_a_partitioner_that_raises_fails_that_send_with_a_config_error_carrying_the_cause(root: str) -> None:
    make_topic(root)

    def broken(key: bytes | None, every: list[int], available: list[int]) -> int:
        raise KeyError("no route")

    with Producer(root, partitioner=broken) as prod:
        with pytest.raises(ConfigError, match="partitioner") as e:
            prod.send("t", b"v")
        assert isinstance(e.value.__cause__, KeyError)


@pytest.mark.parametrize("bad", [3, "murmur2", object()])
def test_a_partitioner_that_is_not_callable_is_refused_at_construction(root: str, bad: object) -> None:
    with pytest.raises(ConfigError, match="partitioner"):
        Producer(root, partitioner=bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- partitions_for


def test_partitions_for_lists_the_topics_partitions_read_fresh(root: str) -> None:
    make_topic(root, "t", 3)
    with Producer(root) as prod:
        assert prod.partitions_for("t") == {0, 1, 2}
        with Admin(root) as admin:
            admin.create_partitions("t", 5)
        assert prod.partitions_for("t") == {0, 1, 2, 3, 4}
        with pytest.raises(UnknownTopicError):
            prod.partitions_for("missing")
    with pytest.raises(ClientClosedError):
        prod.partitions_for("t")


# ----------------------------------------------------------------------------- metrics


def _on_disk_bytes(root: str, topic: str) -> int:
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(root, f"{topic}-*", "*.log")))


def test_metrics_count_records_batches_and_the_bytes_stored(root: str) -> None:
    make_topic(root, "t", 2)
    with Producer(root, compression_type="gzip", linger_ms=60_000, batch_size=2000) as prod:
        for i in range(100):
            prod.send("t", b"event %d " % i * 5, partition=i % 2)
        prod.flush()
        m = prod.metrics()
    assert m["record-send-total"] == 100 and m["record-error-total"] == 0
    assert m["byte-total"] == _on_disk_bytes(root, "t")
    assert m["batch-total"] >= 2 and m["batch-size-max"] >= m["batch-size-avg"] > 0
    assert m["records-per-batch-avg"] == 100 / m["batch-total"]
    assert m["uncompressed-byte-total"] > m["byte-total"]
    assert 0 < m["compression-rate-avg"] < 1
    assert m["record-queue-time-max"] >= m["record-queue-time-avg"] >= 0


def test_metrics_show_the_buffer_in_use_until_flush(root: str) -> None:
    make_topic(root)
    with Producer(root, linger_ms=60_000, buffer_bytes=1 << 20) as prod:
        before = prod.metrics()
        assert before["buffer-total-bytes"] == before["buffer-available-bytes"] == 1 << 20
        prod.send("t", b"x" * 1000)
        assert prod.metrics()["buffer-available-bytes"] <= (1 << 20) - 1000
        prod.flush()
        assert prod.metrics()["buffer-available-bytes"] == 1 << 20


def test_metrics_count_the_records_of_failed_batches_as_errors(root: str) -> None:
    make_topic(root)
    with Producer(root, linger_ms=60_000) as prod:
        for _ in range(7):
            prod.send("t", b"v")
        with Admin(root) as admin:
            admin.delete_topic("t")
        with pytest.raises(RecordsFailedError):
            prod.flush()
        m = prod.metrics()
    assert m["record-error-total"] == 7 and m["record-send-total"] == 0


def test_uncompressed_metrics_have_a_compression_rate_of_one(root: str) -> None:
    make_topic(root)
    with Producer(root) as prod:
        prod.send_batch("t", [b"a" * 100] * 10)
        m = prod.metrics()
    assert m["record-send-total"] == 10 and m["compression-rate-avg"] == 1.0
    assert m["byte-total"] >= _on_disk_bytes(root, "t")  # send()'s accounting: an upper bound


def test_kafka_pythons_own_default_partitioner_object_places_keys_as_logq_does(root: str) -> None:
    kp = pytest.importorskip("kafka.partitioner")
    make_topic(root, "t", 6)
    with Producer(root, partitioner=kp.DefaultPartitioner()) as theirs, Producer(root) as ours:
        for i in range(60):
            k = b"key-%d" % i
            assert theirs.send("t", b"v", key=k).get(10).partition == ours.send("t", b"v", key=k).get(10).partition
        assert theirs.send("t", b"no key").get(10).partition in range(6)  # random, as kafka-python does


def test_a_kafka_python_style_partitioner_object_gets_both_keys_values_and_the_cluster(root: str) -> None:
    make_topic(root, "t", 3)
    seen: list[tuple[Any, ...]] = []

    class ByValue:
        def partition(self, topic: str, key: Any, key_bytes: Any, value: Any, value_bytes: Any, cluster: Any) -> int:
            seen.append((topic, key, key_bytes, value, value_bytes, sorted(cluster.partitions_for_topic(topic))))
            assert topic in cluster.topics() and cluster.available_partitions_for_topic(topic) == {0, 1, 2}
            return len(value) % 3

    with Producer(root, partitioner=ByValue(), key_serializer="str", value_serializer="str") as prod:
        assert prod.send("t", "abcd", key="k").get(10).partition == 1
    assert seen == [("t", "k", b"k", "abcd", b"abcd", [0, 1, 2])]
