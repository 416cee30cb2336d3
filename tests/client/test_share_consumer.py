"""logq.ShareConsumer in one process: locks, delays, backoff, expiry with a controllable clock
(no test sleeps), acknowledgement modes, priorities, dead letters, damaged state and misuse."""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path

import logq
import pytest
from logq.groups.share_store import describe_share_group, reset_share_start, share_group_dir


class Clock:
    """Epoch milliseconds that move only when a test says (starting at the real time, so the
    records' own timestamps, which record_ttl_ms counts from, are in the clock's past)."""

    def __init__(self) -> None:
        self.now = time.time_ns() // 1_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def produce(root: str, topic: str, n: int, headers: list | None = None, partitions: int = 1) -> None:
    with logq.Admin(root) as a:
        if topic not in a.list_topics():
            a.create_topic(topic, partitions=partitions)
    with logq.Producer(root) as p:
        for i in range(n):
            p.send(topic, b"%s-%d" % (topic.encode(), i), headers=headers, partition=i % partitions)


def sc_(root: str, clock: Clock, topics: list[str] | None = None, **kw) -> logq.ShareConsumer:
    kw.setdefault("auto_offset_reset", "earliest")
    kw.setdefault("lock_duration_ms", 1000)
    return logq.ShareConsumer(root, topics or ["jobs"], group_id="g", clock=clock, **kw)


def test_the_issue_example_runs(root: str) -> None:
    produce(root, "jobs", 3)
    with logq.Admin(root) as a:
        a.create_topic("dlq.jobs")
    with logq.ShareConsumer(
        root,
        ["jobs"],
        group_id="workers",
        acknowledgement_mode="explicit",
        lock_duration_ms=30_000,
        delivery_count_limit=5,
        dead_letter_topic="dlq.jobs",
        auto_offset_reset="earliest",
    ) as sc:
        recs = sc.poll(timeout=1.0, max_records=100)
        assert [(r.offset, r.delivery_count) for r in recs] == [(0, 1), (1, 1), (2, 1)]
        for record in recs:
            assert sc.renew(record)
            sc.acknowledge(record, "accept")
        assert sc.commit() == []


def test_an_expired_lock_redelivers_and_the_late_acknowledgement_is_reported(root: str, clock: Clock) -> None:
    produce(root, "jobs", 1)
    with sc_(root, clock, acknowledgement_mode="explicit") as a, sc_(root, clock) as b:
        (rec,) = a.poll(timeout=0)
        assert b.poll(timeout=0) == []
        clock.now += 999
        assert b.poll(timeout=0) == []
        clock.now += 1
        (again,) = b.poll(timeout=0)
        assert (again.offset, again.delivery_count) == (0, 2)
        a.acknowledge(rec, "accept")
        assert a.commit() == [rec]  # too late: b holds it now
        b.commit()  # implicit: accepted
    assert describe_share_group(root, "g").partitions[0].start_offset == 1


def test_renew_keeps_the_lock_past_its_first_deadline(root: str, clock: Clock) -> None:
    produce(root, "jobs", 1)
    with sc_(root, clock, acknowledgement_mode="explicit") as a, sc_(root, clock) as b:
        (rec,) = a.poll(timeout=0)
        clock.now += 900
        assert a.renew(rec)
        clock.now += 900
        assert b.poll(timeout=0) == []
        clock.now += 200
        assert not a.renew(rec)  # expired before the renewal
        assert [r.delivery_count for r in b.poll(timeout=0)] == [2]


def test_release_with_delay_is_backoff(root: str, clock: Clock) -> None:
    produce(root, "jobs", 1)
    with sc_(root, clock, acknowledgement_mode="explicit") as a:
        (rec,) = a.poll(timeout=0)
        a.acknowledge(rec, "release", delay_ms=5000)
        assert a.poll(timeout=0) == []
        clock.now += 4999
        assert a.poll(timeout=0) == []
        clock.now += 1
        (rec,) = a.poll(timeout=0)
        assert rec.delivery_count == 2
        a.acknowledge(rec, "accept")


