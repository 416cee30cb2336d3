"""commit_async: queued at the call, written at the next poll (or commit, unsubscribe, close),
in order, each callback called exactly once with the offsets and None or the error; and
metrics(): the counters a Kafka user reads."""

from __future__ import annotations

from typing import Any

import pytest
from logq import (
    CommitFailedError,
    ConfigError,
    Consumer,
    InvalidOffsetCommitError,
    LogqError,
    Producer,
    TopicPartition,
)

from tests.support.clients import make_topic

T0 = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)
Calls = list[tuple[dict[TopicPartition, int], LogqError | None]]


@pytest.fixture
def data(root: str) -> str:
    make_topic(root, "t", 2)
    with Producer(root, linger_ms=0) as p:
        for i in range(10):
            p.send("t", b"%d" % i, partition=i % 2).result(10)
    return root


def consumer(root: str, **kw: Any) -> Consumer:
    return Consumer(root, group_id="g", auto_offset_reset="earliest", enable_auto_commit=False, **kw)


def recorder(calls: Calls, name: str = "") -> Any:
    def cb(offsets: dict[TopicPartition, int], exc: LogqError | None) -> None:
        calls.append((offsets, exc))

    return cb


def test_commit_async_is_written_at_the_next_poll_and_calls_back_once(data: str) -> None:
    calls: Calls = []
    with consumer(data) as c:
        c.assign([T0, T1])
        c.seek(T0, 3)
        c.commit_async(callback=recorder(calls))  # positions now: t-0 at 3, t-1 at 0
        c.seek(T0, 4)  # moving on does not change what was queued
        assert calls == [] and c.committed(T0) is None  # not yet written
        c.poll(0)
        assert calls == [({T0: 3, T1: 0}, None)]
        assert c.committed([T0, T1]) == {T0: 3, T1: 0}
        c.poll(0)
        assert len(calls) == 1  # exactly once


def test_later_commit_async_is_never_overwritten_by_an_earlier_one(data: str) -> None:
    calls: Calls = []
    with consumer(data) as c:
        c.assign([T0])
        for off in (1, 2, 3):
            c.commit_async({T0: off}, callback=recorder(calls))
        c.commit_async({T0: 4})  # no callback
        c.poll(0)
        assert [offs[T0] for offs, _ in calls] == [1, 2, 3]
        assert c.committed(T0) == 4


def test_commit_writes_queued_async_commits_first_so_its_own_offsets_stay(data: str) -> None:
    calls: Calls = []
    with consumer(data) as c:
        c.assign([T0])
        c.commit_async({T0: 2}, callback=recorder(calls))
        c.commit({T0: 5})
        assert calls == [({T0: 2}, None)]
        assert c.committed(T0) == 5
        c.poll(0)
        assert c.committed(T0) == 5


def test_close_and_unsubscribe_write_queued_async_commits(data: str) -> None:
    calls: Calls = []
    c = consumer(data)
    c.assign([T0])
    c.commit_async({T0: 2}, callback=recorder(calls))
    c.unsubscribe()
    assert calls == [({T0: 2}, None)]
    c.assign([T1])
    c.commit_async({T1: 1}, callback=recorder(calls))
    c.close(autocommit=False)  # autocommit is about positions; an explicit commit_async is kept
    assert calls[1] == ({T1: 1}, None)
    with consumer(data) as again:
        assert again.committed([T0, T1]) == {T0: 2, T1: 1}


def test_a_failed_commit_async_passes_its_error_to_the_callback_and_the_next_still_runs(data: str) -> None:
    calls: Calls = []
    with consumer(data) as c:
        c.assign([T0])
        c.commit_async({T0: 99}, callback=recorder(calls))  # past the log end (5)
        c.commit_async({T0: 1}, callback=recorder(calls))
        c.poll(0)
        assert isinstance(calls[0][1], InvalidOffsetCommitError) and calls[0][0] == {T0: 99}
        assert calls[1] == ({T0: 1}, None)
        assert c.committed(T0) == 1
        assert c.metrics()["commit-failed-total"] == 1


