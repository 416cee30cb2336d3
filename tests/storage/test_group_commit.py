"""fsync="always": how many fdatasyncs an append costs, and that nothing is acknowledged before one.

Counted with a wrapper around ``os.fdatasync`` / ``os.fsync`` (never timed): a plain
``PartitionLog.append`` syncs its ``.log`` once and nothing else; a producer's ``send_batch``
writes its batches and syncs once for all of them; batches queued for one partition are
written together and share one fdatasync (group commit). Every wrapper also checks that
no future or result was handed out before the sync that makes its records durable.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest
from logq import Producer
from logq.config import LogConfig
from logq.storage.log import PartitionLog

from tests.support.clients import make_topic


class _Syncs:
    """Counts fdatasync and fsync calls and which file each one was for."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.data: list[str] = []
        self.full: list[str] = []
        self.on_sync: Any = None
        real_data, real_full = os.fdatasync, os.fsync

        def fdatasync(fd: int) -> None:
            if self.on_sync is not None:
                self.on_sync()
            real_data(fd)
            self.data.append(os.readlink(f"/proc/self/fd/{fd}"))

        def fsync(fd: int) -> None:
            real_full(fd)
            self.full.append(os.readlink(f"/proc/self/fd/{fd}"))

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(os, "fsync", fsync)

    def reset(self) -> None:
        self.data.clear()
        self.full.clear()


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> _Syncs:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to name the synced files")
    return _Syncs(monkeypatch)


def test_an_always_append_syncs_its_log_once_and_nothing_else(tmp_path: Any, syncs: _Syncs) -> None:
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig(fsync="always", index_interval_bytes=100))
    syncs.reset()
    for i in range(20):  # index entries are added along the way: they are not synced per append
        log.append_values([b"v%03d" % i] * 10)
    assert len(syncs.data) == 20 and all(p.endswith(".log") for p in syncs.data)
    assert syncs.full == []  # no index, state file or directory fsync per append
    log.close()


def test_send_batch_syncs_once_for_all_its_batches_before_returning(
    root: str, syncs: _Syncs, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_topic(root, "t", 1)
    values = [b"x" * 1024] * 2000  # ~2 MiB: several batches of about 512 KiB
    with Producer(root, fsync="always") as prod:
        prod.send_batch("t", [b"warm"])  # opens the partition log
        syncs.reset()
        written: list[int] = []
        real_append = PartitionLog.append_batch

        def append_batch(self: PartitionLog, batch: bytes, _trusted: bool = False) -> Any:
            res = real_append(self, batch, _trusted)
            written.append(res.last_offset)
            return res

        monkeypatch.setattr(PartitionLog, "append_batch", append_batch)
        syncs.on_sync = lambda: written.append(-1)  # the order of writes and the sync
        out = prod.send_batch("t", values)
        # every batch written, then one fdatasync for all of them, then the call returned
        assert len(out) >= 3
        assert written == [m.base_offset + m.count - 1 for m in out] + [-1]
        assert len(syncs.data) == 1 and syncs.data[0].endswith(".log") and syncs.full == []


def test_queued_batches_of_a_partition_share_one_fdatasync(root: str, syncs: _Syncs) -> None:
    make_topic(root, "t", 1)
    with Producer(root, fsync="always", linger_ms=60_000, batch_size=1) as prod:
        prod.send("t", b"warm").result(10)  # opens the partition log
        syncs.reset()
        futs: list[Any] = []
        threads = []
        # batch_size=1: every send closes its own batch and writes it; while the partition's
        # writer is busy (its drain lock held here), the batches queue behind it.
        with prod._drain_lock(("t", 0)):
            for i in range(8):
                t = threading.Thread(target=lambda i=i: futs.append(prod.send("t", b"r%d" % i)))
                t.start()
                threads.append(t)
            deadline = time.monotonic() + 30
            while sum(len(q) for q in prod._ready.values()) < 8 and time.monotonic() < deadline:
                time.sleep(0.001)
            assert sum(len(q) for q in prod._ready.values()) == 8
            syncs.on_sync = lambda: acked.append(sum(f.done() for f in futs))
            acked: list[int] = []
        for t in threads:
            t.join(30)
        assert sorted(f.result(10).offset for f in futs) == list(range(1, 9))
    assert acked[0] == 0  # none acknowledged before the sync
    log_syncs = [p for p in syncs.data if p.endswith(".log")]
    assert len(log_syncs) <= 2  # one for the group (close() may add one), not one per batch
