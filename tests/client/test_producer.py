"""The producer API: futures and metadata, Kafka partitioning, headers, serializers, batching
(linger_ms, batch_size, flush, close), size and buffer limits, threads, send_batch, and two
producer processes writing one topic."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import logq
import pytest
from logq import (
    Admin,
    BatchMetadata,
    ConfigError,
    InvalidTopicError,
    LogClosedError,
    PartitionLog,
    Producer,
    ProducerBufferFullError,
    RecordMetadata,
    RecordTooLargeError,
    SerializationError,
    UnknownTopicError,
)
from logq.codec.batch import BatchHeader
from logq.codec.batch import BatchRecord as Record

from tests.support import e2e_children as children
from tests.support.clients import make_topic

CTX = multiprocessing.get_context("spawn")
T0 = 1_700_000_000_000


# ----------------------------------------------------------------------------- helpers


def read_log(root: str, topic: str, p: int) -> tuple[list[Record], list[BatchHeader]]:
    """Every record and every batch header of one partition, read with a fresh log reader."""
    with Admin(root) as admin:
        cfg = admin.topic_config(topic)
    with PartitionLog(os.path.join(root, f"{topic}-{p}"), cfg, readonly=True) as lg:
        records: list[Record] = []
        headers: list[BatchHeader] = []
        off = lg.log_start_offset
        while off < lg.log_end_offset:
            res = lg.read(off)
            headers.extend(res.headers)
            records.extend(res.records())
            off = res.next_offset
        return records, headers


def all_records(root: str, topic: str, partitions: int) -> dict[int, list[Record]]:
    return {p: read_log(root, topic, p)[0] for p in range(partitions)}


# ----------------------------------------------------------------------------- metadata


def test_send_future_resolves_to_record_metadata_with_topic_partition_offset_timestamp(root: str) -> None:
    make_topic(root, "t", 2)
    with Producer(root, linger_ms=0) as prod:
        before = int(time.time() * 1000)
        futs = [prod.send("t", b"v%d" % i, partition=1) for i in range(3)]
        metas = [f.result(10) for f in futs]
        after = int(time.time() * 1000)
        explicit = prod.send("t", b"x", partition=0, timestamp_ms=T0).result(10)
    assert all(isinstance(m, RecordMetadata) for m in metas)
    assert [(m.topic, m.partition, m.offset) for m in metas] == [("t", 1, 0), ("t", 1, 1), ("t", 1, 2)]
    assert all(before <= m.timestamp <= after for m in metas)
    assert explicit == RecordMetadata("t", 0, 0, T0)
    recs = read_log(root, "t", 1)[0]
    assert [(r.offset, r.value, r.timestamp) for r in recs] == [
        (m.offset, b"v%d" % i, m.timestamp) for i, m in enumerate(metas)
    ]


def test_future_done_and_exception_report_a_successful_write(root: str) -> None:
    make_topic(root)
    with Producer(root, linger_ms=60_000) as prod:
        fut = prod.send("t", b"v")
        assert not fut.done()
        prod.flush()
        assert fut.done()
        assert fut.exception() is None


def test_unknown_topic_and_bad_partition_are_refused_at_send(root: str) -> None:
    make_topic(root, "t", 2)
    with Producer(root) as prod:
        with pytest.raises(UnknownTopicError):
            prod.send("nope", b"v")
        with pytest.raises(InvalidTopicError):
            prod.send("t", b"v", partition=2)
        with pytest.raises(InvalidTopicError):
            prod.send("t", b"v", partition=-1)


@pytest.mark.parametrize(
    "kw", [{"linger_ms": -1}, {"batch_size": 0}, {"buffer_bytes": 0}, {"max_block_ms": -5}, {"linger_ms": 1.5}]
)
def test_bad_producer_settings_are_config_errors(root: str, kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Producer(root, **kw)


# ----------------------------------------------------------------------------- partitioning


@pytest.mark.parametrize(
    "key, of12, of3",
    [
        (b"user-42", 4, 1),
        (b"21", 0, 0),
        (b"foobar", 6, 0),
        (b"abc", 3, 0),
        (b"a-little-bit-long-string", 8, 2),
        (b"key-0", 1, 1),
        (b"hello", 9, 0),
        (b"", 9, 0),
    ],
)
def test_keyed_records_land_on_kafkas_murmur2_partition(root: str, key: bytes, of12: int, of3: int) -> None:
    make_topic(root, "t3", 3)
    make_topic(root, "t12", 12)
    with Producer(root, linger_ms=0) as prod:
        assert prod.send("t3", b"v", key=key).result(10).partition == of3
        assert prod.send("t12", b"v", key=key).result(10).partition == of12
    assert [r.key for r in read_log(root, "t3", of3)[0]] == [key]
    assert [r.key for r in read_log(root, "t12", of12)[0]] == [key]


def test_same_key_always_lands_on_the_same_partition_even_with_a_str_key_serializer(root: str) -> None:
    make_topic(root, "t", 12)
    with Producer(root, linger_ms=0, key_serializer="str") as prod:
        parts = {prod.send("t", b"v%d" % i, key="user-42").result(10).partition for i in range(20)}
    assert parts == {4}


def test_explicit_partition_wins_over_the_key(root: str) -> None:
    make_topic(root, "t", 3)
    with Producer(root, linger_ms=0) as prod:
        assert prod.send("t", b"v", key=b"user-42", partition=2).result(10).partition == 2


def test_null_keys_stick_to_one_partition_per_batch_size_bytes_then_move(root: str) -> None:
    """KIP-794: a run on one partition lasts until batch_size bytes went to it."""
    make_topic(root, "t", 4)
    value = b"x" * 76  # the producer counts 24 bytes of record overhead: 100 bytes a record
    with Producer(root, linger_ms=0, batch_size=1000) as prod:
        parts = [prod.send("t", value).result(10).partition for _ in range(100)]
    runs = []
    for p in parts:
        if runs and runs[-1][0] == p:
            runs[-1][1] += 1
        else:
            runs.append([p, 1])
    # 10 records of 100 bytes make 1000 bytes: each run is exactly 10 long and then moves
    assert [n for _, n in runs] == [10] * 10
    assert all(a[0] != b[0] for a, b in zip(runs, runs[1:]))


def test_null_keys_spread_over_every_partition_over_time(root: str) -> None:
    make_topic(root, "t", 4)
    with Producer(root, linger_ms=0, batch_size=200) as prod:
        counts = Counter(prod.send("t", b"x" * 76).result(10).partition for _ in range(400))
    assert set(counts) == {0, 1, 2, 3}
    # 200 runs of 2 records: each partition gets a fair share (expected 100; binomial tails
    # below 40 are below 1e-12)
    assert min(counts.values()) >= 40


# ----------------------------------------------------------------------------- headers


def test_headers_given_as_a_dict_round_trip(root: str) -> None:
    make_topic(root)
    with Producer(root, linger_ms=0) as prod:
        prod.send("t", b"v", headers={"trace": b"abc", "empty": b"", "none": None}).result(10)
    (rec,), _ = read_log(root, "t", 0)
    assert dict(rec.headers) == {"trace": b"abc", "empty": b"", "none": None}


def test_headers_given_as_a_list_keep_repeated_keys_and_their_order(root: str) -> None:
    make_topic(root)
    hdrs = [("k", b"1"), ("other", b"x"), ("k", b"2"), ("k", b"3")]
    with Producer(root, linger_ms=0) as prod:
        prod.send("t", b"v", headers=hdrs).result(10)
    (rec,), _ = read_log(root, "t", 0)
    assert list(rec.headers) == hdrs
    with logq.Consumer(root, "t", auto_offset_reset="earliest") as c:
        (got,) = c.poll(10)
    assert list(got.headers) == hdrs


def test_bad_header_value_is_refused_at_send_and_does_not_fail_other_records_in_the_batch(root: str) -> None:
    """Regression: a str header value used to fail, at write time, every record of its batch."""
    make_topic(root)
    with Producer(root, linger_ms=60_000) as prod:
        good = prod.send("t", b"good")
        with pytest.raises(SerializationError):
            prod.send("t", b"bad", headers={"h": "not-bytes"})
        with pytest.raises(SerializationError):
            prod.send("t", b"bad", headers=[("h", 42)])
        with pytest.raises(SerializationError):
            prod.send("t", b"bad", headers=[b"no-pairs"])
        with pytest.raises(SerializationError):
            prod.send("t", b"bad", headers=[(None, b"v")])
        after = prod.send("t", b"after")
        prod.flush()
        assert good.exception() is None and after.exception() is None
    assert [r.value for r in read_log(root, "t", 0)[0]] == [b"good", b"after"]


# ----------------------------------------------------------------------------- serializers


def test_str_and_json_serializers_store_utf8_and_compact_json(root: str) -> None:
    make_topic(root)
    with Producer(root, linger_ms=0, key_serializer="str", value_serializer="json") as prod:
        prod.send("t", {"name": "zoë", "n": [1, 2]}, key="clé").result(10)
        prod.send("t", None, key=None).result(10)  # a tombstone: null stays null
    recs, _ = read_log(root, "t", 0)
    assert recs[0].key == "clé".encode()
    assert recs[0].value == '{"name":"zoë","n":[1,2]}'.encode()
    assert (recs[1].key, recs[1].value) == (None, None)


def test_callable_serializer_is_used_as_is(root: str) -> None:
    make_topic(root)
    with Producer(root, linger_ms=0, value_serializer=lambda v: str(v * 2).encode()) as prod:
        prod.send("t", 21).result(10)
    assert read_log(root, "t", 0)[0][0].value == b"42"


@pytest.mark.parametrize("which", ["key_serializer", "value_serializer"])
def test_pickle_serializer_is_refused_with_config_error(root: str, which: str) -> None:
    with pytest.raises(ConfigError):
        Producer(root, **{which: "pickle"})


@pytest.mark.parametrize("value, key", [("text", None), (b"ok", 42), ({"a": 1}, None), (b"ok", "str-key")])
def test_non_bytes_without_a_serializer_raise_serialization_error_and_write_nothing(
    root: str, value: Any, key: Any
) -> None:
    make_topic(root)
    with Producer(root, linger_ms=0) as prod:
        with pytest.raises(SerializationError):
            prod.send("t", value, key=key)
    assert read_log(root, "t", 0)[0] == []


def test_value_the_json_serializer_cannot_encode_raises_serialization_error(root: str) -> None:
    make_topic(root)
    with Producer(root, linger_ms=0, value_serializer="json") as prod:
        with pytest.raises(SerializationError):
            prod.send("t", {"x": object()})
        with pytest.raises(SerializationError):
            prod.send("t", float("nan"))
    assert read_log(root, "t", 0)[0] == []


# ----------------------------------------------------------------------------- batching


def test_linger_gathers_several_sends_into_one_batch(root: str) -> None:
    make_topic(root)
    with Producer(root, linger_ms=60_000) as prod:
        futs = [prod.send("t", b"v%d" % i) for i in range(5)]
        assert not any(f.done() for f in futs)  # still lingering
        assert read_log(root, "t", 0)[0] == []
        prod.flush()
        assert [f.result(0).offset for f in futs] == [0, 1, 2, 3, 4]
    recs, batches = read_log(root, "t", 0)
    assert len(batches) == 1 and batches[0].records_count == 5
    assert [r.value for r in recs] == [b"v%d" % i for i in range(5)]


def test_linger_timer_writes_a_waiting_batch_without_flush(root: str) -> None:
    make_topic(root)
    with Producer(root, linger_ms=20) as prod:
        fut = prod.send("t", b"v")
        assert fut.result(timeout=30).offset == 0  # nobody flushed: the linger thread wrote it


def test_linger_ms_zero_writes_each_send_without_flush(root: str) -> None:
    """Regression: with linger_ms=0 no linger thread ran, so a record waited for flush() forever."""
    make_topic(root)
    with Producer(root, linger_ms=0) as prod:
        fut = prod.send("t", b"v")
        assert fut.done()
        assert [r.value for r in read_log(root, "t", 0)[0]] == [b"v"]


def test_a_full_batch_is_written_at_once_without_waiting_for_linger(root: str) -> None:
    make_topic(root)
    with Producer(root, linger_ms=60_000, batch_size=300) as prod:
        futs = [prod.send("t", b"x" * 76) for _ in range(3)]  # 3 x 100 bytes fill the batch
        assert all(f.done() for f in futs)
        nxt = prod.send("t", b"y")
        assert not nxt.done()
    _, batches = read_log(root, "t", 0)
    assert [b.records_count for b in batches] == [3, 1]


def test_flush_writes_every_waiting_record_of_every_partition(root: str) -> None:
    make_topic(root, "t", 3)
    make_topic(root, "u", 1)
    with Producer(root, linger_ms=60_000) as prod:
        futs = [prod.send("t", b"a", partition=p) for p in range(3)] + [prod.send("u", b"b")]
        prod.flush()
        assert all(f.done() and f.exception() is None for f in futs)
    assert sum(len(v) for v in all_records(root, "t", 3).values()) == 3
    assert len(read_log(root, "u", 0)[0]) == 1


def test_close_flushes_waiting_records_and_later_sends_are_refused(root: str) -> None:
    make_topic(root)
    prod = Producer(root, linger_ms=60_000)
    fut = prod.send("t", b"v")
    prod.close()
    assert fut.result(0).offset == 0
    assert [r.value for r in read_log(root, "t", 0)[0]] == [b"v"]
    with pytest.raises(LogClosedError):
        prod.send("t", b"w")
    with pytest.raises(LogClosedError):
        prod.send_batch("t", [b"w"])
    prod.close()  # idempotent


def test_future_result_times_out_while_the_record_lingers(root: str) -> None:
    make_topic(root)
    with Producer(root, linger_ms=60_000) as prod:
        fut = prod.send("t", b"v")
        with pytest.raises(TimeoutError):
            fut.result(timeout=0.01)


# ----------------------------------------------------------------------------- limits


def test_record_larger_than_max_batch_bytes_raises_and_nothing_is_written(root: str) -> None:
    make_topic(root, max_batch_bytes=2000)
    with Producer(root, linger_ms=60_000) as prod:
        ok = prod.send("t", b"small")
        with pytest.raises(RecordTooLargeError):
            prod.send("t", b"x" * 2000)
        with pytest.raises(RecordTooLargeError):
            prod.send("t", b"x", headers={"big": b"y" * 2000})
        with pytest.raises(RecordTooLargeError):
            prod.send_batch("t", [b"x" * 2000])
        prod.flush()
        assert ok.result(0).offset == 0
    assert [r.value for r in read_log(root, "t", 0)[0]] == [b"small"]


def test_batch_size_above_the_topic_max_batch_bytes_splits_batches_instead_of_failing(root: str) -> None:
    """Regression: records that each fit used to fail together when batch_size let their
    batch grow past the topic's max_batch_bytes."""
    make_topic(root, max_batch_bytes=1000)
    with Producer(root, linger_ms=60_000, batch_size=1 << 20) as prod:
        futs = [prod.send("t", b"x" * 100) for _ in range(30)]
        prod.flush()
        assert [f.exception() for f in futs] == [None] * 30
    recs, batches = read_log(root, "t", 0)
    assert len(recs) == 30
    assert len(batches) > 1 and all(b.size <= 1000 for b in batches)


