"""The consumer API: assign, subscribe, poll, commit, positions and seeks, pause, lag, the
auto_offset_reset policies, retention under a committed offset, replay by offset and by
time (Kafka's offsetsForTimes rule), deserializers, iteration, auto-commit and rebalance
callbacks.

Group consumers here that check their assignment (or commit, or read from "latest") right after
they are built pass ``initial_rebalance_delay_ms=0``: a group's start-up delay is tested in
tests/groups/test_group_startup.py."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import re
import time
from typing import Any

import pytest
from logq import (
    Admin,
    ConfigError,
    Consumer,
    LogClosedError,
    NoOffsetForPartitionError,
    OffsetAndTimestamp,
    Producer,
    Record,
    TopicPartition,
    UnknownTopicError,
)
from logq.errors import DeserializationError, InvalidOffsetCommitError

from tests.support import e2e_children as children
from tests.support.clients import make_topic

CTX = multiprocessing.get_context("spawn")
T0 = 1_700_000_000_000
TP0 = TopicPartition("t", 0)


def produce(
    root: str, topic: str, values: list[bytes], partition: int = 0, timestamps: list[int] | None = None, **kw: Any
) -> list[int]:
    """Append values (one batch each) and return their offsets."""
    with Producer(root, linger_ms=0, **kw) as prod:
        return [
            prod.send(topic, v, partition=partition, timestamp_ms=None if timestamps is None else timestamps[i])
            .result(10)
            .offset
            for i, v in enumerate(values)
        ]


def drain(c: Consumer, want: int, timeout_s: float = 30.0) -> list[Record]:
    """Poll until ``want`` records arrived (a generous bound for liveness only)."""
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < deadline:
        out.extend(c.poll(0.05))
    return out


def vals(recs: list[Record]) -> list[Any]:
    return [r.value for r in recs]


# ----------------------------------------------------------------------------- assignment


def test_assign_reads_only_the_given_partitions(root: str) -> None:
    make_topic(root, "t", 3)
    for p in range(3):
        produce(root, "t", [b"p%d" % p], partition=p)
    with Consumer(root, auto_offset_reset="earliest") as c:
        c.assign([("t", 2), TopicPartition("t", 0)])
        assert c.assignment() == {TopicPartition("t", 0), TopicPartition("t", 2)}
        got = drain(c, 2)
        assert sorted(vals(got)) == [b"p0", b"p2"]
        assert c.poll(0.05) == []


def test_consumer_without_group_reads_every_partition_of_its_topics(root: str) -> None:
    make_topic(root, "t", 3)
    for p in range(3):
        produce(root, "t", [b"p%d" % p], partition=p)
    with Consumer(root, "t", auto_offset_reset="earliest") as c:
        assert c.assignment() == {TopicPartition("t", p) for p in range(3)}
        assert sorted(vals(drain(c, 3))) == [b"p0", b"p1", b"p2"]


def test_subscribe_alone_in_a_group_gets_every_partition(root: str) -> None:
    make_topic(root, "t", 4)
    with Consumer(root, group_id="g", initial_rebalance_delay_ms=0) as c:
        c.subscribe(["t"])
        assert c.assignment() == {TopicPartition("t", p) for p in range(4)}


def test_subscribe_needs_a_group_and_a_subscribed_consumer_cannot_assign(root: str) -> None:
    make_topic(root)
    with Consumer(root) as c:
        with pytest.raises(ConfigError):
            c.subscribe(["t"])
    with Consumer(root, "t", group_id="g") as c:
        with pytest.raises(ConfigError):
            c.assign([("t", 0)])


def test_subscribe_to_an_unknown_topic_raises(root: str) -> None:
    make_topic(root)
    with Consumer(root, group_id="g") as c:
        with pytest.raises(UnknownTopicError):
            c.subscribe(["missing"])


def test_subscribe_to_a_pattern_picks_up_matching_topics_created_later(root: str) -> None:
    make_topic(root, "ev-a", 2)
    make_topic(root, "other")
    with Consumer(
        root, group_id="g", initial_rebalance_delay_ms=0, auto_offset_reset="earliest", session_timeout_ms=600
    ) as c:
        c.subscribe(re.compile(r"ev-.*"))
        assert c.assignment() == {TopicPartition("ev-a", 0), TopicPartition("ev-a", 1)}
        make_topic(root, "ev-b")
        produce(root, "ev-b", [b"late topic"])
        got = drain(c, 1)
        assert [(r.topic, r.value) for r in got] == [("ev-b", b"late topic")]
        assert TopicPartition("ev-b", 0) in c.assignment()
        assert not any(tp.topic == "other" for tp in c.assignment())


def test_records_come_in_offset_order_and_poll_respects_max_records(root: str) -> None:
    make_topic(root)
    produce(root, "t", [b"%d" % i for i in range(20)])
    with Consumer(root, "t", auto_offset_reset="earliest", max_poll_records=7) as c:
        first = c.poll(5)
        assert [r.offset for r in first] == list(range(7))
        assert [r.offset for r in c.poll(5, max_records=3)] == [7, 8, 9]
        rest = drain(c, 10)
        assert [r.offset for r in rest] == list(range(10, 20))
        assert all(isinstance(r, Record) and r.topic == "t" and r.partition == 0 for r in first + rest)


# ----------------------------------------------------------------------------- polling


def test_poll_on_an_empty_topic_returns_an_empty_list_after_the_timeout(root: str) -> None:
    make_topic(root, "t", 2)
    for kw in ({}, {"group_id": "g"}):
        with Consumer(root, "t", auto_offset_reset="earliest", **kw) as c:
            t0 = time.monotonic()
            assert c.poll(0.2) == []
            assert time.monotonic() - t0 >= 0.2
            assert c.poll(0) == []


def test_poll_wakes_when_another_process_appends(root: str) -> None:
    make_topic(root)
    with Consumer(root, "t", auto_offset_reset="latest") as c:
        child = CTX.Process(target=children.append_after, args=(root, "t", 0, 0.5, b"from-child"))
        child.start()
        try:
            t0 = time.monotonic()
            got = c.poll(timeout=60)  # returns as soon as the record is there
            waited = time.monotonic() - t0
        finally:
            child.join(60)
        assert child.exitcode == 0
        assert vals(got) == [b"from-child"]
        assert waited < 60


# ----------------------------------------------------------------------------- commits


def test_committed_is_none_before_any_commit_and_the_next_offset_after(root: str) -> None:
    make_topic(root)
    produce(root, "t", [b"a", b"b", b"c"])
    with Consumer(root, "t", group_id="g", auto_offset_reset="earliest", enable_auto_commit=False) as c:
        assert c.committed(TP0) is None
        assert vals(c.poll(5, max_records=2)) == [b"a", b"b"]
        assert c.position(TP0) == 2
        c.commit()
        assert c.committed(TP0) == 2  # the next offset to read, as in Kafka


def test_a_new_group_member_resumes_right_after_the_last_commit(root: str) -> None:
    make_topic(root)
    produce(root, "t", [b"%d" % i for i in range(10)])
    with Consumer(root, "t", group_id="g", auto_offset_reset="earliest", enable_auto_commit=False) as c:
        assert [r.offset for r in c.poll(5, max_records=4)] == [0, 1, 2, 3]
        c.commit()
        c.poll(5, max_records=3)  # read but never committed
        c.close(autocommit=False)
    with Consumer(root, "t", group_id="g", auto_offset_reset="earliest") as c2:
        assert [r.offset for r in drain(c2, 6)] == [4, 5, 6, 7, 8, 9]


def test_commit_of_explicit_offsets(root: str) -> None:
    make_topic(root, "t", 2)
    produce(root, "t", [b"a", b"b", b"c"], partition=1)
    with Consumer(root, "t", group_id="g", initial_rebalance_delay_ms=0, enable_auto_commit=False) as c:
        c.commit({TopicPartition("t", 1): 2})
        assert c.committed(("t", 1)) == 2
        assert c.committed(("t", 0)) is None


def test_commit_beyond_the_log_end_is_refused_and_changes_nothing(root: str) -> None:
    make_topic(root)
    produce(root, "t", [b"a", b"b"])
    with Consumer(root, "t", group_id="g", initial_rebalance_delay_ms=0, enable_auto_commit=False) as c:
        c.commit({TP0: 1})
        with pytest.raises(InvalidOffsetCommitError):
            c.commit({TP0: 3})
        assert c.committed(TP0) == 1
        c.commit({TP0: 2})  # the log end itself is fine
        assert c.committed(TP0) == 2


def test_commit_of_an_empty_map_commits_nothing(root: str) -> None:
    """Regression: commit({}) used to commit every position, like commit()."""
    make_topic(root)
    produce(root, "t", [b"a", b"b", b"c"])
    with Consumer(root, "t", group_id="g", auto_offset_reset="earliest", enable_auto_commit=False) as c:
        drain(c, 3)
        c.commit({})
        assert c.committed(TP0) is None


def test_commit_and_committed_need_a_group(root: str) -> None:
    make_topic(root)
    with Consumer(root, "t") as c:
        with pytest.raises(ConfigError):
            c.commit()
        with pytest.raises(ConfigError):
            c.committed(TP0)


# ----------------------------------------------------------------------------- positions


def test_position_is_the_next_offset_to_read(root: str) -> None:
    make_topic(root)
    produce(root, "t", [b"a", b"b", b"c"])
    with Consumer(root, "t", auto_offset_reset="earliest") as c:
        assert c.position(TP0) == 0
        c.poll(5, max_records=2)
        assert c.position(TP0) == 2
        with pytest.raises(ConfigError):
            c.position(("t", 5))


def test_seek_rereads_from_the_given_offset(root: str) -> None:
    make_topic(root)
    produce(root, "t", [b"%d" % i for i in range(5)])
    with Consumer(root, "t", auto_offset_reset="earliest") as c:
        drain(c, 5)
        c.seek(TP0, 2)
        assert [r.offset for r in drain(c, 3)] == [2, 3, 4]
        with pytest.raises(ConfigError):
            c.seek(TP0, -1)
        with pytest.raises(ConfigError):
            c.seek(("t", 3), 0)


def test_seek_drops_records_already_fetched_but_not_returned(root: str) -> None:
    make_topic(root)
    produce(root, "t", [b"%d" % i for i in range(5)])  # five batches: force one read of all
    with Consumer(root, "t", auto_offset_reset="earliest") as c:
        assert [r.offset for r in c.poll(5, max_records=1)] == [0]
        c.seek(TP0, 3)
        assert [r.offset for r in drain(c, 2)] == [3, 4]


def test_seek_to_beginning_and_to_end(root: str) -> None:
    make_topic(root, "t", 2)
    produce(root, "t", [b"a", b"b", b"c"], partition=0)
    produce(root, "t", [b"x"], partition=1)
    with Admin(root) as admin:
        admin.delete_records("t", {0: 1})
    with Consumer(root, "t", auto_offset_reset="latest") as c:
        assert c.position(TP0) == 3
        c.seek_to_beginning(TP0)
        assert c.position(TP0) == 1  # the log start, not 0
        assert c.position(("t", 1)) == 1
        c.seek_to_beginning()
        assert vals(drain(c, 3)) and c.position(("t", 1)) == 1
        c.seek_to_end()
        assert c.position(TP0) == 3 and c.position(("t", 1)) == 1
        assert c.poll(0.05) == []


def test_pause_stops_delivery_and_resume_restarts_it(root: str) -> None:
    make_topic(root, "t", 2)
    produce(root, "t", [b"a0", b"a1"], partition=0)
    produce(root, "t", [b"b0"], partition=1)
    with Consumer(root, "t", auto_offset_reset="earliest") as c:
        c.pause(TP0)
        assert c.paused() == {TP0}
        assert vals(drain(c, 1)) == [b"b0"]
        assert c.poll(0.1) == []
        c.resume(TP0)
        assert c.paused() == set()
        assert vals(drain(c, 2)) == [b"a0", b"a1"]


def test_lag_is_the_log_end_minus_the_position(root: str) -> None:
    make_topic(root, "t", 2)
    produce(root, "t", [b"a", b"b", b"c"], partition=0)
    with Consumer(root, "t", auto_offset_reset="earliest") as c:
        assert c.lag() == {TP0: 3, TopicPartition("t", 1): 0}
        c.poll(5, max_records=1)
        assert c.lag()[TP0] == 2
        produce(root, "t", [b"d"], partition=0)
        assert c.lag()[TP0] == 3


def test_close_is_idempotent_and_a_closed_consumer_refuses_work(root: str) -> None:
    make_topic(root)
    c = Consumer(root, "t", group_id="g")
    c.close()
    c.close()
    with pytest.raises(LogClosedError):
        c.poll(0)
    with pytest.raises(LogClosedError):
        c.commit()


def test_close_leaves_the_group_so_its_partitions_can_move(root: str) -> None:
    make_topic(root, "t", 2)
    c = Consumer(root, "t", group_id="g")
    c.close()
    with Admin(root) as admin:
        assert admin.describe_group("g").members == []


# ----------------------------------------------------------------------------- resets


def test_auto_offset_reset_earliest_starts_at_the_log_start(root: str) -> None:
    make_topic(root)
    produce(root, "t", [b"a", b"b", b"c"])
    with Admin(root) as admin:
        admin.delete_records("t", {0: 1})
    with Consumer(root, "t", group_id="g", auto_offset_reset="earliest") as c:
        assert vals(drain(c, 2)) == [b"b", b"c"]


def test_auto_offset_reset_latest_skips_what_exists_and_gets_what_comes(root: str) -> None:
    make_topic(root)
    produce(root, "t", [b"old"])
    with Consumer(root, "t", group_id="g", initial_rebalance_delay_ms=0, auto_offset_reset="latest") as c:
        assert c.poll(0.05) == []
        produce(root, "t", [b"new"])
        assert vals(drain(c, 1)) == [b"new"]


def test_auto_offset_reset_error_raises_no_offset_for_partition(root: str) -> None:
    make_topic(root)
    produce(root, "t", [b"a"])
    with pytest.raises(NoOffsetForPartitionError):
        Consumer(root, "t", group_id="g", initial_rebalance_delay_ms=0, auto_offset_reset="error")
    with Consumer(
        root, "t", group_id="g2", initial_rebalance_delay_ms=0, auto_offset_reset="earliest", enable_auto_commit=False
    ) as c:
        c.commit({TP0: 1})
    with Consumer(root, "t", group_id="g2", initial_rebalance_delay_ms=0, auto_offset_reset="error") as c:
        assert c.position(TP0) == 1  # a committed offset needs no reset


def test_bad_auto_offset_reset_is_a_config_error(root: str) -> None:
    with pytest.raises(ConfigError):
        Consumer(root, auto_offset_reset="smallest-ish")


@pytest.mark.parametrize("policy", ["earliest", "latest"])
def test_committed_offset_below_the_log_start_resumes_at_the_log_start_without_skipping(root: str, policy: str) -> None:
    make_topic(root)
    produce(root, "t", [b"%d" % i for i in range(10)])
    with Consumer(root, "t", group_id="g", initial_rebalance_delay_ms=0, enable_auto_commit=False) as c:
        c.commit({TP0: 2})
    with Admin(root) as admin:
        admin.delete_records("t", {0: 6})
    with Consumer(root, "t", group_id="g", initial_rebalance_delay_ms=0, auto_offset_reset=policy) as c:
        assert c.position(TP0) == 6
        assert [r.offset for r in drain(c, 4)] == [6, 7, 8, 9]


def test_committed_offset_below_the_log_start_with_reset_error_raises(root: str) -> None:
    make_topic(root)
    produce(root, "t", [b"%d" % i for i in range(4)])
    with Consumer(root, "t", group_id="g", initial_rebalance_delay_ms=0, enable_auto_commit=False) as c:
        c.commit({TP0: 1})
    with Admin(root) as admin:
        admin.delete_records("t", {0: 3})
    with pytest.raises(NoOffsetForPartitionError):
        Consumer(root, "t", group_id="g", initial_rebalance_delay_ms=0, auto_offset_reset="error")


def test_records_purged_by_delete_records_while_reading_are_not_delivered(root: str) -> None:
    """Regression: a reader positioned below a log start moved elsewhere (delete_records by
    another log instance) kept returning the purged records of the active segment."""
    make_topic(root)
    produce(root, "t", [b"%d" % i for i in range(10)])
    # fetch_max_bytes=1: one batch (here one record) per read, so nothing is prefetched
    with Consumer(root, "t", auto_offset_reset="earliest", fetch_max_bytes=1) as c:
        assert [r.offset for r in c.poll(5)] == [0]
        assert [r.offset for r in c.poll(5)] == [1]
        with Admin(root) as admin:
            admin.delete_records("t", {0: 7})
        assert [r.offset for r in drain(c, 3)] == [7, 8, 9]


# ----------------------------------------------------------------------------- replay


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


@pytest.fixture
def timed(root: str) -> str:
    """Partition 0 holds offsets 0..5 with timestamps T0 + [0, 10, 10, 30, 20, 50] ms."""
    make_topic(root, "t", 2)
    produce(root, "t", [b"r%d" % i for i in range(6)], timestamps=[T0 + d for d in (0, 10, 10, 30, 20, 50)])
    return root


def test_replay_from_offset_seeks_every_assigned_partition(timed: str) -> None:
    produce(timed, "t", [b"x", b"y", b"z"], partition=1)
    with Consumer(timed, "t", auto_offset_reset="latest") as c:
        assert c.replay_from(offset=1) == {TP0: 1, TopicPartition("t", 1): 1}
        got = drain(c, 7)
        assert sorted((r.partition, r.offset) for r in got) == [(0, o) for o in range(1, 6)] + [(1, 1), (1, 2)]


def test_replay_from_an_offset_past_a_partitions_end_lands_on_its_end_and_close_commits_it(timed: str) -> None:
    # partition 1 is empty: replaying "from 3" there must not leave a position past the log
    # end, which the group could not commit (close() used to raise InvalidOffsetCommitError)
    with Consumer(timed, "t", group_id="g", auto_offset_reset="latest", initial_rebalance_delay_ms=0) as c:
        drain(c, 0, timeout_s=0.2)
        assert c.replay_from(offset=3) == {TP0: 3, TopicPartition("t", 1): 0}
    produce(timed, "t", [b"late"], partition=1)
    with Consumer(timed, "t", group_id="g", initial_rebalance_delay_ms=0) as c:
        got = drain(c, 4)
        assert sorted((r.partition, r.offset) for r in got) == [(0, 3), (0, 4), (0, 5), (1, 0)]


def test_a_seek_past_the_log_end_is_committed_as_the_log_end_by_close(timed: str) -> None:
    with Consumer(timed, "t", group_id="g", initial_rebalance_delay_ms=0) as c:
        drain(c, 0, timeout_s=0.2)
        c.seek(TP0, 100)
    with Consumer(timed, "t", group_id="g", initial_rebalance_delay_ms=0) as c:
        assert c.committed(TP0) == 6


@pytest.mark.parametrize(
    "delta, expected", [(-5, 0), (0, 0), (1, 1), (10, 1), (11, 3), (15, 3), (20, 3), (30, 3), (31, 5), (50, 5)]
)
def test_replay_from_timestamp_lands_on_the_first_offset_with_timestamp_at_or_after(
    timed: str, delta: int, expected: int
) -> None:
    with Consumer(timed, "t", auto_offset_reset="latest") as c:
        landed = c.replay_from(timestamp=_utc(T0 + delta), partitions=[TP0])
        assert landed == {TP0: expected}
        assert c.poll(5)[0].offset == expected
        assert c.offsets_for_times({TP0: T0 + delta})[TP0] == OffsetAndTimestamp(
            expected, T0 + (0, 10, 10, 30, 20, 50)[expected]
        )


def test_replay_from_timestamp_past_the_last_one_goes_to_the_log_end(timed: str) -> None:
    with Consumer(timed, "t", auto_offset_reset="earliest") as c:
        assert c.replay_from(timestamp=_utc(T0 + 51)) == {TP0: 6, TopicPartition("t", 1): 0}
        assert c.poll(0.05) == []


def test_offsets_for_times_is_none_past_the_last_timestamp_and_for_an_empty_partition(timed: str) -> None:
    with Consumer(timed, "t") as c:
        got = c.offsets_for_times({TP0: T0 + 51, TopicPartition("t", 1): T0, TopicPartition("t", 0): T0 + 50})
        assert got == {TP0: OffsetAndTimestamp(5, T0 + 50), TopicPartition("t", 1): None}
        assert c.offsets_for_times({TP0: T0 + 51}) == {TP0: None}


def test_replay_from_needs_exactly_one_of_offset_and_timestamp(timed: str) -> None:
    with Consumer(timed, "t") as c:
        with pytest.raises(ConfigError):
            c.replay_from()
        with pytest.raises(ConfigError):
            c.replay_from(offset=0, timestamp=T0)


def test_replay_from_timestamp_on_a_topic_with_several_segments(root: str) -> None:
    make_topic(root, segment_bytes=400, retention_ms=-1)  # T0 is long past any retention
    produce(root, "t", [b"v" * 40 for _ in range(40)], timestamps=[T0 + 100 * i for i in range(40)])
    with Admin(root) as admin:
        assert admin.describe_topic("t").partitions[0].segments > 3
    with Consumer(root, "t") as c:
        assert c.replay_from(timestamp=_utc(T0 + 2050)) == {TP0: 21}
        assert c.poll(5)[0].timestamp == T0 + 2100


# ----------------------------------------------------------------------------- serde, iteration


def test_key_and_value_deserializers(root: str) -> None:
    make_topic(root)
    with Producer(root, linger_ms=0, key_serializer="str", value_serializer="json") as prod:
        prod.send("t", {"a": [1, "é"]}, key="k").result(10)
        prod.send("t", None, key=None).result(10)
    with Consumer(root, "t", auto_offset_reset="earliest", key_deserializer="str", value_deserializer="json") as c:
        got = drain(c, 2)
        assert [(r.key, r.value) for r in got] == [("k", {"a": [1, "é"]}), (None, None)]


def test_a_bad_record_for_the_deserializer_raises_deserialization_error(root: str) -> None:
    make_topic(root)
    produce(root, "t", [b"not json"])
    with Consumer(root, "t", auto_offset_reset="earliest", value_deserializer="json") as c:
        with pytest.raises(DeserializationError):
            drain(c, 1)


def test_pickle_deserializer_is_refused(root: str) -> None:
    with pytest.raises(ConfigError):
        Consumer(root, value_deserializer="pickle")


def test_iteration_yields_every_record_and_stops_after_consumer_timeout_ms(root: str) -> None:
    make_topic(root, "t", 2)
    produce(root, "t", [b"a", b"b"], partition=0)
    produce(root, "t", [b"c"], partition=1)
    with Consumer(root, "t", auto_offset_reset="earliest", consumer_timeout_ms=100) as c:
        got = list(c)  # ends by itself once nothing came for 100 ms
    assert sorted(vals(got)) == [b"a", b"b", b"c"]


def test_iteration_never_waits_in_one_poll_longer_than_consumer_timeout_ms(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: iteration polled with a fixed 0.5 s timeout, so a record arriving after a
    gap longer than consumer_timeout_ms (but shorter than 0.5 s) kept the iteration going."""
    make_topic(root)
    waits: list[float] = []
    real_poll = Consumer.poll

    def spy(self: Consumer, timeout: float = 1.0, max_records: int | None = None) -> list[Record]:
        waits.append(timeout)
        return real_poll(self, timeout, max_records)

    monkeypatch.setattr(Consumer, "poll", spy)
    with Consumer(root, "t", auto_offset_reset="earliest", consumer_timeout_ms=100) as c:
        assert list(c) == []
    assert waits and all(w <= 0.1 for w in waits)


