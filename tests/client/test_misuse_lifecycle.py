"""Misuse tier: lifecycles under a live client (issue 9 items 3, 4, 10, 11).

Another process deletes a topic (or deletes it and creates it again) while a Producer or a
Consumer has it open; a deserializer refuses a record; records larger than a limit; more
partitions than file descriptors. Deletes and recreates run in a real child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from logq import (
    Admin,
    Consumer,
    DeserializationError,
    Producer,
    RecordTooLargeError,
    TopicDeletedError,
    TopicPartition,
    UnknownPartitionError,
    UnknownTopicError,
)
from logq.storage.log import PartitionLog
from logq.storage.topics import partition_path


def _in_child(code: str, root: Path) -> str:
    """Run ``code`` in another Python process (``root``, Admin, Producer are defined); its stdout."""
    prelude = f"import sys\nfrom logq import Admin, Producer, Consumer\nroot = {str(root)!r}\n"
    res = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def _recreate(root: Path, topic: str, partitions: int | None, produce: int = 0) -> None:
    """Delete ``topic`` in another process; create it again with ``partitions`` (None: not at all)."""
    _in_child(
        f"""
        with Admin(root) as a:
            a.delete_topic({topic!r})
            if {partitions!r} is not None:
                a.create_topic({topic!r}, partitions={partitions!r})
        if {produce}:
            with Producer(root) as p:
                for i in range({produce}):
                    p.send({topic!r}, b"new%d" % i, partition=0)
        """,
        root,
    )


def _everything(root: Path, topic: str) -> list[tuple[int, int, bytes | None]]:
    """Every record of ``topic`` as (partition, offset, value), read straight from the files."""
    with Admin(str(root)) as a:
        n = len(a.describe_topic(topic).partitions)
    out = []
    for p in range(n):
        with PartitionLog(partition_path(str(root), topic, p), readonly=True) as lg:
            out += [(p, r.offset, r.value) for r in lg.read_records(lg.log_start_offset, 1 << 24)]
    return out


def _topic(root: Path, name: str = "t", partitions: int = 1) -> None:
    with Admin(str(root)) as a:
        a.create_topic(name, partitions=partitions)


# ---------------------------------------------------------------------- item 3: producer


def test_a_send_to_a_topic_recreated_with_fewer_partitions_fails_instead_of_reporting_an_offset(
    tmp_path: Path,
) -> None:
    # The report: send(partition=3) kept returning offsets for records that existed nowhere,
    # then close() raised StorageError.
    _topic(tmp_path, "t", 4)
    p = Producer(str(tmp_path), linger_ms=0, metadata_max_age_ms=3_600_000)  # the write's check, not a refresh
    assert p.send("t", b"old", partition=3).result().offset == 0
    _recreate(tmp_path, "t", 2)

    with pytest.raises(TopicDeletedError) as ei:
        p.send("t", b"lost", partition=3).result()
    assert ei.value.topic == "t" and ei.value.partition == 3 and ei.value.new_topic_id is not None
    assert "created again" in str(ei.value)
    with pytest.raises(UnknownPartitionError):  # the producer now knows the new topic
        p.send("t", b"x", partition=3)
    assert p.send("t", b"new", partition=1).result().offset == 0
    with pytest.raises(Exception) as closed:  # the failed record is counted, not a StorageError
        p.close()
    assert type(closed.value).__name__ == "RecordsFailedError"
    assert _everything(tmp_path, "t") == [(1, 0, b"new")]


def test_a_send_to_a_deleted_topic_fails_with_unknown_topic(tmp_path: Path) -> None:
    _topic(tmp_path, "t", 2)
    p = Producer(str(tmp_path), linger_ms=0)
    p.send("t", b"a", partition=1).result()
    _recreate(tmp_path, "t", None)

    fut = p.send("t", b"b", partition=1)
    with pytest.raises(UnknownTopicError) as ei:
        fut.result()
    assert isinstance(ei.value, TopicDeletedError) and ei.value.new_topic_id is None
    with pytest.raises(UnknownTopicError):  # later sends fail at once
        p.send("t", b"c", partition=1)
    with pytest.raises(UnknownTopicError):
        p.send_batch("t", [b"d"])
    with pytest.raises(Exception) as closed:
        p.close()
    assert type(closed.value).__name__ == "RecordsFailedError"
    assert not os.path.exists(partition_path(str(tmp_path), "t", 1))


def test_records_queued_for_a_topic_recreated_alike_go_to_the_new_topic(tmp_path: Path) -> None:
    _topic(tmp_path, "t", 2)
    p = Producer(str(tmp_path), linger_ms=60_000)
    p.send("t", b"a", partition=0)
    p.flush()
    queued = p.send("t", b"queued", partition=1)  # accepted before the recreate, written after
    _recreate(tmp_path, "t", 2)
    p.flush()
    assert queued.result().offset == 0
    p.close()
    assert _everything(tmp_path, "t") == [(1, 0, b"queued")]


def test_send_batch_to_a_topic_recreated_with_other_partitions_raises_topic_deleted(tmp_path: Path) -> None:
    _topic(tmp_path, "t", 3)
    with Producer(str(tmp_path), metadata_max_age_ms=3_600_000) as p:  # the write's check, not a refresh
        p.send_batch("t", [b"a", b"b"], partition=2)
        _recreate(tmp_path, "t", 1)
        with pytest.raises(TopicDeletedError):
            p.send_batch("t", [b"c"], partition=2)
        assert p.send_batch("t", [b"d"], partition=0)[0].base_offset == 0
    assert _everything(tmp_path, "t") == [(0, 0, b"d")]


# ---------------------------------------------------------------------- item 3: consumer


def test_a_consumer_assigned_to_a_deleted_topic_raises_a_logq_error_naming_it(tmp_path: Path) -> None:
    # The report: raw FileNotFoundError at every poll.
    _topic(tmp_path, "t", 2)
    with Producer(str(tmp_path)) as p:
        p.send("t", b"a", partition=0)
    with Consumer(str(tmp_path), "t", auto_offset_reset="earliest") as c:
        assert [r.value for r in c.poll(5)] == [b"a"]
        _recreate(tmp_path, "t", None)
        with pytest.raises(TopicDeletedError) as ei:
            c.poll(0)
        assert ei.value.topic == "t" and "'t'" in str(ei.value)
        assert c.assignment() == set()  # dropped: the next poll waits instead of failing again
        assert c.poll(0) == []


def test_a_consumer_reads_a_recreated_topic_from_auto_offset_reset_not_its_old_position(tmp_path: Path) -> None:
    _topic(tmp_path, "t", 1)
    with Producer(str(tmp_path)) as p:
        for i in range(20):
            p.send("t", b"old%d" % i, partition=0)
    with Consumer(str(tmp_path), "t", auto_offset_reset="earliest") as c:
        got = []
        while len(got) < 20:
            got += c.poll(5)
        assert c.position(TopicPartition("t", 0)) == 20
        _recreate(tmp_path, "t", 1, produce=3)
        new = c.poll(5)
        assert [r.value for r in new] == [b"new0", b"new1", b"new2"]
        assert [r.offset for r in new] == [0, 1, 2]


def test_a_subscribed_consumer_drops_the_partitions_of_a_deleted_topic(tmp_path: Path) -> None:
    _topic(tmp_path, "t", 2)
    _topic(tmp_path, "u", 1)
    with Producer(str(tmp_path)) as p:
        p.send("t", b"t0", partition=0)
    with Consumer(str(tmp_path), "t", "u", group_id="g", auto_offset_reset="earliest") as c:
        got: list = []
        for _ in range(100):
            got += c.poll(0.1)
            if got:
                break
        assert [r.value for r in got] == [b"t0"]
        _recreate(tmp_path, "t", None)
        _in_child("with Producer(root) as p:\n    p.send('u', b'u0', partition=0)\n", tmp_path)
        got = []
        for _ in range(100):
            got += c.poll(0.1)  # never FileNotFoundError
            if got:
                break
        assert [r.value for r in got] == [b"u0"]


# ---------------------------------------------------------------------- item 4: commits name the incarnation


def test_a_consumer_still_on_the_old_topic_does_not_commit_its_offsets_for_the_new_one(tmp_path: Path) -> None:
    # Before: the consumer committed its old position (100) without a topic id, so the store
    # stamped it with the new topic's id and the group skipped the 10 new records.
    _topic(tmp_path, "t", 1)
    with Producer(str(tmp_path)) as p:
        p.send_batch("t", [b"old%d" % i for i in range(100)], partition=0)
    c = Consumer(str(tmp_path), "t", group_id="g", auto_offset_reset="earliest", enable_auto_commit=False)
    got: list = []
    for _ in range(200):
        got += c.poll(0.1)
        if len(got) >= 100:
            break
    assert len(got) == 100
    _recreate(tmp_path, "t", 1, produce=10)
    c.commit()  # positions of the deleted topic: not stored for the new one
    c.close()

    out = _in_child(
        """
        import json
        got = []
        with Consumer(root, "t", group_id="g", auto_offset_reset="earliest", enable_auto_commit=False) as c:
            for _ in range(200):
                got += [r.value.decode() for r in c.poll(0.1)]
                if len(got) >= 10:
                    break
        print(json.dumps(got))
        """,
        tmp_path,
    )
    assert json.loads(out) == [f"new{i}" for i in range(10)]


# ---------------------------------------------------------------------- item 10: errors a user causes


def test_a_record_the_deserializer_refuses_names_its_offset_and_seeking_past_it_continues(tmp_path: Path) -> None:
    # Before: "at or after offset <batch base>" in the message only, no fields to seek with,
    # and the good records of its batch before it never came out.
    _topic(tmp_path, "t", 1)
    with Producer(str(tmp_path), linger_ms=60_000) as p:
        for v in (b'{"n": 0}', b'{"n": 1}', b"not json", b'{"n": 3}'):
            p.send("t", v, partition=0)  # one batch
    with Consumer(str(tmp_path), "t", auto_offset_reset="earliest", value_deserializer="json") as c:
        assert [r.value for r in c.poll(5)] == [{"n": 0}, {"n": 1}]
        with pytest.raises(DeserializationError) as ei:
            c.poll(5)
        err = ei.value
        assert (err.topic, err.partition, err.offset) == ("t", 0, 2)
        assert "offset 2 of t-0" in str(err)
        c.seek(TopicPartition(err.topic, err.partition), err.offset + 1)
        assert [r.value for r in c.poll(5)] == [{"n": 3}]


def test_a_record_too_large_for_the_topic_quotes_its_configured_max_batch_bytes(tmp_path: Path) -> None:
    # Before: "exceeds max_batch_bytes=1048515", a number no one configured (the limit minus
    # the batch header).
    with Admin(str(tmp_path)) as a:
        a.create_topic("t", max_batch_bytes=1 << 20)
    with Producer(str(tmp_path)) as p:
        for send in (lambda: p.send("t", b"x" * (1 << 20)), lambda: p.send_batch("t", [b"x" * (1 << 20)])):
            with pytest.raises(RecordTooLargeError) as ei:
                send()
            assert ei.value.limit == 1 << 20 and ei.value.setting == "max_batch_bytes"
            assert "max_batch_bytes=1048576 of topic 't'" in str(ei.value)


def test_a_record_larger_than_buffer_bytes_is_refused_at_once_quoting_buffer_bytes(tmp_path: Path) -> None:
    # Before: send() waited max_block_ms for room that could never exist, then raised
    # ProducerBufferFullError.
    _topic(tmp_path, "t", 1)
    with Producer(str(tmp_path), buffer_bytes=1000, max_block_ms=0) as p:
        with pytest.raises(RecordTooLargeError) as ei:
            p.send("t", b"x" * 2000)
        assert ei.value.setting == "buffer_bytes" and ei.value.limit == 1000
        assert "buffer_bytes=1000" in str(ei.value)
        assert p.send("t", b"fits").result().offset == 0


# ---------------------------------------------------------------------- item 11: file descriptors


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_producer_and_a_consumer_keep_at_most_max_open_partitions_open(tmp_path: Path) -> None:
    # Before: 3 descriptors per partition written, 1 per partition read, without a bound.
    _topic(tmp_path, "t", 60)
    before = _fds()
    p = Producer(str(tmp_path), linger_ms=0, max_open_partitions=4)
    for i in range(60):
        p.send("t", b"v%d" % i, partition=i)
    p.flush()
    assert _fds() - before <= 3 * 4 + 2
    p.close()
    before = _fds()
    c = Consumer(str(tmp_path), "t", auto_offset_reset="earliest", max_open_partitions=4)
    got: list = []
    for _ in range(100):
        got += c.poll(1)
        if len(got) >= 60:
            break
    assert sorted((r.partition, r.value) for r in got) == [(i, b"v%d" % i) for i in range(60)]
    assert _fds() - before <= 4 + 4  # + the watcher's inotify fd and pipe
    c.close()


def test_a_producer_closing_handles_keeps_every_record_in_order(tmp_path: Path) -> None:
    _topic(tmp_path, "t", 5)
    futs = []
    with Producer(str(tmp_path), linger_ms=0, max_open_partitions=1) as p:
        for i in range(500):
            futs.append((i % 5, i, p.send("t", b"%d" % i, partition=i % 5)))
        p.send_batch("t", [b"bulk%d" % i for i in range(7)], partition=3)
    for part, i, f in futs:
        md = f.result()
        assert (md.partition, md.offset) == (part, i // 5)
    recs = _everything(tmp_path, "t")
    for part in range(5):
        vals = [v for p_, _, v in recs if p_ == part]
        want = [b"%d" % i for i in range(part, 500, 5)] + ([b"bulk%d" % i for i in range(7)] if part == 3 else [])
        assert vals == want


def test_a_consumer_with_closed_partitions_sees_records_appended_to_them_later(tmp_path: Path) -> None:
    _topic(tmp_path, "t", 6)
    with Consumer(str(tmp_path), "t", auto_offset_reset="earliest", max_open_partitions=2) as c:
        assert c.poll(0) == []
        for rnd in range(3):
            _in_child(
                f"with Producer(root) as p:\n    [p.send('t', b'r{rnd}p%d' % i, partition=i) for i in range(6)]\n",
                tmp_path,
            )
            got: list = []
            for _ in range(100):
                got += c.poll(0.5)
                if len(got) >= 6:
                    break
            assert sorted(r.value for r in got) == sorted(b"r%dp%d" % (rnd, i) for i in range(6))


def test_hundreds_of_partitions_work_under_a_low_file_descriptor_limit(tmp_path: Path) -> None:
    # Before: EMFILE (too many open files) once 3 x partitions passed the limit.
    out = _in_child(
        """
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        n = 300
        with Admin(root) as a:
            a.create_topic("t", partitions=n)
        with Producer(root, max_open_partitions=8) as p:
            for i in range(n):
                p.send("t", b"%d" % i, partition=i)
        got = {}
        with Consumer(root, "t", auto_offset_reset="earliest", max_open_partitions=8) as c:
            for _ in range(1000):
                for r in c.poll(1):
                    got[r.partition] = r.value
                if len(got) == n:
                    break
        print(all(got.get(i) == b"%d" % i for i in range(n)))
        """,
        tmp_path,
    )
    assert out.strip() == "True"
