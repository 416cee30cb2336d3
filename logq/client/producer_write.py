"""The Producer's write path: its queues of batches and the writers that drain them.

``send`` adds records to the open batch of their partition (``_open``); a closed batch waits
in its partition's ready queue (``_ready``) until a writer drains the queue. One writer at a
time per partition (``_drain_lock``), so batches of one partition are written strictly in the
order they were closed. A writer takes every batch queued so far and writes them together
(group commit: with fsync="always", one fdatasync after the last covers them all), and no
batch is acknowledged before it is durable. ``_writing`` holds the batches a writer is
writing, so that flush() and a fork child see them.

Every buffer is bounded: at most ``buffer_bytes`` of records wait unwritten
(``_pending_bytes``); past that, ``send`` writes batches itself, and waits at most
``max_block_ms`` for other threads' writes before raising ProducerBufferFullError.

``WritePath`` is a base class of ``Producer``, not an object of its own: ``send`` reads this
state on every record, and another object would cost it an attribute load each time. Its
attributes are set by ``Producer.__init__``; delivery callbacks run once no lock is held
(futures.DeliveryQueue), so a callback may send, even from a writer.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque

from logq.client.futures import TP, Batch, Callback
from logq.client.producer_config import Extras
from logq.client.producer_logs import OpenLogs, append_records
from logq.codec.batch import BATCH_OVERHEAD
from logq.errors import LogqError, ProducerBufferFullError
from logq.storage.log import PartitionLog

__all__ = ["WritePath"]

log = logging.getLogger("logq.producer")


class WritePath:
    """The batch queues of a Producer and the writing of them (see the module docstring)."""

    buffer_bytes: int
    max_block_ms: int
    _x: Extras
    _lock: threading.Lock
    _space: threading.Condition
    _open: dict[TP, Batch]  # the batch each partition's sends add to
    _ready: dict[TP, deque[Batch]]  # closed batches, oldest first, waiting for a writer
    _drain_locks: dict[TP, threading.Lock]  # one writer at a time per partition
    _writing: dict[TP, list[Batch]]  # the batches each partition's writer is writing
    _pending_bytes: int  # bytes of records accepted and not yet written (send()'s accounting)
    _logs: OpenLogs
    _failed: int  # records that could not be written since the last flush()
    _first_error: BaseException | None

    def _close_batch(self, tp: TP, b: Batch) -> None:
        """Under self._lock: queue an open batch for writing."""
        q = self._ready.get(tp)
        if q is None:
            q = self._ready[tp] = deque()
        q.append(b)

    def _new_batch(self, tp: TP, old: Batch | None, tid: str) -> tuple[Batch, bool]:
        """Under self._lock: queue ``old`` (full, or made for another incarnation of the topic)
        and open a new batch for ``tp``; True if a batch was queued (the caller drains)."""
        if old is not None:
            self._close_batch(tp, old)
        b = self._open[tp] = Batch(tp, tid)
        return b, old is not None

    def _close_open(self, tp: TP, b: Batch) -> None:
        """Under self._lock: queue ``tp``'s open batch ``b`` for writing (it is full, or linger_ms=0)."""
        q = self._ready.get(tp)
        if q is None:
            q = self._ready[tp] = deque()
        q.append(b)
        del self._open[tp]

    def _drain_lock(self, tp: TP) -> threading.Lock:
        lk = self._drain_locks.get(tp)
        if lk is None:
            with self._lock:
                lk = self._drain_locks.setdefault(tp, threading.Lock())
        return lk

    def _drain(self, tp: TP, deadline: float | None = None) -> None:
        """Write the ready batches of one partition, oldest first, one writer at a time.

        With a ``deadline`` (monotonic s), give up waiting for another writer of the
        partition then; that writer writes the queued batches itself. Callbacks go to the
        DeliveryQueue once the write lock is released: a callback may send, even here.
        """
        lk = self._drain_lock(tp)
        if not lk.acquire(timeout=-1 if deadline is None else max(0.0, deadline - time.monotonic())):
            return
        ran: list[tuple[Batch, list[Callback]]] = []
        try:
            while True:
                with self._lock:
                    q = self._ready.get(tp)
                    if not q:
                        return
                    group = list(q)  # every batch queued meanwhile: written together (group commit)
                    q.clear()
                    self._writing[tp] = group
                self._write(tp, group, ran)
        finally:
            self._writing.pop(tp, None)
            lk.release()
            if ran or self._x.delivery.busy():
                self._x.delivery.deliver(tp, ran)

    def _write(self, tp: TP, group: list[Batch], ran: list[tuple[Batch, list[Callback]]]) -> None:
        """Write queued batches of one partition in order, then acknowledge them (their
        callbacks go to ``ran``: the caller runs them once it holds no lock).

        With fsync="always" each append defers its fdatasync and one fdatasync after the
        last covers them all (group commit): no batch is acknowledged before it is durable.
        """
        written: list[Batch] = []
        sizes: list[tuple[int, int]] = []  # (stored, uncompressed) bytes of each written batch
        logs: list[PartitionLog] = []
        bug: BaseException | None = None
        try:
            for i, b in enumerate(group):
                recs = b.records
                try:
                    do = functools.partial(append_records, recs, self._x.codec)
                    res, lg, stored, raw = self._logs.append(b.tp, b.tid, len(recs), do)
                except Exception as e:
                    self._failed_batch(b, e)
                    if not isinstance(e, LogqError):  # a logq bug: the writing thread sees it too
                        bug = e
                        with self._lock:  # the rest stay queued, in order, for the next writer
                            self._ready.setdefault(tp, deque()).extendleft(reversed(group[i + 1 :]))
                        group = group[: i + 1]
                        break
                    continue
                b.base_offset = res.base_offset
                written.append(b)
                sizes.append((stored, raw))
                if all(lg is not x for x in logs):
                    logs.append(lg)
            for lg in logs:
                try:
                    lg.sync_deferred()
                except Exception as e:
                    for b in written:
                        if b.error is None:
                            self._failed_batch(b, e)
                    if not isinstance(e, LogqError):
                        bug = bug or e
        finally:
            now = time.monotonic()
            with self._lock:
                self._pending_bytes -= sum(b.bytes for b in group)
                self._space.notify_all()
                for b, (stored, raw) in zip(written, sizes, strict=True):
                    if b.error is None:
                        size = b.bytes + BATCH_OVERHEAD  # send()'s accounting, when uncompressed
                        self._x.metrics.written(len(b.records), stored or size, raw or size, (now - b.created) * 1000)
            for b in group:  # callbacks run once no lock is held, then their futures resolve
                cbs = b.take_callbacks()
                if cbs:
                    b.finish_write()
                    ran.append((b, cbs))
                else:
                    b.finish()
        if bug is not None:
            raise bug

    def _failed_batch(self, b: Batch, e: BaseException) -> None:
        """A batch could not be written (or synced): its futures raise ``e``, and it is counted and logged.

        send() checked every record, so this is the system (no space, too many open files,
        a deleted topic) or a logq bug. Never silent: the next flush() raises
        RecordsFailedError counting it.
        """
        b.error = e
        with self._lock:
            self._failed += len(b.records)
            self._x.metrics.failed(len(b.records))
            if self._first_error is None:
                self._first_error = e
        log.error("%d record(s) for %s-%d could not be written: %s", len(b.records), b.tp[0], b.tp[1], e)

    def _make_room(self, size: int) -> None:
        """Under self._lock: the buffer is full; write batches, then wait for others'."""
        for tp, b in list(self._open.items()):
            self._close_batch(tp, b)
        self._open.clear()
        deadline = time.monotonic() + self.max_block_ms / 1000
        self._lock.release()
        try:
            for tp in list(self._ready):
                self._drain(tp, deadline)
        finally:
            self._lock.acquire()
        while self._pending_bytes + size > self.buffer_bytes and self._pending_bytes > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProducerBufferFullError(self.buffer_bytes, self.max_block_ms)
            self._space.wait(left)

    def _flush_tp(self, tp: TP) -> None:
        with self._lock:
            b = self._open.pop(tp, None)
            if b is not None:
                self._close_batch(tp, b)
        self._drain(tp)

    def _linger_tick(self, period: float) -> None:
        now = time.monotonic()
        with self._lock:
            due = [tp for tp, b in self._open.items() if now - b.created >= period]
            for tp in due:
                self._close_batch(tp, self._open.pop(tp))
        for tp in due:
            try:
                self._drain(tp)
            except Exception:  # the futures carry the error and _write logged it; the thread must not die
                pass