def test_a_commit_async_queued_before_a_rebalance_is_written_before_its_partition_is_revoked(data: str) -> None:
    calls: Calls = []
    revoked: list[set[TopicPartition]] = []
    a = consumer(data, initial_rebalance_delay_ms=0, on_revoke=revoked.append)
    a.subscribe(["t"])
    got = 0
    for _ in range(400):
        got += len(a.poll(0.05))
        if got == 10:
            break
    assert a.assignment() == {T0, T1}
    a.commit_async(callback=recorder(calls))  # positions: 5 and 5
    b = consumer(data, initial_rebalance_delay_ms=0)
    b.subscribe(["t"])  # the group rebalances: one partition moves to b
    for _ in range(400):
        a.poll(0.05)
        b.poll(0.05)
        if len(a.assignment()) == 1 and len(b.assignment()) == 1:
            break
    assert calls == [({T0: 5, T1: 5}, None)] and len(revoked) == 1
    (moved,) = b.assignment()
    assert b.position(moved) == 5  # b starts where a's async commit said: nothing re-read
    a.close()
    b.close()


def test_a_callback_that_raises_is_reraised_after_every_queued_commit_ran(data: str) -> None:
    calls: Calls = []

    def boom(offsets: dict[TopicPartition, int], exc: LogqError | None) -> None:
        raise RuntimeError("callback bug")

    with consumer(data) as c:
        c.assign([T0])
        c.commit_async({T0: 1}, callback=boom)
        c.commit_async({T0: 2}, callback=recorder(calls))
        with pytest.raises(RuntimeError, match="callback bug"):
            c.poll(0)
        assert calls == [({T0: 2}, None)] and c.committed(T0) == 2
        c.poll(0)  # nothing left queued: no second call of either


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"callback": 3}, "callback"),
        ({"offsets": [1]}, "offsets"),
        ({"offsets": {T0: -1}}, "an offset is an int >= 0"),
        ({"offsets": {T0: "3"}}, "an offset is an int >= 0"),
        ({"offsets": {T0: True}}, "an offset is an int >= 0"),
        ({"offsets": {("t", "0"): 1}}, "partition"),
    ],
)
def test_commit_async_checks_its_arguments_at_the_call(data: str, kw: dict[str, Any], match: str) -> None:
    with consumer(data) as c:
        with pytest.raises(LogqError, match=match):
            c.commit_async(**kw)
        c.assign([T0])
        c.poll(0)
        assert c.committed(T0) is None  # nothing was queued


def test_commit_async_needs_a_group(data: str) -> None:
    with Consumer(data, "t") as c:
        with pytest.raises(ConfigError, match="group_id"):
            c.commit_async()


def test_metrics_count_records_bytes_fetches_lag_and_commits(data: str) -> None:
    with consumer(data) as c:
        m = c.metrics()
        assert m["records-consumed-total"] == 0 and m["commit-total"] == 0 and m["assigned-partitions"] == 0
        c.assign([T0, T1])
        assert c.metrics()["records-lag-max"] == 5
        got = 0
        for _ in range(100):
            got += len(c.poll(0.05, max_records=3))
            if got == 10:
                break
        c.commit()
        c.commit_async()
        c.poll(0)
        m = c.metrics()
    assert m["records-consumed-total"] == 10
    assert m["bytes-consumed-total"] > 0 and m["fetch-total"] >= 2
    assert m["fetch-latency-max"] >= m["fetch-latency-avg"] > 0
    assert m["records-lag-max"] == 0 and m["assigned-partitions"] == 2
    assert m["commit-total"] == 2 and m["commit-failed-total"] == 0
    assert m["commit-latency-max"] >= m["commit-latency-avg"] > 0


def test_metrics_count_poll_columns_too(data: str) -> None:
    with Consumer(data, "t", auto_offset_reset="earliest") as c:
        got = 0
        for _ in range(100):
            got += len(c.poll_columns(0.05))
            if got == 10:
                break
        assert c.metrics()["records-consumed-total"] == 10


def test_a_commit_before_the_group_formed_fails_saying_nothing_is_assigned_yet(data: str) -> None:
    with consumer(data, initial_rebalance_delay_ms=3_600_000) as c:
        c.subscribe(["t"])
        with pytest.raises(CommitFailedError, match="nothing is assigned to this member yet"):
            c.commit({T0: 1})
        calls: Calls = []
        c.commit_async({T0: 1}, callback=recorder(calls))
        c.poll(0)
        assert isinstance(calls[0][1], CommitFailedError)
        assert c.committed(T0) is None