def test_a_delayed_record_is_not_acquired_before_its_time(root: str, clock: Clock) -> None:
    produce(root, "jobs", 1, headers=[("logq.deliver_at_ms", str(clock.now + 60_000).encode())])
    produce(root, "jobs", 1)
    with sc_(root, clock, lock_duration_ms=120_000) as a:
        assert [r.offset for r in a.poll(timeout=0)] == [1]
        clock.now += 59_999
        assert a.poll(timeout=0) == []
        clock.now += 1
        assert [(r.offset, r.delivery_count) for r in a.poll(timeout=0)] == [(0, 1)]


def test_expired_records_are_archived_to_the_dead_letter_topic_never_delivered(root: str, clock: Clock) -> None:
    produce(root, "jobs", 1, headers=[("logq.expire_at_ms", str(clock.now - 1).encode())])
    produce(root, "jobs", 1)
    with logq.Admin(root) as adm:
        adm.create_topic("dlq")
    with sc_(root, clock, dead_letter_topic="dlq", record_ttl_ms=10_000) as a:
        assert [r.offset for r in a.poll(timeout=0)] == [1]
    with logq.Consumer(root, "dlq", auto_offset_reset="earliest") as c:
        (letter,) = c.poll(5.0)
    assert dict(letter.headers)["__dlq.errors.reason"] == b"expired"
    assert dict(letter.headers)["__dlq.errors.offset"] == b"0"


def test_lock_expiry_at_the_limit_archives_with_reason_delivery_limit(root: str, clock: Clock) -> None:
    produce(root, "jobs", 1)
    with logq.Admin(root) as adm:
        adm.create_topic("dlq")
    with sc_(root, clock, delivery_count_limit=2, dead_letter_topic="dlq", acknowledgement_mode="explicit") as a:
        for n in (1, 2):
            (rec,) = a.poll(timeout=0)
            assert rec.delivery_count == n
            a.acknowledge(rec, "release")  # the second release reaches the limit of 2
        assert a.poll(timeout=0) == []
    with logq.Consumer(root, "dlq", auto_offset_reset="earliest") as c:
        (letter,) = c.poll(5.0)
    assert dict(letter.headers)["__dlq.errors.reason"] == b"delivery_limit"


def test_reject_archives_and_accept_finishes(root: str, clock: Clock) -> None:
    produce(root, "jobs", 3)
    with sc_(root, clock, acknowledgement_mode="explicit") as a:
        recs = a.poll(timeout=0)
        a.acknowledge(recs[0], "reject")
        a.acknowledge(recs[1], "accept")
        a.acknowledge(recs[2], "release")
        assert [(r.offset, r.delivery_count) for r in a.poll(timeout=0)] == [(2, 2)]


def test_implicit_mode_accepts_the_previous_poll_and_explicit_mode_refuses_to_poll_on(root: str, clock: Clock) -> None:
    produce(root, "jobs", 4)
    with sc_(root, clock) as a:
        assert len(a.poll(timeout=0, max_records=2)) == 2
        assert len(a.poll(timeout=0, max_records=2)) == 2
        a.poll(timeout=0)
    assert describe_share_group(root, "g").partitions[0].start_offset == 4
    produce(root, "jobs", 1)
    with sc_(root, clock, acknowledgement_mode="explicit") as b:
        assert len(b.poll(timeout=0)) == 1
        with pytest.raises(logq.ShareAcknowledgementError, match="not acknowledged"):
            b.poll(timeout=0)


def test_close_releases_what_was_not_acknowledged_with_its_count(root: str, clock: Clock) -> None:
    produce(root, "jobs", 2)
    with sc_(root, clock, acknowledgement_mode="explicit") as a:
        recs = a.poll(timeout=0)
        a.acknowledge(recs[0], "accept")
    with sc_(root, clock) as b:
        assert [(r.offset, r.delivery_count) for r in b.poll(timeout=0)] == [(1, 2)]


def test_latest_starts_at_the_log_end(root: str, clock: Clock) -> None:
    produce(root, "jobs", 2)
    with sc_(root, clock, auto_offset_reset="latest") as a:
        assert a.poll(timeout=0) == []
        produce(root, "jobs", 1)
        assert [r.offset for r in a.poll(timeout=0)] == [2]