# ----------------------------------------------------------------------------- auto-commit


def test_auto_commit_commits_positions_on_close(root: str) -> None:
    make_topic(root)
    produce(root, "t", [b"a", b"b", b"c"])
    with Consumer(root, "t", group_id="g", auto_offset_reset="earliest", auto_commit_interval_ms=3_600_000) as c:
        drain(c, 3)
        assert c.committed(TP0) is None  # the interval has not passed
    with Admin(root) as admin:
        assert admin.committed_offsets("g") == {("t", 0): 3}


def test_close_without_autocommit_and_disabled_auto_commit_commit_nothing(root: str) -> None:
    make_topic(root)
    produce(root, "t", [b"a"])
    with Consumer(root, "t", group_id="g1", auto_offset_reset="earliest") as c:
        drain(c, 1)
        c.close(autocommit=False)
    with Consumer(root, "t", group_id="g2", auto_offset_reset="earliest", enable_auto_commit=False) as c:
        drain(c, 1)
    with Admin(root) as admin:
        assert admin.committed_offsets("g1") == {} and admin.committed_offsets("g2") == {}


def test_auto_commit_commits_at_the_interval_without_close(root: str) -> None:
    make_topic(root)
    produce(root, "t", [b"a", b"b"])
    with Consumer(root, "t", group_id="g", auto_offset_reset="earliest", auto_commit_interval_ms=50) as c:
        drain(c, 2)
        deadline = time.monotonic() + 30
        while c.committed(TP0) != 2 and time.monotonic() < deadline:
            c.poll(0.05)  # the commit happens at the start of a poll once the interval passed
        assert c.committed(TP0) == 2


