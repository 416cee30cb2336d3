"""Group commit of durable produce (acks=all on an ``fsync="always"`` topic), on the wire:
concurrent requests to one partition share an fdatasync, and none is answered before a sync
that covers its batch has finished.

Overlap is made deterministic by holding the partition's op lock (the ``.lock`` flock every
writer of a partition takes to append) from the test: the server's first append waits for it,
the other requests queue behind that one, and all of them are in the server before the lock
is released. The server's counters (``broker.extensions["produce"]``: the syncs produce
requests ran and the requests answered after one) are read, not patched."""

from __future__ import annotations

import datetime
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from logq import Admin, Consumer, LogFailedError, Server
from logq.codec.batch import encode_batch
from logq.storage.files import FileLock
from logq.storage.log import PartitionLog
from logq.storage.topics import partition_path

from tests.server import wire

KAFKA_STORAGE_ERROR = 56
RECORDS = 10  # per batch


@pytest.fixture
def durable(root: str) -> Iterator[Server]:
    Admin(root).create_topic("d", partitions=1, fsync="always")
    with Server(root, port=0) as s:
        yield s


def batch(pid: int, seq: int, tag: str) -> bytes:
    recs = [(None, f"{tag}-{i}".encode(), None, 1000) for i in range(RECORDS)]
    return bytes(encode_batch(recs, 0, producer_id=pid, producer_epoch=0, base_sequence=seq))


def produce_frame(corr: int, records: bytes, acks: int = -1) -> bytes:
    m = wire.request_class(0, 7)
    mod = __import__(m.__module__, fromlist=["x"])
    data = mod.TopicProduceData(name="d", partition_data=(mod.PartitionProduceData(index=0, records=records),))
    req = m(transactional_id=None, acks=acks, timeout=datetime.timedelta(seconds=30), topic_data=(data,))
    return wire.request_frame(0, 7, corr, req)


def answer(sock: socket.socket) -> tuple[int, int]:
    """(error code, base offset) of a produce response."""
    _, resp = wire.decode_response(0, 7, wire.read_frame(sock))
    part = resp.responses[0].partition_responses[0]
    return int(part.error_code), int(part.base_offset)


def produce(port: int, records: bytes) -> tuple[int, int]:
    with wire.connect(port) as s:
        s.sendall(produce_frame(1, records))
        return answer(s)


def counters(srv: Server) -> Any:
    return srv._broker.extensions["produce"]  # type: ignore[union-attr]


def queued(srv: Server) -> int:
    """Requests queued for the partition's write lock or appending, over its logs."""
    return sum(gc.appending for gc in list(counters(srv).by_log.values()))


def wait_until_queued(srv: Server, n: int) -> None:
    deadline = time.monotonic() + 60
    while queued(srv) < n:
        assert time.monotonic() < deadline, f"only {queued(srv)} of {n} requests reached the server"
        time.sleep(0.01)


def nothing_to_read(socks: list[socket.socket]) -> bool:
    readable, _, _ = select.select(socks, [], [], 0)
    return not readable


def values(root: str) -> list[bytes]:
    with Consumer(root, "d", auto_offset_reset="earliest") as c:
        return [r.value for b in iter(lambda: c.poll(timeout=0.5), []) for r in b]


def send_overlapping(srv: Server, frames: list[bytes]) -> list[tuple[int, int]]:
    """Send each frame on its own connection while the partition's op lock is held, check
    that none is answered while it is, release it, and return the answers in order."""
    lock = FileLock(os.path.join(partition_path(srv.data_dir, "d", 0), ".lock"))
    socks = [wire.connect(srv.port, timeout_s=60) for _ in frames]
    try:
        assert lock.acquire()
        try:
            for s, f in zip(socks, frames, strict=True):
                s.sendall(f)
            wait_until_queued(srv, len(frames))
            assert nothing_to_read(socks)  # nothing answered before its append, let alone its sync
        finally:
            lock.release()
        return [answer(s) for s in socks]
    finally:
        lock.close()
        for s in socks:
            s.close()