def test_max_in_flight_caps_the_window(root: str, clock: Clock) -> None:
    produce(root, "jobs", 10)
    with (
        sc_(root, clock, max_in_flight=3, acknowledgement_mode="explicit") as a,
        sc_(root, clock, max_in_flight=3) as b,
    ):
        recs = a.poll(timeout=0)
        assert [r.offset for r in recs] == [0, 1, 2]
        a.acknowledge(recs[1], "accept")
        a.acknowledge(recs[2], "accept")
        a.commit()
        assert b.poll(timeout=0) == []  # 0 is still held: the window of 3 offsets is full
        a.acknowledge(recs[0], "accept")
        a.commit()
        assert [r.offset for r in b.poll(timeout=0)] == [3, 4, 5]


def test_strict_priority_fills_from_the_highest_topic_first(root: str, clock: Clock) -> None:
    produce(root, "urgent", 3)
    produce(root, "bulk", 3)
    with sc_(root, clock, ["bulk", "urgent"], priorities={"urgent": 10, "bulk": 1}) as a:
        assert [r.topic for r in a.poll(timeout=0, max_records=4)] == ["urgent"] * 3 + ["bulk"]


def test_weighted_priority_prefers_the_heavier_topic(root: str, clock: Clock) -> None:
    produce(root, "urgent", 200)
    produce(root, "bulk", 200)
    with sc_(root, clock, ["bulk", "urgent"], priorities={"urgent": 9, "bulk": 1}, priority_mode="weighted") as a:
        firsts = [a.poll(timeout=0, max_records=1)[0].topic for _ in range(100)]
    assert firsts.count("urgent") > firsts.count("bulk")


def test_wakeup_ends_a_waiting_poll(root: str) -> None:
    produce(root, "jobs", 0)
    with logq.ShareConsumer(root, ["jobs"], group_id="g") as a:
        t = threading.Thread(target=lambda: (threading.Event().wait(0.1), a.wakeup()))
        t.start()
        assert a.poll(timeout=None) == []
        t.join()


def test_a_write_by_a_producer_wakes_a_waiting_poll(root: str) -> None:
    produce(root, "jobs", 0)
    with logq.ShareConsumer(root, ["jobs"], group_id="g", auto_offset_reset="earliest") as a:
        t = threading.Thread(target=lambda: (threading.Event().wait(0.1), produce(root, "jobs", 1)))
        t.start()
        assert [r.offset for r in a.poll(timeout=300)] == [0]
        t.join()


# ----------------------------------------------------------------------------- damage


def journal(root: str) -> Path:
    return Path(share_group_dir(root, "g")) / "jobs-0.journal"


def test_a_damaged_journal_is_reported_never_reset_and_can_be_reset_explicitly(root: str, clock: Clock) -> None:
    produce(root, "jobs", 5)
    with sc_(root, clock, acknowledgement_mode="explicit") as a:
        for rec in a.poll(timeout=0, max_records=2):
            a.acknowledge(rec, "accept")
        a.commit()
        a.poll(timeout=0, max_records=1)
    raw = bytearray(journal(root).read_bytes())
    raw[14] ^= 0xFF  # inside the first frame, with more frames after it
    journal(root).write_bytes(bytes(raw))
    with sc_(root, clock) as b:
        with pytest.raises(logq.ShareStateCorruptError) as err:
            b.poll(timeout=0)
        assert "jobs-0.journal" in str(err.value)
    (info,) = describe_share_group(root, "g").partitions
    assert info.damaged is not None and "CRC" in info.damaged
    done = reset_share_start(root, "g", [("jobs", 0)], 2)
    assert any("damaged" in d for d in done)
    with sc_(root, clock) as c:
        assert [r.offset for r in c.poll(timeout=0)] == [2, 3, 4]


def test_a_torn_tail_is_cut_and_the_state_before_it_kept(root: str, clock: Clock, caplog) -> None:
    produce(root, "jobs", 3)
    with sc_(root, clock, acknowledgement_mode="explicit") as a:
        (rec,) = a.poll(timeout=0, max_records=1)
        a.acknowledge(rec, "accept")
        a.commit()
    with open(journal(root), "ab") as f:
        f.write(b"\x40\x00\x00\x00\x01\x02")  # a frame header cut short by a crash
    with sc_(root, clock) as b:
        assert [r.offset for r in b.poll(timeout=0)] == [1, 2]
    assert "torn tail" in caplog.text