# ----------------------------------------------------------------------------- rebalances


class Calls:
    def __init__(self) -> None:
        self.assigned: list[set[TopicPartition]] = []
        self.revoked: list[set[TopicPartition]] = []

    def on_assign(self, tps: set[TopicPartition]) -> None:
        self.assigned.append(set(tps))

    def on_revoke(self, tps: set[TopicPartition]) -> None:
        self.revoked.append(set(tps))


def _settle(consumers: list[Consumer], want: list[int], timeout_s: float = 30.0) -> list[Record]:
    """Poll every consumer until each owns ``want[i]`` partitions (bounded wait).

    Returns the records those polls delivered."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while [len(c.assignment()) for c in consumers] != want and time.monotonic() < deadline:
        for c in consumers:
            got.extend(c.poll(0.02))
    assert [len(c.assignment()) for c in consumers] == want
    return got


def test_rebalance_callbacks_fire_with_the_moved_partitions(root: str) -> None:
    make_topic(root, "t", 4)
    all4 = {TopicPartition("t", p) for p in range(4)}
    a_calls, b_calls = Calls(), Calls()
    a = Consumer(
        root,
        "t",
        group_id="g",
        initial_rebalance_delay_ms=0,
        session_timeout_ms=1000,
        on_assign=a_calls.on_assign,
        on_revoke=a_calls.on_revoke,
    )
    assert a_calls.assigned == [all4] and a_calls.revoked == []
    b = Consumer(
        root,
        "t",
        group_id="g",
        initial_rebalance_delay_ms=0,
        session_timeout_ms=1000,
        on_assign=b_calls.on_assign,
        on_revoke=b_calls.on_revoke,
    )
    _settle([a, b], [2, 2])
    assert len(a_calls.revoked) == 1 and len(b_calls.assigned) == 1
    moved = a_calls.revoked[0]
    assert len(moved) == 2 and b_calls.assigned[0] == moved == b.assignment()
    assert a.assignment() == all4 - moved
    b.close()
    assert b_calls.revoked == [moved]  # leaving revokes what it held
    _settle([a], [4])
    assert a_calls.assigned[1:] == [moved]
    a.close()
    assert a_calls.revoked[-1] == all4


def test_revoked_partitions_are_committed_so_the_new_owner_continues_without_duplicates(root: str) -> None:
    make_topic(root, "t", 2)
    produce(root, "t", [b"a%d" % i for i in range(5)], partition=0)
    produce(root, "t", [b"b%d" % i for i in range(5)], partition=1)
    a = Consumer(root, "t", group_id="g", auto_offset_reset="earliest", session_timeout_ms=1000)
    first = drain(a, 10)
    produce(root, "t", [b"a5"], partition=0)
    produce(root, "t", [b"b5"], partition=1)
    b = Consumer(root, "t", group_id="g", auto_offset_reset="earliest", session_timeout_ms=1000)
    during = _settle([a, b], [1, 1])
    later = during + drain(a, 2 - len(during), timeout_s=0.5) + drain(b, 2 - len(during), timeout_s=0.5)
    assert sorted(vals(first + later)) == sorted([b"a%d" % i for i in range(6)] + [b"b%d" % i for i in range(6)])
    a.close()
    b.close()
