"""What the clients and groups raise on bad input, timeouts and use after close.

Every public call of Producer, Consumer, GroupMember, OffsetStore and the partitioner
raises a logq error (a leaf of logq/errors.py) where a builtin exception used to escape;
where a builtin is what a Python user would catch, the leaf is also that builtin (a
timeout is a TimeoutError, a bad argument a ValueError or TypeError).
"""

from __future__ import annotations

import fcntl
import inspect
import os
import time
from typing import Any

import logq
import pytest
from logq import (
    Admin,
    ClientClosedError,
    ConfigError,
    Consumer,
    DeserializationError,
    InvalidTopicError,
    LockTimeoutError,
    LogClosedError,
    LogLockedError,
    LogqError,
    LogqTimeoutError,
    Producer,
    SerializationError,
    TopicPartition,
)
from logq import errors as errors_module
from logq.client.partitioner import StickyPartitioner
from logq.groups.member import GroupMember
from logq.groups.offsets import OffsetStore
from logq.storage.log import PartitionLog


@pytest.fixture
def root(tmp_path: Any) -> str:
    path = str(tmp_path / "data")
    with Admin(path) as admin:
        admin.create_topic("t", 2)
    return path


def test_every_error_class_is_exported_from_logq() -> None:
    classes = [c for _, c in inspect.getmembers(errors_module, inspect.isclass) if issubclass(c, BaseException)]
    for cls in classes:
        assert cls.__name__ in logq.__all__, cls.__name__
        assert getattr(logq, cls.__name__) is cls
        assert issubclass(cls, LogqError)


def test_timeouts_are_logq_errors_and_builtin_timeouts() -> None:
    for cls in (LogqTimeoutError, LockTimeoutError):
        assert issubclass(cls, LogqError) and issubclass(cls, TimeoutError)
    assert issubclass(LockTimeoutError, LogLockedError)
    assert issubclass(ClientClosedError, LogClosedError)


# ----------------------------------------------------------------------------- timeouts


def test_record_future_result_times_out_with_a_logq_timeout(root: str) -> None:
    with Producer(root, linger_ms=60_000) as prod:
        fut = prod.send("t", b"v", partition=0)
        with pytest.raises(LogqTimeoutError, match="flush") as info:
            fut.result(0.01)
        assert isinstance(info.value, TimeoutError) and info.value.timeout == 0.01
        prod.flush()
        assert fut.result(0).offset == 0


def test_flush_times_out_with_a_logq_timeout_while_another_writer_holds_the_partition(root: str) -> None:
    with Producer(root, linger_ms=60_000) as prod:
        fut = prod.send("t", b"v", partition=1)
        lock = prod._drain_lock(("t", 1))
        lock.acquire()
        try:
            with pytest.raises(TimeoutError) as info:
                prod.flush(timeout=0.05)
            assert isinstance(info.value, LogqTimeoutError) and info.value.operation == "flush"
        finally:
            lock.release()
        prod.flush()
        assert fut.result(0).offset == 0