# ----------------------------------------------------------------------------- misuse


def test_wrong_arguments_raise_config_errors(root: str) -> None:
    produce(root, "jobs", 1)
    bad = [
        {"acknowledgement_mode": "auto"},
        {"lock_duration_ms": 0},
        {"lock_duration_ms": "30s"},
        {"delivery_count_limit": True},
        {"max_in_flight": 0},
        {"auto_offset_reset": "none"},
        {"priorities": {"other": 1}},
        {"priorities": {"jobs": 0}},
        {"priority_mode": "fair"},
        {"clock": 5},
        {"record_ttl_ms": -1},
        {"redelivery_backoff": "linear"},
        {"redelivery_backoff_ms": -5},
        {"max_redelivery_backoff_ms": 0},
    ]
    for kw in bad:
        with pytest.raises(logq.ConfigError):
            logq.ShareConsumer(root, ["jobs"], group_id="g", **kw)
    with pytest.raises(logq.ConfigError):
        logq.ShareConsumer(root, [], group_id="g")
    with pytest.raises(logq.ConfigError):
        logq.ShareConsumer(root, ["jobs"], group_id=None)  # type: ignore[arg-type]
    with pytest.raises(logq.InvalidGroupIdError):
        logq.ShareConsumer(root, ["jobs"], group_id="a/b")
    with pytest.raises(logq.UnknownTopicError):
        logq.ShareConsumer(root, ["nope"], group_id="g")
    with pytest.raises(logq.UnknownTopicError):
        logq.ShareConsumer(root, ["jobs"], group_id="g", dead_letter_topic="no-such-dlq")
    with pytest.raises(logq.ConfigError):
        logq.ShareConsumer(42, ["jobs"], group_id="g")  # type: ignore[arg-type]
    with logq.ShareConsumer(Path(root), ("jobs",), group_id="g") as sc:
        assert sc.assignment() == {logq.TopicPartition("jobs", 0)}
    with logq.ShareConsumer(root, "jobs", group_id="g") as sc:
        with pytest.raises(logq.ConfigError):
            sc.poll(timeout=-1)
        with pytest.raises(logq.ConfigError):
            sc.poll(max_records=0)


def test_acknowledging_wrongly_raises(root: str, clock: Clock) -> None:
    produce(root, "jobs", 2)
    with sc_(root, clock, acknowledgement_mode="explicit") as a, sc_(root, clock) as b:
        (rec,) = a.poll(timeout=0, max_records=1)
        with pytest.raises(logq.ConfigError):
            a.acknowledge(rec, "maybe")
        with pytest.raises(logq.ConfigError):
            a.acknowledge(rec, "accept", delay_ms=5)
        with pytest.raises(logq.ShareAcknowledgementError):
            b.acknowledge(rec)  # not b's
        with pytest.raises(logq.ShareAcknowledgementError):
            a.acknowledge("record")  # type: ignore[arg-type]
        a.acknowledge(rec)
        with pytest.raises(logq.ShareAcknowledgementError):
            a.acknowledge(rec)  # twice


def test_a_closed_consumer_refuses_calls_and_closes_twice(root: str, clock: Clock) -> None:
    produce(root, "jobs", 1)
    a = sc_(root, clock)
    (rec,) = a.poll(timeout=0)
    a.close()
    a.close()
    for call in (lambda: a.poll(0), a.commit, lambda: a.acknowledge(rec), lambda: a.renew(rec)):
        with pytest.raises(logq.ClientClosedError):
            call()


def test_a_second_thread_inside_is_refused(root: str) -> None:
    produce(root, "jobs", 0)
    with logq.ShareConsumer(root, ["jobs"], group_id="g") as a:
        errors: list[BaseException] = []
        inside = threading.Event()
        t = threading.Thread(target=lambda: (inside.set(), a.poll(timeout=None)))
        t.start()
        inside.wait()
        while a._owner == 0:  # the other thread is inside poll
            threading.Event().wait(0.001)
        try:
            a.poll(timeout=0)
        except logq.ConcurrentAccessError as e:
            errors.append(e)
        a.wakeup()
        t.join()
        assert len(errors) == 1


