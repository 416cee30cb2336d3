"""What a ``send`` returns: a batch under construction, and the futures that point into it.

A record waits in a ``Batch`` (one per partition at a time) until the producer writes the
batch; ``send`` hands back a ``RecordFuture``, a (batch, index) tuple built in C, and the
writer ``finish``es the batch once it is in the log (or failed), which wakes every
waiter. The completion Event is created lazily by the first waiter, so a batch nobody
waits on never allocates one. ``RecordMetadata`` and ``BatchMetadata`` are where records
landed: one record of ``send``, one batch of ``send_batch``.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

from logq.errors import LogqTimeoutError

__all__ = ["TP", "Batch", "BatchMetadata", "RecordFuture", "RecordMetadata", "new_future"]

TP = tuple[str, int]
_EVENT_LOCK = threading.Lock()  # creates a batch's completion Event on its first waiter
new_future = tuple.__new__  # RecordFuture without the Python-level __new__: send's hot path


class RecordMetadata(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int


class BatchMetadata(NamedTuple):
    """Where one batch of a ``send_batch`` call landed: offsets base .. base + count - 1."""

    topic: str
    partition: int
    base_offset: int
    count: int  # type: ignore[assignment]  # the public field name shadows tuple.count, as in 0.1
    timestamp: int


class Batch:
    __slots__ = ("tp", "tid", "records", "bytes", "created", "base_offset", "error", "_event", "done")

    def __init__(self, tp: TP, tid: str = "") -> None:
        self.tp = tp
        self.tid = tid  # the topic incarnation it was partitioned for
        self.records: list[tuple] = []
        self.bytes = 0
        self.created = time.monotonic()
        self.base_offset = -1
        self.error: BaseException | None = None
        self._event: threading.Event | None = None
        self.done = False

    def finish(self) -> None:
        self.done = True
        ev = self._event
        if ev is not None:
            ev.set()

    def abandon(self, error: BaseException) -> None:
        """In a fork child: fail the batch without touching the parent's Event (and its lock)."""
        self.error = error
        self._event = None
        self.done = True

    def wait(self, timeout: float | None) -> bool:
        if self.done:
            return True
        with _EVENT_LOCK:  # one Event per batch, even with several waiting threads
            ev = self._event
            if ev is None:
                ev = self._event = threading.Event()
        if self.done:  # races with finish() are closed by re-checking done
            return True
        return ev.wait(timeout)


class RecordFuture(tuple):
    """The eventual RecordMetadata of one ``send``.

    A (batch, index) tuple: ``send`` builds one per record, and a tuple is built in C.
    """

    __slots__ = ()

    def __new__(cls, batch: Batch, index: int) -> RecordFuture:
        return tuple.__new__(cls, (batch, index))

    def done(self) -> bool:
        return self[0].done

    def result(self, timeout: float | None = None) -> RecordMetadata:
        b, i = self
        if not b.wait(timeout):
            raise LogqTimeoutError("record write", timeout, hint="call flush() to force it")
        if b.error is not None:
            raise b.error
        return RecordMetadata(b.tp[0], b.tp[1], b.base_offset + i, b.records[i][3])

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self[0].wait(timeout)
        return self[0].error

    def __repr__(self) -> str:
        b, i = self
        state = "error" if b.error is not None else ("done" if b.done else "pending")
        return f"RecordFuture({b.tp[0]}-{b.tp[1]}#{i}, {state})"