def _count_appends(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    stats = {"records": 0}
    orig = PartitionLog.append

    def counting(self: PartitionLog, records: Any) -> Any:
        res = orig(self, records)
        stats["records"] += len(records)
        return res

    monkeypatch.setattr(PartitionLog, "append", counting)
    return stats


def test_tiny_buffer_never_holds_more_than_buffer_bytes_and_every_record_lands(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_topic(root, "t", 3)
    written = _count_appends(monkeypatch)
    per_record = 24 + 76  # the producer's accounting of one 76-byte value without key
    with Producer(root, linger_ms=60_000, batch_size=250, buffer_bytes=5 * per_record, max_block_ms=10_000) as prod:
        most_held = 0
        futs = []
        for i in range(300):
            futs.append(prod.send("t", b"%075d|" % i, partition=i % 3))
            most_held = max(most_held, len(futs) - written["records"])
        prod.flush()
        assert all(f.exception() is None for f in futs)
    assert most_held <= 5
    assert sum(len(v) for v in all_records(root, "t", 3).values()) == 300


def _stall_partition_writes(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """PartitionLog.append blocks until ``gate`` is set; ``entered`` says one call is stuck."""
    gate, entered = threading.Event(), threading.Event()
    orig = PartitionLog.append

    def stuck(self: PartitionLog, records: Any) -> Any:
        entered.set()
        if not gate.wait(60):
            raise AssertionError("the test never opened the gate")
        return orig(self, records)

    monkeypatch.setattr(PartitionLog, "append", stuck)
    return gate, entered


def _send_in_thread(prod: Producer, *args: Any, **kw: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(prod.send(*args, **kw))
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


@pytest.mark.parametrize("second_partition", [0, 1])
def test_full_buffer_raises_producer_buffer_full_after_max_block_ms_while_a_write_is_stuck(
    root: str, monkeypatch: pytest.MonkeyPatch, second_partition: int
) -> None:
    """Regression: send() used to wait for the stuck write itself, past max_block_ms, forever."""
    make_topic(root, "t", 2)
    gate, entered = _stall_partition_writes(monkeypatch)
    prod = Producer(root, linger_ms=0, batch_size=1, buffer_bytes=150, max_block_ms=200)
    try:
        first, first_out = _send_in_thread(prod, "t", b"a" * 100, partition=0)  # its write hangs
        assert entered.wait(30)
        second, second_out = _send_in_thread(prod, "t", b"b" * 100, partition=second_partition)
        second.join(30)  # a generous bound: the send must give up after ~200 ms by itself
        assert not second.is_alive(), "send() blocked past max_block_ms"
        assert len(second_out) == 1 and isinstance(second_out[0], ProducerBufferFullError)
        assert second_out[0].buffer_bytes == 150
    finally:
        gate.set()
        first.join(30)
    assert not isinstance(first_out[0], BaseException)
    assert first_out[0].result(30).offset == 0
    prod.close()
    assert [r.value for r in read_log(root, "t", 0)[0]] == [b"a" * 100]
    assert read_log(root, "t", 1)[0] == []


def test_full_buffer_waits_for_another_threads_write_and_then_succeeds(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_topic(root, "t", 2)
    gate, entered = _stall_partition_writes(monkeypatch)
    prod = Producer(root, linger_ms=0, batch_size=1, buffer_bytes=150, max_block_ms=60_000)
    first, first_out = _send_in_thread(prod, "t", b"a" * 100, partition=0)
    assert entered.wait(30)
    second, second_out = _send_in_thread(prod, "t", b"b" * 100, partition=1)
    time.sleep(0.05)
    assert second.is_alive() and not second_out  # waiting for room
    gate.set()
    first.join(30)
    second.join(30)
    assert not isinstance(second_out[0], BaseException)
    assert second_out[0].result(30).partition == 1
    prod.close()
    assert len(read_log(root, "t", 1)[0]) == 1


def test_a_failed_write_fails_its_futures_and_the_producer_keeps_working(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_topic(root)
    orig = PartitionLog.append
    calls = {"n": 0}

    def flaky(self: PartitionLog, records: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise logq.DiskFullError("write", self.path, OSError(28, "No space left on device"))
        return orig(self, records)

    monkeypatch.setattr(PartitionLog, "append", flaky)
    with Producer(root, linger_ms=0) as prod:
        bad = prod.send("t", b"lost")
        with pytest.raises(logq.DiskFullError):
            bad.result(10)
        assert isinstance(bad.exception(), logq.DiskFullError)
        with pytest.raises(logq.RecordsFailedError, match="1 record") as info:
            prod.flush()  # the failure is counted once, by the next flush
        assert isinstance(info.value.__cause__, logq.DiskFullError)
        prod.flush()
        assert prod.send("t", b"kept").result(10).offset == 0
    assert [r.value for r in read_log(root, "t", 0)[0]] == [b"kept"]


# ----------------------------------------------------------------------------- threads


def test_threads_sending_to_one_topic_every_record_lands_once_and_in_send_order_per_partition(root: str) -> None:
    make_topic(root, "t", 3)
    threads_n, per_thread = 8, 400
    metas: dict[int, list[RecordMetadata]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    with Producer(root, linger_ms=1, batch_size=2048) as prod:

        def run(tid: int) -> None:
            try:
                start.wait()
                futs = [
                    prod.send("t", b"%d:%d" % (tid, i), key=b"k%d" % (i % 5) if tid % 2 else None)
                    for i in range(per_thread)
                ]
                metas[tid] = [f.result(60) for f in futs]
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        ths = [threading.Thread(target=run, args=(t,)) for t in range(threads_n)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(120)
    assert not errors
    logs = all_records(root, "t", 3)
    values = [r.value for recs in logs.values() for r in recs]
    assert len(values) == threads_n * per_thread
    assert Counter(values) == Counter(b"%d:%d" % (t, i) for t in range(threads_n) for i in range(per_thread))
    for p, recs in logs.items():
        assert [r.offset for r in recs] == list(range(len(recs)))
        seqs: dict[int, list[int]] = defaultdict(list)
        for r in recs:
            tid, seq = map(int, r.value.split(b":"))
            seqs[tid].append(seq)
        for tid, s in seqs.items():
            assert s == sorted(s), f"thread {tid} out of order on partition {p}"
    for tid, ms in metas.items():  # each future names the slot holding its own record
        for i, m in enumerate(ms):
            assert logs[m.partition][m.offset].value == b"%d:%d" % (tid, i)


def test_several_threads_waiting_on_futures_of_one_batch_all_wake_when_it_is_written(root: str) -> None:
    """Regression: two waiters could each create the batch's Event; one waited on an Event that
    was never set, so result() without a timeout hung although the record was written."""
    make_topic(root)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible to open the race window
    try:
        with Producer(root, linger_ms=60_000) as prod:
            stuck = 0
            for i in range(600):
                futs = [prod.send("t", b"%d" % i) for _ in range(2)]  # one batch, two futures
                errors: list[BaseException] = []

                def wait(f: Any) -> None:
                    try:
                        f.result(timeout=2.0)
                    except TimeoutError as e:
                        errors.append(e)

                waiters = [threading.Thread(target=wait, args=(f,)) for f in futs * 2]
                for t in waiters:
                    t.start()
                prod.flush()
                for t in waiters:
                    t.join(30)
                stuck += len(errors)
    finally:
        sys.setswitchinterval(old)
    assert stuck == 0


# ----------------------------------------------------------------------------- send_batch


def test_send_batch_covers_every_value_with_contiguous_offsets(root: str) -> None:
    make_topic(root, "t", 2)
    values = [b"%06d" % i + b"x" * 1000 for i in range(1500)]  # about 1.5 MB: several batches
    with Producer(root) as prod:
        out = prod.send_batch("t", values, partition=1, timestamp_ms=T0)
    assert all(isinstance(b, BatchMetadata) for b in out) and len(out) > 1
    assert sum(b.count for b in out) == len(values)
    assert out[0].base_offset == 0
    for a, b in zip(out, out[1:]):
        assert b.base_offset == a.base_offset + a.count
    assert {(b.topic, b.partition, b.timestamp) for b in out} == {("t", 1, T0)}
    recs = read_log(root, "t", 1)[0]
    assert [r.value for r in recs] == values
    assert {r.timestamp for r in recs} == {T0}


def test_send_batch_keeps_order_after_earlier_sends_to_the_same_partition(root: str) -> None:
    make_topic(root, "t", 1)
    with Producer(root, linger_ms=60_000) as prod:
        futs = [prod.send("t", b"early-%d" % i) for i in range(3)]
        out = prod.send_batch("t", [b"bulk-0", b"bulk-1"])
        late = prod.send("t", b"late")
        assert [f.result(0).offset for f in futs] == [0, 1, 2]  # written before the bulk
        assert out == [BatchMetadata("t", 0, 3, 2, out[0].timestamp)]
        prod.flush()
        assert late.result(0).offset == 5
    assert [r.value for r in read_log(root, "t", 0)[0]] == [
        b"early-0",
        b"early-1",
        b"early-2",
        b"bulk-0",
        b"bulk-1",
        b"late",
    ]


def test_send_batch_with_a_key_lands_on_the_murmur2_partition_and_keeps_the_key(root: str) -> None:
    make_topic(root, "t", 12)
    with Producer(root, value_serializer="str", key_serializer="str") as prod:
        out = prod.send_batch("t", ["a", "b", "c"], key="user-42")
    assert [(b.partition, b.count) for b in out] == [(4, 3)]
    recs = read_log(root, "t", 4)[0]
    assert [(r.key, r.value) for r in recs] == [(b"user-42", b"a"), (b"user-42", b"b"), (b"user-42", b"c")]


def test_send_batch_refuses_non_bytes_values_without_writing_any(root: str) -> None:
    make_topic(root)
    with Producer(root) as prod:
        with pytest.raises(SerializationError):
            prod.send_batch("t", [b"ok", "not-bytes"])
    assert read_log(root, "t", 0)[0] == []


# ----------------------------------------------------------------------------- processes


def test_two_producer_processes_writing_one_topic_every_ack_is_present_once_in_order(root: str, tmp_path: Any) -> None:
    make_topic(root, "t", 3)
    work = tmp_path / "work"
    work.mkdir()
    start = CTX.Event()
    n = 600
    procs = [CTX.Process(target=children.produce, args=(root, "t", pid, n, str(work), start)) for pid in ("A", "B")]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    logs = all_records(root, "t", 3)
    found = {(p, r.offset): json.loads(r.value) for p, recs in logs.items() for r in recs}
    assert len(found) == 2 * n
    for pid in ("A", "B"):
        acks = children.read_journal(str(work / f"{pid}.acks"))
        assert sorted(seq for _, _, seq in acks) == list(range(n))
        for part, off, seq in acks:
            assert found[(part, off)] == {"p": pid, "seq": seq}
    seen = Counter((v["p"], v["seq"]) for v in found.values())
    assert set(seen.values()) == {1}
    for part, recs in logs.items():  # per producer, offset order is send order
        for pid in ("A", "B"):
            seqs = [json.loads(r.value)["seq"] for r in recs if json.loads(r.value)["p"] == pid]
            assert seqs == sorted(seqs)
    # the two processes really interleaved on at least one partition
    assert any(len({json.loads(r.value)["p"] for r in recs}) == 2 for recs in logs.values())


def test_flush_with_a_timeout_raises_while_another_write_holds_the_partition_then_completes(tmp_path):
    """Regression: flush(timeout) ignored its timeout and could block forever."""

    root = str(tmp_path / "d")
    logq.Admin(root).create_topic("t", 1, retention_ms=-1)
    p = Producer(root, linger_ms=10_000)
    fut = p.send("t", b"v")
    lock = p._drain_lock(("t", 0))
    lock.acquire()  # stands in for another thread's slow write of the partition
    try:
        with pytest.raises(TimeoutError):
            p.flush(timeout=0.05)
        assert not fut.done()
    finally:
        lock.release()
    p.flush(timeout=5)
    assert fut.result(1).offset == 0
    p.close()