def test_a_consumer_never_closed_leaves_the_group_when_collected(root: str, clock: Clock) -> None:
    produce(root, "jobs", 1)
    a = sc_(root, clock)
    a.poll(timeout=0)
    member = a.member_id
    del a
    gc.collect()
    assert not os.path.exists(os.path.join(share_group_dir(root, "g"), "members", f"{member}.lock"))
    with sc_(root, clock) as b:
        assert [r.delivery_count for r in b.poll(timeout=0)] == [2]


def test_a_record_that_does_not_deserialize_is_released_and_archived_at_the_limit(root: str, clock: Clock) -> None:
    produce(root, "jobs", 2)

    def picky(b: bytes) -> str:
        if b.endswith(b"-0"):
            raise ValueError("not this one")
        return b.decode()

    with sc_(root, clock, value_deserializer=picky, delivery_count_limit=2) as a:
        for _ in range(2):
            with pytest.raises(logq.DeserializationError) as err:
                a.poll(timeout=0)
            assert (err.value.topic, err.value.partition, err.value.offset) == ("jobs", 0, 0)
        # offset 1 was acquired with offset 0 each time, but given back uncounted
        assert [(r.offset, r.value, r.delivery_count) for r in a.poll(timeout=0)] == [(1, "jobs-1", 1)]
    (p,) = describe_share_group(root, "g").partitions
    assert p.totals["delivery_limit"] == 1


def test_exponential_redelivery_backoff_after_expired_locks(root: str, clock: Clock) -> None:
    produce(root, "jobs", 1)
    kw = {"redelivery_backoff_ms": 1000, "redelivery_backoff": "exponential", "acknowledgement_mode": "explicit"}
    consumers = [sc_(root, clock, **kw) for _ in range(3)]
    try:
        for n, (sc, backoff) in enumerate(zip(consumers, (None, 1000, 2000)), start=1):
            if backoff is not None:
                clock.now += 1000  # the previous holder's lock (1000 ms) expires unacknowledged
                assert sc.poll(timeout=0) == []
                clock.now += backoff - 1
                assert sc.poll(timeout=0) == []
                clock.now += 1
            (rec,) = sc.poll(timeout=0)
            assert rec.delivery_count == n
        consumers[2].acknowledge(rec, "accept")
    finally:
        for sc in consumers:
            sc.close()


def test_close_from_another_thread_ends_a_waiting_poll_which_acquires_nothing(root: str) -> None:
    produce(root, "jobs", 0)
    a = logq.ShareConsumer(root, ["jobs"], group_id="g", auto_offset_reset="earliest")
    got: list[list[logq.ShareRecord]] = []
    t = threading.Thread(target=lambda: got.append(a.poll(timeout=None)))
    t.start()
    while a._owner == 0:  # the poll is under way
        threading.Event().wait(0.001)
    produce(root, "jobs", 1)
    a.close()
    t.join()
    # the poll returned: with nothing, or with the record if it came before close(), which
    # then released it
    assert len(got) == 1 and [r.offset for r in got[0]] in ([], [0])
    with logq.ShareConsumer(root, ["jobs"], group_id="g", auto_offset_reset="earliest") as b:
        assert [(r.offset, r.delivery_count) for r in b.poll(timeout=0)] == [(0, 1 + len(got[0]))]


def test_commit_fdatasyncs_every_journal_written_since_the_last_commit_and_poll_does_not(
    root: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    produce(root, "jobs", 4, partitions=2)
    synced: list[str] = []
    real = os.fdatasync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    with sc_(root, clock, acknowledgement_mode="explicit") as a:
        recs = a.poll(timeout=0)
        for r in recs:
            a.acknowledge(r, "accept")
        assert synced == []  # acquisitions are never synced
        a.poll(timeout=0)  # applies the acknowledgements, still unsynced
        assert synced == []
        a.commit()
        assert sorted(os.path.basename(p) for p in synced) == ["jobs-0.journal", "jobs-1.journal"]
        synced.clear()
        a.commit()
        assert synced == []  # nothing written since