def test_overlapping_acks_all_requests_share_one_fdatasync(durable: Server) -> None:
    assert produce(durable.port, batch(1, 0, "warm")) == (0, 0)  # opens the writer
    before = counters(durable).syncs, counters(durable).synced_requests
    n = 6
    got = send_overlapping(durable, [produce_frame(1, batch(100 + i, 0, f"p{i}")) for i in range(n)])
    assert [e for e, _ in got] == [0] * n
    assert sorted(b for _, b in got) == [RECORDS * (i + 1) for i in range(n)]
    assert counters(durable).syncs - before[0] == 1  # one fdatasync for all six
    assert counters(durable).synced_requests - before[1] == n
    assert len(values(durable.data_dir)) == RECORDS * (n + 1)


def test_a_retry_that_overlaps_its_original_is_deduplicated_and_waits_for_the_same_sync(durable: Server) -> None:
    assert produce(durable.port, batch(1, 0, "warm")) == (0, 0)
    before = counters(durable).syncs
    same = produce_frame(1, batch(7, 0, "once"))
    got = send_overlapping(durable, [same, same, produce_frame(1, batch(8, 0, "other"))])
    assert [e for e, _ in got] == [0, 0, 0]
    assert got[0][1] == got[1][1] and got[2][1] != got[0][1]  # the retry is the original's offset
    assert counters(durable).syncs - before == 1
    vals = values(durable.data_dir)
    assert sum(v.startswith(b"once-") for v in vals) == RECORDS  # stored once


def test_concurrent_producers_are_each_answered_after_a_sync_and_every_record_is_stored_once(
    durable: Server,
) -> None:
    producers, requests = 4, 40
    assert "produce" not in durable._broker.extensions  # type: ignore[union-attr]  # counters start at 0
    errors: list[object] = []

    def one(i: int) -> None:
        with wire.connect(durable.port, timeout_s=60) as s:
            for k in range(requests):
                s.sendall(produce_frame(k, batch(200 + i, k * RECORDS, f"p{i}-{k}")))
                err, _ = answer(s)
                if err:
                    errors.append(err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    syncs = counters(durable).syncs
    assert counters(durable).synced_requests == producers * requests  # none answered without a sync
    assert 1 <= syncs <= producers * requests
    print(f"{producers * requests} acks=all requests, {syncs} group-commit syncs")
    vals = values(durable.data_dir)
    assert len(vals) == len(set(vals)) == producers * requests * RECORDS


def test_a_failed_sync_fails_every_request_it_covered_and_their_retries(
    durable: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert produce(durable.port, batch(1, 0, "warm")) == (0, 0)

    def failing(self: PartitionLog) -> None:
        raise LogFailedError(self.path, OSError(5, "Input/output error"))

    monkeypatch.setattr(PartitionLog, "sync_deferred", failing)  # fault injection: an EIO from fdatasync
    frames = [produce_frame(1, batch(300 + i, 0, f"f{i}")) for i in range(3)]
    got = send_overlapping(durable, frames)
    assert [e for e, _ in got] == [KAFKA_STORAGE_ERROR] * 3
    assert produce(durable.port, batch(300, 0, "f0"))[0] == KAFKA_STORAGE_ERROR  # the retry: no ack either


@pytest.mark.parametrize("acks", [0, 1])
def test_acks_0_and_1_on_a_durable_topic_are_stored_and_synced_too(durable: Server, acks: int) -> None:
    with wire.connect(durable.port) as s:
        s.sendall(produce_frame(1, batch(-1, -1, "a"), acks=acks))
        if acks:
            assert answer(s) == (0, 0)
        s.sendall(produce_frame(2, batch(-1, -1, "b")))  # acks=all: answered after both are synced
        assert answer(s) == (0, RECORDS)
    assert counters(durable).synced_requests == 2
    assert len(values(durable.data_dir)) == 2 * RECORDS


def test_a_non_durable_topic_runs_no_group_commit(root: str) -> None:
    Admin(root).create_topic("d", partitions=1, fsync="never")
    with Server(root, port=0) as srv:
        assert produce(srv.port, batch(-1, -1, "x")) == (0, 0)
        assert "produce" not in srv._broker.extensions  # type: ignore[union-attr]