def test_a_group_lock_wait_that_runs_out_is_a_timeout_and_a_locked_error(root: str) -> None:
    store = OffsetStore.for_group(root, "g", lock_timeout_ms=50)
    fd = os.open(os.path.join(store.group_dir, "group.lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            store.committed("t", 0)
        assert time.monotonic() - t0 < 5
        assert isinstance(info.value, LockTimeoutError) and isinstance(info.value, LogLockedError)
        assert info.value.waited_ms == 50 and "waited 50 ms" in str(info.value)
    finally:
        os.close(fd)
        store.close()


# ----------------------------------------------------------------------------- closed clients


def test_closed_clients_raise_client_closed_error(root: str) -> None:
    prod = Producer(root)
    prod.close()
    with pytest.raises(ClientClosedError, match="producer"):
        prod.send("t", b"v")
    cons = Consumer(root, "t")
    cons.close()
    with pytest.raises(ClientClosedError, match="consumer"):
        cons.poll(0)
    member = GroupMember(root, "g", lambda: {"t": 2})
    member.close()
    with pytest.raises(ClientClosedError, match="group member"):
        member.poll_assignment()
    store = OffsetStore.for_group(root, "g")
    store.close()
    with pytest.raises(ClientClosedError, match="group lock"):
        store.committed("t", 0)


# ----------------------------------------------------------------------------- producer input


@pytest.mark.parametrize("ts", ["soon", float("inf"), float("nan"), 2**63, -(2**63), [1]])
def test_a_bad_timestamp_is_a_config_error_and_nothing_is_queued(root: str, ts: Any) -> None:
    with Producer(root, linger_ms=0) as prod:
        with pytest.raises(ConfigError, match="timestamp_ms"):
            prod.send("t", b"v", partition=0, timestamp_ms=ts)
        with pytest.raises(ConfigError, match="timestamp_ms"):
            prod.send_batch("t", [b"v"], partition=0, timestamp_ms=ts)
        assert prod.send("t", b"ok", partition=0, timestamp_ms=1_700_000_000_000).result(5).offset == 0


def test_timestamps_far_apart_still_share_a_batch(root: str) -> None:
    limit = 2**62
    with Producer(root, linger_ms=60_000) as prod:
        futs = [prod.send("t", b"v", partition=0, timestamp_ms=ts) for ts in (-limit, limit - 1, 0)]
        prod.flush()
        assert [f.result(0).timestamp for f in futs] == [-limit, limit - 1, 0]


@pytest.mark.parametrize("topic", [["t"], None, 3, "", "no/slash"])
def test_a_bad_topic_is_an_invalid_topic_error(root: str, topic: Any) -> None:
    with Producer(root) as prod:
        with pytest.raises(InvalidTopicError):
            prod.send(topic, b"v")
        with pytest.raises(InvalidTopicError):
            prod.send_batch(topic, [b"v"])


@pytest.mark.parametrize("values", [[b"ok", 1], [b"ok", None], 5, [b"ok", "str"]])
def test_bad_send_batch_values_are_a_serialization_error_and_nothing_is_written(root: str, values: Any) -> None:
    with Producer(root) as prod:
        with pytest.raises(SerializationError):
            prod.send_batch("t", values, partition=0)
    with PartitionLog(os.path.join(root, "t-0"), readonly=True) as lg:
        assert lg.log_end_offset == 0


def test_send_batch_accepts_any_iterable_of_bytes_like_values(root: str) -> None:
    with Producer(root) as prod:
        out = prod.send_batch("t", (v for v in [b"a", bytearray(b"b"), memoryview(b"c")]), partition=1)
    assert [(b.partition, b.base_offset, b.count) for b in out] == [(1, 0, 3)]


def test_a_failing_user_serializer_is_wrapped_with_its_error_as_the_cause(root: str) -> None:
    def boom(value: Any) -> bytes:
        raise ZeroDivisionError("user bug")

    with Producer(root, value_serializer=boom, key_serializer=boom) as prod:
        with pytest.raises(SerializationError, match="user bug") as info:
            prod.send("t", "v")
        assert isinstance(info.value.__cause__, ZeroDivisionError)
        with pytest.raises(SerializationError) as info:
            prod.send_batch("t", ["v"])
        assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_a_logq_bug_while_writing_is_not_disguised_as_a_serialization_error(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: PartitionLog, records: Any) -> Any:
        raise RuntimeError("bug in the log")

    with Producer(root, linger_ms=60_000) as prod:
        fut = prod.send("t", b"v", partition=0)
        monkeypatch.setattr(PartitionLog, "append", broken)
        with pytest.raises(RuntimeError, match="bug in the log"):
            prod.flush()
        with pytest.raises(RuntimeError, match="bug in the log"):
            fut.result(0)
        monkeypatch.undo()
        with pytest.raises(logq.RecordsFailedError, match="1 record") as info:
            prod.flush()  # still counted: a bug met by the linger thread would reach no caller
        assert isinstance(info.value.__cause__, RuntimeError)


def test_a_bad_size_for_the_sticky_partitioner_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="size"):
        StickyPartitioner(10).partition(None, 3, "12")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- consumer input


def test_a_failing_user_deserializer_is_wrapped_with_its_error_as_the_cause(root: str) -> None:
    with Producer(root) as prod:
        prod.send("t", b"v", partition=0).result(5)

    def boom(data: Any) -> Any:
        raise KeyError("user bug")

    with Consumer(root, "t", auto_offset_reset="earliest", value_deserializer=boom) as c:
        with pytest.raises(DeserializationError, match="t-0") as info:
            c.poll(1)
        assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.parametrize("tp", ["t", ("t",), ("t", 0, 1), None, (3, 0), ("t", "0"), ("t", -1)])
def test_a_malformed_topic_partition_is_an_invalid_topic_error(root: str, tp: Any) -> None:
    with Consumer(root, "t", group_id="g") as c:
        for call in (c.position, c.committed, c.resume, lambda x: c.seek(x, 0)):
            with pytest.raises(InvalidTopicError):
                call(tp)
        with pytest.raises(InvalidTopicError):
            c.commit({tp: 0})
        with pytest.raises(InvalidTopicError):
            c.offsets_for_times({tp: 0})
    with Consumer(root) as c, pytest.raises(InvalidTopicError):
        c.assign([tp])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: c.poll("1"), "timeout"),
        (lambda c: c.poll(float("nan")), "timeout"),
        (lambda c: c.poll(0, max_records="5"), "max_records"),
        (lambda c: c.assign(5), "partitions"),
        (lambda c: c.offsets_for_times({TopicPartition("t", 0): float("inf")}), "timestamp"),
        (lambda c: c.offsets_for_times({TopicPartition("t", 0): float("nan")}), "timestamp"),
    ],
)
def test_bad_consumer_arguments_are_config_errors(root: str, call: Any, match: str) -> None:
    with Consumer(root, "t") as c, pytest.raises(ConfigError, match=match):
        call(c)


