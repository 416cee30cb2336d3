"""The misuse tier for the clients: what a new user does wrong must never lose an accepted
record, never fail silently, and never return a wrong answer (issue 9, items 2, 5, 6, 7, 8).

- lifecycles: a Producer never closed (script exit, garbage collection), a Producer used
  after ``os.fork()``;
- one bad record among good ones, and resource errors while writing in the background;
- one Consumer used from two threads, ``wakeup()`` and ``close()`` from another thread;
- timestamps in the wrong unit or without a time zone (under a non-UTC ``TZ``);
- every public argument of Producer and Consumer given a wrong type or value.

Processes are real: exit and fork run in a child interpreter started with subprocess.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import logq
import pytest
from logq import (
    Admin,
    ConcurrentAccessError,
    ConfigError,
    Consumer,
    LogqError,
    Producer,
    RecordsFailedError,
    SerializationError,
    StorageError,
    TopicPartition,
)
from logq.storage.log import PartitionLog

T0 = 1_700_000_000_000
TP0 = TopicPartition("t", 0)
HANG_GUARD_S = 120  # only so that a regression fails instead of hanging the suite


@pytest.fixture
def root(tmp_path: Path) -> str:
    path = str(tmp_path / "data")
    with Admin(path) as admin:
        admin.create_topic("t", 2)
    return path


def stored(root: str, topic: str = "t") -> list[bytes]:
    """Every value in the topic, read by a fresh consumer, partition by partition."""
    out: list[bytes] = []
    with Admin(root) as admin:
        n = admin.describe_topic(topic).partitions
        n = n if isinstance(n, int) else len(n)
    for p in range(n):
        with Consumer(root, auto_offset_reset="earliest") as c:
            c.assign([TopicPartition(topic, p)])
            while batch := c.poll(0):
                out.extend(r.value for r in batch)
    return out


def run_child(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (argv[1:] = args); return it finished."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        env={**os.environ, **(env or {})},
    )


# ----------------------------------------------------------------------------- item 2: lifecycles


def test_a_producer_never_closed_still_stores_every_accepted_record_at_exit(root: str) -> None:
    child = run_child(
        """
        import sys
        from logq import Producer
        p = Producer(sys.argv[1], linger_ms=60_000)  # nothing is due before the script ends
        for i in range(1000):
            p.send("t", b"%d" % i, partition=i % 2)
        """,
        root,
    )
    assert child.returncode == 0, child.stderr
    assert sorted(stored(root), key=int) == [b"%d" % i for i in range(1000)]


def test_a_producer_dropped_without_close_writes_its_records_when_collected(root: str) -> None:
    def send_and_drop() -> list[logq.RecordFuture]:
        p = Producer(root, linger_ms=60_000)
        return [p.send("t", b"v%d" % i, partition=0) for i in range(100)]

    futures = send_and_drop()
    gc.collect()
    assert [f.result(HANG_GUARD_S).offset for f in futures] == list(range(100))
    assert len(stored(root)) == 100


def test_records_a_producer_could_not_write_at_exit_are_counted_in_a_warning(root: str) -> None:
    child = run_child(
        """
        import errno, sys
        from logq.errors import storage_error
        from logq.storage.log import PartitionLog
        from logq import Producer

        def no_fds(self, records):
            raise storage_error("open", self.path, OSError(errno.EMFILE, "Too many open files"))

        PartitionLog.append = no_fds
        p = Producer(sys.argv[1], linger_ms=60_000)
        for i in range(7):
            p.send("t", b"x", partition=0)
        """,
        root,
    )
    assert child.returncode == 0, child.stderr
    assert child.stderr.count("7 record(s) for t-0 could not be written") == 1  # logged once
    assert "could not write 7 record(s)" in child.stderr
    assert stored(root) == []


def test_a_producer_used_after_fork_raises_forked_client_error_instead_of_hanging(root: str) -> None:
    child = run_child(
        """
        import json, os, sys
        from logq import ForkedClientError, Producer
        p = Producer(sys.argv[1], linger_ms=60_000)
        before = p.send("t", b"before fork", partition=0)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            seen = []
            for call in (lambda: p.send("t", b"in child", partition=0), lambda: before.result(5), p.flush):
                try:
                    call()
                    seen.append("returned")
                except ForkedClientError as e:
                    seen.append(type(e).__name__)
            p.close()  # the child's copy: no write, no error
            os.write(w, json.dumps(seen).encode())
            os._exit(0)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        seen = json.loads(os.read(r, 4096))
        p.close()
        print(json.dumps({"child": seen, "status": status, "offset": before.result(0).offset}))
        """,
        root,
    )
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout)
    assert out == {"child": ["ForkedClientError"] * 3, "status": 0, "offset": 0}
    assert stored(root) == [b"before fork"]  # written once, by the parent


# ----------------------------------------------------------------------------- item 5: one bad record


BAD_RECORDS: list[tuple[str, dict[str, Any], type[LogqError]]] = [
    ("timestamp 2**63", {"value": b"bad", "timestamp_ms": 2**63}, ConfigError),
    ("str value", {"value": "text"}, SerializationError),
    ("int key", {"value": b"v", "key": 7}, SerializationError),
    ("str header value", {"value": b"v", "headers": [("h", "text")]}, SerializationError),
    ("int header key", {"value": b"v", "headers": [(1, b"x")]}, SerializationError),
    ("non-UTF-8 header key", {"value": b"v", "headers": {b"\xff": b"x"}}, SerializationError),
    ("header not a pair", {"value": b"v", "headers": [("h",)]}, SerializationError),
    ("headers a str", {"value": b"v", "headers": "h=v"}, SerializationError),
    ("headers a number", {"value": b"v", "headers": 5}, SerializationError),
    ("value over max_batch_bytes", {"value": b"x" * 2_000_000}, logq.RecordTooLargeError),
    ("key over max_batch_bytes", {"value": b"v", "key": b"k" * 2_000_000}, logq.RecordTooLargeError),
    ("headers over max_batch_bytes", {"value": b"v", "headers": [("h", b"x" * 2_000_000)]}, logq.RecordTooLargeError),
]


@pytest.mark.parametrize("kwargs, error", [b[1:] for b in BAD_RECORDS], ids=[b[0] for b in BAD_RECORDS])
def test_one_bad_record_is_refused_at_send_and_its_batch_mates_are_stored(
    root: str, kwargs: dict[str, Any], error: type[LogqError]
) -> None:
    with Producer(root, linger_ms=60_000) as p:  # all twelve would share one batch
        good = [p.send("t", b"a%d" % i, partition=0) for i in range(5)]
        with pytest.raises(error):
            p.send("t", partition=0, **kwargs)
        good += [p.send("t", b"b%d" % i, partition=0) for i in range(5)]
        p.flush()
        assert [f.result(0).offset for f in good] == list(range(10))
    assert len(stored(root)) == 10


def test_a_non_utf8_header_key_never_reaches_the_log_where_every_consumer_would_choke_on_it(root: str) -> None:
    with Producer(root, linger_ms=0) as p:
        with pytest.raises(SerializationError, match="headers"):
            p.send("t", b"v", partition=0, headers=[(b"\xff\xfe", b"x")])
        p.send("t", b"ok", partition=0, headers=[(b"utf-8 bytes \xc3\xa9", b"x")]).result(HANG_GUARD_S)
    with Consumer(root, auto_offset_reset="earliest") as c:
        c.assign([TP0])
        [rec] = c.poll(0)
    assert rec.headers == (("utf-8 bytes é", b"x"),)


def test_headers_given_as_a_generator_are_stored_not_silently_dropped(root: str) -> None:
    with Producer(root, linger_ms=0) as p:
        p.send("t", b"v", partition=0, headers=((f"h{i}", b"%d" % i) for i in range(3))).result(HANG_GUARD_S)
    with Consumer(root, auto_offset_reset="earliest") as c:
        c.assign([TP0])
        [rec] = c.poll(0)
    assert rec.headers == (("h0", b"0"), ("h1", b"1"), ("h2", b"2"))


def emfile(self: PartitionLog, records: Any) -> Any:
    raise logq.errors.storage_error("open", self.path, OSError(24, "Too many open files"))


def test_a_failed_background_write_is_logged_once_and_counted_by_the_next_flush(
    root: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with Producer(root, linger_ms=60_000) as p:
        futures = [p.send("t", b"v", partition=0) for _ in range(5)]
        futures += [p.send("t", b"v", partition=1) for _ in range(3)]
        monkeypatch.setattr(PartitionLog, "append", emfile)
        with caplog.at_level(logging.ERROR, logger="logq.producer"):
            with pytest.raises(RecordsFailedError, match="8 record") as info:
                p.flush()
        assert info.value.count == 8
        assert isinstance(info.value.__cause__, StorageError)
        assert all(isinstance(f.exception(0), StorageError) for f in futures)
        assert sorted(r.getMessage().split(" could")[0] for r in caplog.records) == [
            "3 record(s) for t-1",
            "5 record(s) for t-0",
        ]
        monkeypatch.undo()
        p.flush()  # counted once: the next flush has nothing to report
        after = p.send("t", b"after", partition=0)
        p.flush()
        assert after.result(0).offset == 0


def test_a_failed_write_by_the_linger_thread_is_raised_by_close(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    p = Producer(root, linger_ms=1)
    monkeypatch.setattr(PartitionLog, "append", emfile)
    fut = p.send("t", b"v", partition=0)
    assert isinstance(fut.exception(HANG_GUARD_S), StorageError)  # written (and failed) by the linger thread
    with pytest.raises(RecordsFailedError, match="1 record"):
        p.close()


def test_running_out_of_file_descriptors_fails_loudly_in_a_real_process(root: str, tmp_path: Path) -> None:
    with Admin(root) as admin:
        admin.create_topic("many", 64)
    child = run_child(
        """
        import resource, sys
        from logq import LogqError, Producer
        p = Producer(sys.argv[1], linger_ms=60_000)
        futures = [p.send("many", b"v", partition=i) for i in range(64)]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, hard))
        try:
            p.flush()
            print("flush returned")
        except LogqError as e:
            failed = sum(f.exception(0) is not None for f in futures)
            print(type(e).__name__, e.count, failed)
        """,
        root,
    )
    assert child.returncode == 0, child.stderr
    name, count, failed = child.stdout.split()
    assert name == "RecordsFailedError" and int(count) == int(failed) > 0
    assert len(stored(root, "many")) == 64 - int(failed)


# ----------------------------------------------------------------------------- item 6: threads


def test_a_consumer_called_from_a_second_thread_during_a_poll_raises_instead_of_delivering_duplicates(
    root: str,
) -> None:
    with Producer(root) as p:
        p.send_batch("t", [b"%d" % i for i in range(50)], partition=0)
    inside, release = threading.Event(), threading.Event()

    def slow(value: bytes) -> bytes:
        inside.set()
        release.wait(HANG_GUARD_S)
        return value

    got: list[bytes] = []
    c = Consumer(root, auto_offset_reset="earliest", value_deserializer=slow, max_poll_records=10)
    c.assign([TP0])
    t = threading.Thread(target=lambda: got.extend(r.value for r in c.poll(HANG_GUARD_S)))
    t.start()
    assert inside.wait(HANG_GUARD_S)
    for call in (lambda: c.poll(0), lambda: c.seek(TP0, 0), lambda: c.position(TP0), lambda: c.lag()):
        with pytest.raises(ConcurrentAccessError, match="not safe for multi-threaded access"):
            call()
    release.set()
    t.join(HANG_GUARD_S)
    while batch := c.poll(0):  # handing the consumer over between calls is allowed
        got.extend(r.value for r in batch)
    c.close()
    assert got == [b"%d" % i for i in range(50)]


def test_wakeup_from_another_thread_ends_a_poll_that_waits_forever(root: str) -> None:
    c = Consumer(root, "t")
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(c.poll(timeout=None)))
    t.start()
    c.wakeup()  # the poll in progress or, if it has not started yet, the next one
    t.join(HANG_GUARD_S)
    assert not t.is_alive() and result == [[]]
    c.close()


def test_wakeup_ends_a_for_loop_over_a_group_consumer(root: str) -> None:
    c = Consumer(root, "t", group_id="g")
    seen: list[Any] = []
    t = threading.Thread(target=lambda: seen.extend(c))
    t.start()
    c.wakeup()
    t.join(HANG_GUARD_S)
    assert not t.is_alive() and seen == []
    c.close()


def test_close_from_another_thread_ends_a_blocking_poll_and_closes(root: str) -> None:
    c = Consumer(root, "t", group_id="g")
    outcome: list[Any] = []

    def loop() -> None:
        try:
            outcome.append(list(c))  # ends when the consumer is closed, whenever that happens
        except logq.ClientClosedError as e:
            outcome.append(e)

    t = threading.Thread(target=loop)
    t.start()
    c.close()
    t.join(HANG_GUARD_S)
    assert not t.is_alive() and outcome == [[]]
    with pytest.raises(logq.ClientClosedError):
        c.poll(0)


def test_a_consumer_closed_by_another_thread_mid_poll_raises_client_closed_on_its_next_call(root: str) -> None:
    inside, release = threading.Event(), threading.Event()
    with Producer(root) as p:
        p.send("t", b"x", partition=0).result(HANG_GUARD_S)

    def slow(value: bytes) -> bytes:
        inside.set()
        release.wait(HANG_GUARD_S)
        return value

    c = Consumer(root, auto_offset_reset="earliest", value_deserializer=slow)
    c.assign([TP0])
    polled: list[Any] = []
    t = threading.Thread(target=lambda: polled.append(c.poll(HANG_GUARD_S)))
    t.start()
    assert inside.wait(HANG_GUARD_S)
    closer = threading.Thread(target=c.close)
    closer.start()  # waits for the poll in progress to return
    with pytest.raises(logq.ClientClosedError):
        while True:  # until close() marked it closing (then every call is refused)
            try:
                c.seek(TP0, 0)
            except ConcurrentAccessError:
                continue
    release.set()
    t.join(HANG_GUARD_S)
    closer.join(HANG_GUARD_S)
    assert [r.value for r in polled[0]] == [b"x"]
    with pytest.raises(logq.ClientClosedError):
        c.poll(0)


# ----------------------------------------------------------------------------- item 7: timestamps


@pytest.fixture
def timed(root: str) -> str:
    """t-0 holds offsets 0-2 at T0 and 3-5 at T0 + 1 hour."""
    with Producer(root, linger_ms=0) as p:
        for i in range(6):
            p.send("t", b"%d" % i, partition=0, timestamp_ms=T0 + (3_600_000 if i >= 3 else 0))
    return root


@pytest.mark.parametrize(
    "ts, match",
    [
        (time.time(), "float"),
        (float(T0), "float"),
        (int(time.time()), "looks like seconds"),
        (dt.datetime(2023, 11, 14, 22, 13, 20), "naive datetime"),
        ("2023-11-14", "milliseconds"),
        (True, "bool"),
        (2**63, "2\\*\\*62"),
    ],
)
def test_an_ambiguous_or_invalid_timestamp_is_refused_with_a_hint_everywhere(timed: str, ts: Any, match: str) -> None:
    with Consumer(timed, "t") as c:
        with pytest.raises(ConfigError, match=match):
            c.replay_from(timestamp=ts)
        with pytest.raises(ConfigError, match=match):
            c.offsets_for_times({TP0: ts})
        assert c.position(TP0) == 6  # nothing moved
    with Producer(timed) as p:
        with pytest.raises(ConfigError, match=match):
            p.send("t", b"v", timestamp_ms=ts)
        with pytest.raises(ConfigError, match=match):
            p.send_batch("t", [b"v"], timestamp_ms=ts)


def test_an_aware_datetime_is_that_instant_in_every_timestamp_argument(timed: str) -> None:
    later = dt.datetime.fromtimestamp((T0 + 3_600_000) / 1000, dt.timezone(dt.timedelta(hours=-7)))
    with Consumer(timed, "t") as c:
        assert c.replay_from(timestamp=later, partitions=[TP0]) == {TP0: 3}
        assert c.offsets_for_times({TP0: later})[TP0] == logq.OffsetAndTimestamp(3, T0 + 3_600_000)
    with Producer(timed) as p:
        assert p.send("t", b"v", partition=1, timestamp_ms=later).result(HANG_GUARD_S).timestamp == T0 + 3_600_000


def test_replay_from_five_minutes_ago_under_a_non_utc_tz_replays_the_last_five_minutes(root: str) -> None:
    now = int(time.time() * 1000)
    with Producer(root, linger_ms=0) as p:
        for i, age_ms in enumerate([3_600_000, 3_600_000, 60_000, 60_000]):
            p.send("t", b"%d" % i, partition=0, timestamp_ms=now - age_ms)
    child = run_child(
        """
        import datetime as dt, json, sys
        from logq import ConfigError, Consumer, TopicPartition
        tp = TopicPartition("t", 0)
        out = {"utcoffset_h": dt.datetime.now().astimezone().utcoffset().total_seconds() / 3600}
        with Consumer(sys.argv[1], "t") as c:
            try:
                c.replay_from(timestamp=dt.datetime.now() - dt.timedelta(minutes=5), partitions=[tp])
                out["naive"] = c.position(tp)
            except ConfigError as e:
                out["naive"] = e.hint
            aware = dt.datetime.now().astimezone() - dt.timedelta(minutes=5)
            out["aware"] = c.replay_from(timestamp=aware, partitions=[tp])[tp]
        print(json.dumps(out))
        """,
        root,
        env={"TZ": "IST-5:30"},  # POSIX rule (no tz database needed): UTC+5:30
    )
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout)
    assert out["utcoffset_h"] == 5.5  # the child really ran in another zone
    assert "timezone.utc" in out["naive"]  # refused with a hint, not read as UTC (which jumped to the end)
    assert out["aware"] == 2


# ----------------------------------------------------------------------------- item 8: arguments


def test_poll_max_records_zero_or_negative_is_refused_not_500_records_or_nothing_forever(root: str) -> None:
    with Producer(root) as p:
        p.send_batch("t", [b"v"] * 600, partition=0)
    with Consumer(root, auto_offset_reset="earliest") as c:
        c.assign([TP0])
        for bad in (0, -1, 2.0, True):
            with pytest.raises(ConfigError, match="max_records"):
                c.poll(0, max_records=bad)
        assert len(c.poll(0, max_records=7)) == 7


def test_poll_with_timeout_none_returns_records_that_are_there(root: str) -> None:
    with Producer(root) as p:
        p.send("t", b"v", partition=0).result(HANG_GUARD_S)
    with Consumer(root, auto_offset_reset="earliest") as c:
        c.assign([TP0])
        assert [r.value for r in c.poll(timeout=None)] == [b"v"]


def test_send_batch_takes_a_generator_of_values(root: str) -> None:
    with Producer(root) as p:
        [meta] = p.send_batch("t", (b"%d" % i for i in range(10)), partition=1)
    assert meta.count == 10
    assert stored(root) == [b"%d" % i for i in range(10)]


def new_producer(root: str, **kw: Any) -> Callable[[], Any]:
    return lambda: Producer(root, **kw)


def new_consumer(root: str, *topics: Any, **kw: Any) -> Callable[[], Any]:
    return lambda: Consumer(root, *topics, **kw)


PRODUCER_CALLS: list[tuple[str, Callable[[Producer], Any]]] = [
    ("send topic list", lambda p: p.send(["t"], b"v")),
    ("send topic None", lambda p: p.send(None, b"v")),  # type: ignore[arg-type]
    ("send partition -1", lambda p: p.send("t", b"v", partition=-1)),
    ("send partition 2 of 2", lambda p: p.send("t", b"v", partition=2)),
    ("send partition str", lambda p: p.send("t", b"v", partition="0")),  # type: ignore[arg-type]
    ("send partition float", lambda p: p.send("t", b"v", partition=0.0)),  # type: ignore[arg-type]
    ("send value list", lambda p: p.send("t", [1, 2])),
    ("send_batch topic list", lambda p: p.send_batch(["t"], [b"v"])),  # type: ignore[arg-type]
    ("send_batch values bytes", lambda p: p.send_batch("t", b"vv")),
    ("send_batch values str", lambda p: p.send_batch("t", "vv")),
    ("send_batch values int", lambda p: p.send_batch("t", 5)),  # type: ignore[arg-type]
    ("send_batch values dict", lambda p: p.send_batch("t", {b"v": 1})),  # type: ignore[arg-type]
    ("send_batch a None value", lambda p: p.send_batch("t", [b"v", None])),
    ("send_batch a str value", lambda p: p.send_batch("t", [b"v", "w"])),
    ("send_batch key int", lambda p: p.send_batch("t", [b"v"], key=3)),
    ("send_batch partition -1", lambda p: p.send_batch("t", [b"v"], partition=-1)),
    ("flush timeout -1", lambda p: p.flush(-1)),
    ("flush timeout str", lambda p: p.flush("1")),  # type: ignore[arg-type]
    ("flush timeout nan", lambda p: p.flush(float("nan"))),
    ("close timeout str", lambda p: p.close("1")),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("call", [c[1] for c in PRODUCER_CALLS], ids=[c[0] for c in PRODUCER_CALLS])
def test_every_producer_method_refuses_a_wrong_argument_with_a_logq_error(root: str, call: Any) -> None:
    with Producer(root, linger_ms=0) as p:
        with pytest.raises(LogqError):
            call(p)
        assert p.send("t", b"still works", partition=0).result(HANG_GUARD_S).offset == 0


CONSTRUCTORS: list[tuple[str, Callable[[str], Callable[[], Any]], str]] = [
    ("Producer data_dir int", lambda r: lambda: Producer(5), "data_dir"),  # type: ignore[arg-type]
    ("Producer linger_ms -1", lambda r: new_producer(r, linger_ms=-1), "linger_ms"),
    ("Producer linger_ms float", lambda r: new_producer(r, linger_ms=0.5), "linger_ms"),
    ("Producer batch_size 0", lambda r: new_producer(r, batch_size=0), "batch_size"),
    ("Producer buffer_bytes str", lambda r: new_producer(r, buffer_bytes="1"), "buffer_bytes"),
    ("Producer max_block_ms -1", lambda r: new_producer(r, max_block_ms=-1), "max_block_ms"),
    ("Producer fsync typo", lambda r: new_producer(r, fsync="alwys"), "fsync"),
    ("Producer value_serializer 5", lambda r: new_producer(r, value_serializer=5), "serializer"),
    ("Consumer data_dir None", lambda r: lambda: Consumer(None), "data_dir"),  # type: ignore[arg-type]
    ("Consumer topics list", lambda r: new_consumer(r, ["t"]), "separate str"),
    ("Consumer topics list with group", lambda r: new_consumer(r, ["t"], group_id="g"), "separate str"),
    ("Consumer auto_offset_reset", lambda r: new_consumer(r, "t", auto_offset_reset="smallest"), "auto_offset"),
    ("Consumer auto_offset_reset list", lambda r: new_consumer(r, "t", auto_offset_reset=[]), "auto_offset"),
    ("Consumer max_poll_records 0", lambda r: new_consumer(r, "t", max_poll_records=0), "max_poll_records"),
    ("Consumer fetch_max_bytes float", lambda r: new_consumer(r, "t", fetch_max_bytes=1e6), "fetch_max_bytes"),
    ("Consumer session_timeout_ms 0", lambda r: new_consumer(r, "t", session_timeout_ms=0), "session_timeout"),
    ("Consumer max_poll_interval_ms str", lambda r: new_consumer(r, "t", max_poll_interval_ms="1"), "max_poll_int"),
    ("Consumer auto_commit_interval_ms 0", lambda r: new_consumer(r, "t", auto_commit_interval_ms=0), "auto_commit"),
    ("Consumer enable_auto_commit str", lambda r: new_consumer(r, "t", enable_auto_commit="no"), "enable_auto"),
    ("Consumer fsync_commits 1", lambda r: new_consumer(r, "t", fsync_commits=1), "fsync_commits"),
    ("Consumer group_id int", lambda r: new_consumer(r, "t", group_id=5), "group_id"),
    ("Consumer member_id bytes", lambda r: new_consumer(r, "t", group_id="g", member_id=b"m"), "member_id"),
    ("Consumer on_assign not callable", lambda r: new_consumer(r, "t", on_assign=5), "on_assign"),
    ("Consumer on_revoke not callable", lambda r: new_consumer(r, "t", on_revoke="f"), "on_revoke"),
    ("Consumer consumer_timeout_ms -1", lambda r: new_consumer(r, "t", consumer_timeout_ms=-1), "consumer_timeout"),
    ("Consumer value_deserializer 5", lambda r: new_consumer(r, "t", value_deserializer=5), "deserializer"),
]


@pytest.mark.parametrize("make, match", [c[1:] for c in CONSTRUCTORS], ids=[c[0] for c in CONSTRUCTORS])
def test_every_constructor_argument_is_checked_with_a_logq_error_naming_it(
    root: str, make: Callable[[str], Callable[[], Any]], match: str
) -> None:
    with pytest.raises(LogqError, match=match):
        make(root)()


CONSUMER_CALLS: list[tuple[str, Callable[[Consumer], Any]]] = [
    ("poll timeout -1", lambda c: c.poll(-1)),
    ("poll timeout str", lambda c: c.poll("1")),  # type: ignore[arg-type]
    ("poll timeout nan", lambda c: c.poll(float("nan"))),
    ("poll timeout inf", lambda c: c.poll(float("inf"))),
    ("poll max_records 0", lambda c: c.poll(0, max_records=0)),
    ("poll max_records -5", lambda c: c.poll(0, max_records=-5)),
    ("poll max_records float", lambda c: c.poll(0, max_records=1.5)),  # type: ignore[arg-type]
    ("assign a str", lambda c: c.assign("t")),
    ("assign a number", lambda c: c.assign(5)),  # type: ignore[arg-type]
    ("assign a bad pair", lambda c: c.assign([("t", "0")])),
    ("assign partition 9", lambda c: c.assign([("t", 9)])),
    ("subscribe without group", lambda c: c.subscribe(["t"])),
    ("position unassigned", lambda c: c.position(("t", 1))),
    ("position not a pair", lambda c: c.position("t")),
    ("seek offset -1", lambda c: c.seek(TP0, -1)),
    ("seek offset float", lambda c: c.seek(TP0, 1.0)),  # type: ignore[arg-type]
    ("seek offset bool", lambda c: c.seek(TP0, True)),
    ("seek_to_beginning unassigned", lambda c: c.seek_to_beginning(("t", 1))),
    ("seek_to_end bad pair", lambda c: c.seek_to_end(("t",))),
    ("pause unassigned", lambda c: c.pause(("u", 0))),
    ("resume not a pair", lambda c: c.resume(7)),
    ("offsets_for_times a list", lambda c: c.offsets_for_times([(TP0, T0)])),  # type: ignore[arg-type]
    ("offsets_for_times bad partition", lambda c: c.offsets_for_times({("t", 9): T0})),
    ("offsets_for_times float", lambda c: c.offsets_for_times({TP0: 1.5})),
    ("replay_from nothing", lambda c: c.replay_from()),
    ("replay_from both", lambda c: c.replay_from(offset=0, timestamp=T0)),
    ("replay_from offset -1", lambda c: c.replay_from(offset=-1)),
    ("replay_from offset str", lambda c: c.replay_from(offset="0")),  # type: ignore[arg-type]
    ("replay_from partitions int", lambda c: c.replay_from(offset=0, partitions=5)),  # type: ignore[arg-type]
    ("replay_from partitions str", lambda c: c.replay_from(offset=0, partitions="t")),
    ("commit without group", lambda c: c.commit()),
    ("committed without group", lambda c: c.committed(TP0)),
    ("close autocommit str", lambda c: c.close("no")),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("call", [c[1] for c in CONSUMER_CALLS], ids=[c[0] for c in CONSUMER_CALLS])
def test_every_consumer_method_refuses_a_wrong_argument_with_a_logq_error(root: str, call: Any) -> None:
    with Consumer(root, auto_offset_reset="earliest") as c:
        c.assign([TP0])
        with pytest.raises(LogqError):
            call(c)
        assert c.position(TP0) == 0  # nothing moved


GROUP_CALLS: list[tuple[str, Callable[[Consumer], Any]]] = [
    ("subscribe a number", lambda c: c.subscribe(5)),  # type: ignore[arg-type]
    ("subscribe a list with a number", lambda c: c.subscribe(["t", 5])),  # type: ignore[list-item]
    ("subscribe unknown topic", lambda c: c.subscribe(["nope"])),
    ("assign while subscribed", lambda c: c.assign([TP0])),
    ("commit a list", lambda c: c.commit([(TP0, 1)])),  # type: ignore[arg-type]
    ("commit offset -1", lambda c: c.commit({TP0: -1})),
    ("commit offset str", lambda c: c.commit({TP0: "1"})),  # type: ignore[dict-item]
    ("commit a bad pair", lambda c: c.commit({"t": 1})),
    ("committed a bad pair", lambda c: c.committed("t")),
]


@pytest.mark.parametrize("call", [c[1] for c in GROUP_CALLS], ids=[c[0] for c in GROUP_CALLS])
def test_every_group_consumer_method_refuses_a_wrong_argument_with_a_logq_error(root: str, call: Any) -> None:
    with Consumer(root, "t", group_id="g") as c:
        with pytest.raises(LogqError):
            call(c)
