"""Offset look-ups with kafka-python's names: beginning_offsets, end_offsets, topics,
partitions_for_topic, committed for one or many partitions, and unsubscribe; each checks its
arguments, refuses a closed consumer and keeps the one-thread rule."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from logq import (
    Admin,
    ClientClosedError,
    ConcurrentAccessError,
    ConfigError,
    Consumer,
    DeserializationError,
    InvalidTopicError,
    Producer,
    TopicPartition,
    UnknownTopicError,
)

from tests.support.clients import make_topic

T0 = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)


def produce(root: str, topic: str, partition: int, n: int) -> None:
    with Producer(root, linger_ms=0) as p:
        for i in range(n):
            p.send(topic, b"%d" % i, partition=partition).result(10)


def drain(c: Consumer, want: int) -> int:
    got = 0
    for _ in range(400):
        got += len(c.poll(0.05))
        if got >= want:
            break
    return got


@pytest.fixture
def two(root: str) -> str:
    """Topic t: partition 0 holds 5 records, partition 1 holds 2; topic u is empty."""
    make_topic(root, "t", 2)
    make_topic(root, "u", 3)
    produce(root, "t", 0, 5)
    produce(root, "t", 1, 2)
    return root


def test_end_offsets_are_the_next_offset_to_be_written_for_assigned_and_other_partitions(two: str) -> None:
    with Consumer(two) as c:
        c.assign([T0])
        assert c.end_offsets([T0, T1, ("u", 2)]) == {T0: 5, T1: 2, TopicPartition("u", 2): 0}
        produce(two, "t", 1, 3)
        assert c.end_offsets([T1]) == {T1: 5}  # read fresh, not cached
        assert c.end_offsets([]) == {}
        assert c.get_watermark_offsets(T1) == (0, 5)  # confluent-kafka's name for both


def test_beginning_offsets_follow_retention_deleting_the_head_of_the_log(root: str) -> None:
    make_topic(root, "t", 1, segment_bytes=200)
    produce(root, "t", 0, 30)
    with Consumer(root) as c:
        assert c.beginning_offsets([T0]) == {T0: 0}
        c.assign([T0])  # its log is now held open by the consumer
        assert c.beginning_offsets([T0]) == {T0: 0}
        with Admin(root) as a:
            a.delete_records("t", {0: 12})
        assert c.beginning_offsets([T0]) == {T0: 12}
        assert c.end_offsets([T0]) == {T0: 30}


def test_topics_and_partitions_for_topic_with_none_for_an_unknown_topic(two: str) -> None:
    with Consumer(two) as c:
        assert c.topics() == {"t", "u"}
        assert c.partitions_for_topic("t") == {0, 1}
        assert c.partitions_for_topic("u") == {0, 1, 2}
        assert c.partitions_for_topic("nope") is None
        make_topic(two, "late", 4)  # created by someone else after the consumer was built
        assert "late" in c.topics() and c.partitions_for_topic("late") == {0, 1, 2, 3}


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda c: c.end_offsets(T0), InvalidTopicError),  # one partition, not a list of them
        (lambda c: c.end_offsets("t"), ConfigError),
        (lambda c: c.beginning_offsets(5), ConfigError),
        (lambda c: c.beginning_offsets([("t", -1)]), InvalidTopicError),
        (lambda c: c.beginning_offsets([("t", 2)]), InvalidTopicError),  # t has 2 partitions
        (lambda c: c.end_offsets([("nope", 0)]), UnknownTopicError),
        (lambda c: c.partitions_for_topic(3), InvalidTopicError),
        (lambda c: c.partitions_for_topic("bad name!"), InvalidTopicError),
        (lambda c: c.committed(["t"]), InvalidTopicError),
        (lambda c: c.committed(7), InvalidTopicError),
        (lambda c: c.get_watermark_offsets([T0]), InvalidTopicError),
        (lambda c: c.get_watermark_offsets(("t", 9)), InvalidTopicError),
        (lambda c: c.committed("t"), InvalidTopicError),
    ],
)
def test_wrong_arguments_raise_logq_errors_naming_them(two: str, call: Any, error: type[Exception]) -> None:
    with Consumer(two, group_id="g") as c:
        with pytest.raises(error):
            call(c)


def test_committed_of_one_partition_is_an_offset_and_of_many_a_dict(two: str) -> None:
    with Consumer(two, "t", group_id="g", auto_offset_reset="earliest", enable_auto_commit=False) as c:
        assert drain(c, 7) == 7
        c.commit({T0: 4})
        assert c.committed(T0) == 4
        assert c.committed(("t", 0)) == 4  # a plain pair is one partition too
        assert c.committed([T0, T1, ("u", 0)]) == {T0: 4, T1: None, TopicPartition("u", 0): None}
        assert c.committed({T0}) == {T0: 4}
        assert c.committed([]) == {}


def test_committed_without_a_group_is_a_config_error(two: str) -> None:
    with Consumer(two, "t") as c:
        with pytest.raises(ConfigError, match="group_id"):
            c.committed([T0])


def test_every_new_method_refuses_a_closed_consumer(two: str) -> None:
    c = Consumer(two, "t", group_id="g")
    c.close()
    calls = [
        lambda: c.beginning_offsets([T0]),
        lambda: c.end_offsets([T0]),
        lambda: c.get_watermark_offsets(T0),
        lambda: c.topics(),
        lambda: c.partitions_for_topic("t"),
        lambda: c.committed(T0),
        lambda: c.committed([T0]),
        lambda: c.unsubscribe(),
        lambda: c.commit_async(),
        lambda: c.metrics(),
    ]
    for call in calls:
        with pytest.raises(ClientClosedError):
            call()


def test_new_methods_keep_the_one_thread_rule(two: str) -> None:
    inside, release = threading.Event(), threading.Event()

    def slow(value: bytes) -> bytes:
        inside.set()
        release.wait(30)
        return value

    c = Consumer(two, "t", group_id="g", auto_offset_reset="earliest", value_deserializer=slow)
    t = threading.Thread(target=lambda: c.poll(30))
    t.start()
    assert inside.wait(30)
    for call in (
        lambda: c.end_offsets([T0]),
        lambda: c.topics(),
        lambda: c.committed([T0]),
        lambda: c.unsubscribe(),
        lambda: c.commit_async(),
        lambda: c.metrics(),
    ):
        with pytest.raises(ConcurrentAccessError):
            call()
    release.set()
    t.join(30)
    assert not t.is_alive()
    c.close()


def test_unsubscribe_leaves_the_group_committing_and_revoking_and_subscribe_joins_again(two: str) -> None:
    revoked: list[set[TopicPartition]] = []
    c = Consumer(two, "t", group_id="g", auto_offset_reset="earliest", on_revoke=revoked.append)
    assert drain(c, 7) == 7
    c.unsubscribe()
    assert c.assignment() == set()
    assert revoked == [{T0, T1}]
    assert c.committed([T0, T1]) == {T0: 5, T1: 2}  # auto-commit committed what polls returned
    assert c.poll(0) == []
    with Consumer(two, "t", group_id="g") as other:  # the group has no member left: it takes all
        for _ in range(400):
            other.poll(0.05)
            if other.assignment() == {T0, T1}:
                break
        assert other.assignment() == {T0, T1}
    c.subscribe(["t"])
    produce(two, "t", 0, 1)
    assert drain(c, 1) == 1  # from the committed offsets: nothing re-read
    assert c.position(T0) == 6 and c.position(T1) == 2
    c.close()


def test_unsubscribe_without_auto_commit_commits_nothing(two: str) -> None:
    c = Consumer(two, "t", group_id="g", auto_offset_reset="earliest", enable_auto_commit=False)
    assert drain(c, 7) == 7
    c.unsubscribe()
    assert c.committed([T0, T1]) == {T0: None, T1: None}
    c.close()


def test_unsubscribe_drops_a_manual_assignment_and_assign_works_after(two: str) -> None:
    with Consumer(two, auto_offset_reset="earliest") as c:
        c.assign([T0])
        assert drain(c, 5) == 5
        c.unsubscribe()
        assert c.assignment() == set() and c.poll(0) == []
        with pytest.raises(ConfigError):
            c.position(T0)
        c.assign([T1])
        assert drain(c, 2) == 2
        c.unsubscribe()
        c.unsubscribe()  # twice is harmless


def test_seek_to_beginning_follows_a_log_start_another_process_moved(root: str) -> None:
    make_topic(root, "t", 1, segment_bytes=200)
    produce(root, "t", 0, 30)
    with Consumer(root, auto_offset_reset="earliest") as c:
        c.assign([T0])
        assert c.position(T0) == 0
        with Admin(root) as a:
            a.delete_records("t", {0: 12})
        c.seek_to_beginning(T0)
        assert c.position(T0) == 12


def test_a_value_skipped_by_seeking_past_it_stays_skipped_after_a_commit_and_a_restart(root: str) -> None:
    make_topic(root, "j", 1)
    with Producer(root, linger_ms=0) as p:
        for v in (b'{"n": 0}', b"not json", b'{"n": 2}', b'{"n": 3}'):
            p.send("j", v, partition=0).result(10)
    kw: dict[str, Any] = {"group_id": "g", "auto_offset_reset": "earliest", "value_deserializer": "json"}
    seen: list[Any] = []
    with Consumer(root, "j", **kw) as c:
        while len(seen) < 1:
            seen += [r.value for r in c.poll(0.05)]
        with pytest.raises(DeserializationError) as info:
            for _ in range(400):
                c.poll(0.05)
        err = info.value
        assert (err.topic, err.partition, err.offset) == ("j", 0, 1)
        assert c.position(TopicPartition("j", 0)) == 1  # paused on it until skipped
        c.seek(TopicPartition(err.topic, err.partition), err.offset + 1)
        seen += [r.value for r in c.poll(5)]
        c.commit()
    with Consumer(root, "j", **kw) as again:
        assert again.committed(TopicPartition("j", 0)) == 4
    assert seen == [{"n": 0}, {"n": 2}, {"n": 3}]