def test_bad_subscriptions_and_idle_limits_are_config_errors(root: str) -> None:
    with Consumer(root, group_id="g") as c, pytest.raises(ConfigError, match="topics"):
        c.subscribe(5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="consumer_timeout_ms"):
        Consumer(root, "t", consumer_timeout_ms="10")  # type: ignore[arg-type]


def test_a_non_mapping_subscription_and_a_bad_wait_are_config_errors(root: str) -> None:
    with pytest.raises(ConfigError, match="subscription"):
        GroupMember(root, "g", lambda: [1])  # type: ignore[arg-type, return-value]
    with GroupMember(root, "g", lambda: {"t": 2}) as member, pytest.raises(ConfigError, match="timeout_ms"):
        member.wait_for_assignment("1")  # type: ignore[arg-type]


def test_offset_store_refuses_a_bad_partition_key(root: str) -> None:
    with OffsetStore.for_group(root, "g") as store:
        with pytest.raises(InvalidTopicError):
            store.committed(["t"], 0)  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            store.committed("t", "0")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- wake-ups


def test_the_fallback_wait_backs_off_and_starts_short_again_when_data_arrives(root: str) -> None:
    with Consumer(root, "t", auto_offset_reset="earliest") as c:
        c._watcher.close()  # no inotify: waits are sleeps that back off
        assert not c._watcher.native
        assert c.poll(0.05) == []
        assert c._watcher._sleep_s > 0.001  # idle: backed off
        with Producer(root) as prod:
            prod.send("t", b"v", partition=0).result(5)
        assert [r.value for r in c.poll(1)] == [b"v"]
        assert c._watcher._sleep_s == 0.0001  # data arrived: the next wait is short again
