"""What a ``send`` returns: a batch under construction, and the futures that point into it.

A record waits in a ``Batch`` (one per partition at a time) until the producer writes the
batch; ``send`` hands back a ``RecordFuture``, a (batch, index) tuple built in C. A batch
has two steps: ``written`` (in the log, or failed: its outcome is readable, ``flush`` may
go on) and ``done`` (its delivery callbacks ran too). ``result``/``get``/``exception``
return once the batch is ``done``, so a record's callbacks run before a thread waiting on
its future wakes, as in Java's and kafka-python's producers; called from inside a delivery
callback they wait for ``written`` only (waiting for callbacks queued behind the running
one would never end). A batch without callbacks is written and done at once. The Events
are created lazily by the first waiter, so a batch nobody waits on never allocates one. ``RecordMetadata`` and ``BatchMetadata`` are where records
landed: one record of ``send``, one batch of ``send_batch``.

Delivery callbacks (``send(on_delivery=...)``, ``add_callback``, ``add_errback``,
``add_both``) are kept on the batch as (index, function, kind) entries. The writer takes
them (``take_callbacks``, under one lock with ``add_*``) and then marks the batch written, so
each callback runs exactly once: by the writer after the write (``DeliveryQueue``, outside
every producer lock), or at once by an ``add_*`` that comes after the take. A callback that
raises is logged and ignored.
``DeliveryQueue`` keeps Kafka's promise that the callbacks of one partition run in the
order its records were sent, whichever threads wrote the batches.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from logq.errors import ConfigError, LogqTimeoutError

__all__ = [
    "TP",
    "Batch",
    "BatchMetadata",
    "RecordFuture",
    "RecordMetadata",
    "Callback",
    "DeliveryQueue",
    "ON_DELIVERY",
    "new_future",
    "run_callbacks",
]

log = logging.getLogger("logq.producer")

TP = tuple[str, int]
_EVENT_LOCK = threading.Lock()  # creates a batch's completion Event on its first waiter
_CALLBACK_LOCK = threading.Lock()  # orders add_* against finish: each callback runs once
_IN_CALLBACK = threading.local()  # depth: this thread runs delivery callbacks (run_callbacks)


def _new_locks_in_fork_child() -> None:
    """A thread of the parent may have held either lock at the fork; the child starts afresh."""
    global _EVENT_LOCK, _CALLBACK_LOCK
    _EVENT_LOCK = threading.Lock()
    _CALLBACK_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_locks_in_fork_child)

ON_DELIVERY, ON_SUCCESS, ON_ERROR, ON_BOTH = 0, 1, 2, 3
Callback = tuple[int, Callable[..., Any], int]  # (record index, function, kind)
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
    __slots__ = (
        "tp",
        "tid",
        "records",
        "bytes",
        "created",
        "base_offset",
        "error",
        "_event",
        "_wevent",
        "written",
        "done",
        "callbacks",
        "taken",
    )

    def __init__(self, tp: TP, tid: str = "") -> None:
        self.tp = tp
        self.tid = tid  # the topic incarnation it was partitioned for
        self.records: list[tuple] = []
        self.bytes = 0
        self.created = time.monotonic()
        self.base_offset = -1
        self.error: BaseException | None = None
        self._event: threading.Event | None = None  # set when done
        self._wevent: threading.Event | None = None  # set when written
        self.written = False  # in the log or failed: base_offset / error are final
        self.done = False  # written, and its delivery callbacks ran
        self.callbacks: list[Callback] | None = None
        self.taken = False  # its callbacks were handed over to run (later ones run at once)

    def take_callbacks(self) -> list[Callback] | None:
        """The written (or failed) batch's callbacks to run; None if none. Callbacks added
        from now on run at once, in the thread that adds them."""
        with _CALLBACK_LOCK:
            self.taken = True
            cbs, self.callbacks = self.callbacks, None
        return cbs

    def finish_write(self) -> None:
        """Mark the batch written (or failed): its outcome is final; wake ``flush``'s waits
        (after take_callbacks; ``finish`` follows once its callbacks ran)."""
        self.written = True
        ev = self._wevent
        if ev is not None:
            ev.set()

    def finish(self) -> None:
        """Mark the batch done (written, callbacks run) and wake every waiter."""
        if not self.written:
            self.finish_write()
        self.done = True
        ev = self._event
        if ev is not None:
            ev.set()

    def abandon(self, error: BaseException) -> None:
        """In a fork child: fail the batch without touching the parent's Events (and their
        locks); a batch already written keeps its outcome.

        Its callbacks are dropped: the parent runs them when it writes the batch.
        """
        if not self.written:
            self.error = error
        self._event = self._wevent = None
        self.callbacks = None
        self.taken = True
        self.written = self.done = True

    def wait(self, timeout: float | None) -> bool:
        """Wait until done (written and its callbacks ran); False at ``timeout``."""
        if self.done:
            return True
        with _EVENT_LOCK:  # one Event per batch, even with several waiting threads
            ev = self._event
            if ev is None:
                ev = self._event = threading.Event()
        if self.done:  # races with finish() are closed by re-checking done
            return True
        return ev.wait(timeout)

    def wait_written(self, timeout: float | None) -> bool:
        """Wait until written (the outcome is final, callbacks may still run); False at ``timeout``."""
        if self.written:
            return True
        with _EVENT_LOCK:
            ev = self._wevent
            if ev is None:
                ev = self._wevent = threading.Event()
        if self.written:
            return True
        return ev.wait(timeout)

    def wait_for_waiter(self, timeout: float | None) -> bool:
        """``wait``, but only ``wait_written`` in a thread running delivery callbacks (which
        would otherwise wait for callbacks queued behind its own)."""
        if self.done:
            return True
        if getattr(_IN_CALLBACK, "depth", 0):
            return self.wait_written(timeout)
        return self.wait(timeout)


class RecordFuture(tuple):
    """The eventual RecordMetadata of one ``send``.

    A (batch, index) tuple: ``send`` builds one per record, and a tuple is built in C.
    """

    __slots__ = ()

    def __new__(cls, batch: Batch, index: int) -> RecordFuture:
        return tuple.__new__(cls, (batch, index))

    def done(self) -> bool:
        return self[0].done

    def succeeded(self) -> bool:
        """Done and written (kafka-python's name)."""
        return self[0].done and self[0].error is None

    def failed(self) -> bool:
        """Done and not written (kafka-python's name)."""
        return self[0].done and self[0].error is not None

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """Where the record landed, once its delivery callbacks ran (see the module docstring);
        waits at most ``timeout`` seconds (LogqTimeoutError), raises the batch's error if it
        could not be written."""
        b, i = self
        if not b.done and not b.wait_for_waiter(timeout):
            raise LogqTimeoutError("record write", timeout, hint="call flush() to force it")
        if b.error is not None:
            raise b.error
        return RecordMetadata(b.tp[0], b.tp[1], b.base_offset + i, b.records[i][3])

    def get(self, timeout: float | None = None) -> RecordMetadata:
        """``result(timeout)`` under kafka-python's name (``timeout`` in seconds)."""
        return self.result(timeout)

    def written(self) -> bool:
        """In the log or failed; its callbacks may still be running (``done`` waits for them)."""
        return self[0].written

    def outcome(self) -> RecordMetadata | BaseException:
        """Without waiting, for a ``written`` future: its metadata, or the error it failed with."""
        b, i = self
        if not b.written:
            raise LogqTimeoutError("record write", 0, hint="read outcome() once written() is True")
        if b.error is not None:
            return b.error
        return RecordMetadata(b.tp[0], b.tp[1], b.base_offset + i, b.records[i][3])

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The error the record failed with, None if it was written; LogqTimeoutError if it is
        not done within ``timeout`` seconds."""
        if not self[0].wait_for_waiter(timeout):
            raise LogqTimeoutError("record write", timeout, hint="call flush() to force it")
        return self[0].error

    def add_callback(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> RecordFuture:
        """Call ``fn(*args, metadata, **kwargs)`` once the record is written (not if it fails).

        On a future already done it runs at once, in this thread. Returns the future.
        """
        return self._add(ON_SUCCESS, fn, args, kwargs)

    def add_errback(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> RecordFuture:
        """Call ``fn(*args, error, **kwargs)`` if the record could not be written."""
        return self._add(ON_ERROR, fn, args, kwargs)

    def add_both(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> RecordFuture:
        """``fn`` as both callback (with the metadata) and errback (with the error)."""
        return self._add(ON_BOTH, fn, args, kwargs)

    def add_delivery_callback(self, fn: Callable[[BaseException | None, RecordMetadata | None], Any]) -> RecordFuture:
        """Call ``fn(error, metadata)`` once (confluent-kafka's ``on_delivery`` order): error None
        when the record was written, metadata None when it failed."""
        return self._add(ON_DELIVERY, fn, (), {})

    def _add(self, kind: int, fn: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> RecordFuture:
        if not callable(fn):
            raise ConfigError(f"a delivery callback must be callable, got {fn!r}")
        if args or kwargs:
            fn = functools.partial(fn, *args, **kwargs)
        b, i = self
        with _CALLBACK_LOCK:
            if not b.taken:
                if b.callbacks is None:
                    b.callbacks = []
                b.callbacks.append((i, fn, kind))
                return self
        run_callbacks(b, [(i, fn, kind)])
        return self

    def __repr__(self) -> str:
        b, i = self
        state = "error" if b.error is not None else ("done" if b.done else "pending")
        return f"RecordFuture({b.tp[0]}-{b.tp[1]}#{i}, {state})"


def run_callbacks(b: Batch, callbacks: Sequence[Callback]) -> None:
    """Run the callbacks a finished batch returned, in the order they were added.

    ``ON_DELIVERY`` is confluent-kafka's ``on_delivery(error, metadata)``: one of the two is
    None. A callback that raises is logged (with its traceback) and the others still run.
    """
    _IN_CALLBACK.depth = getattr(_IN_CALLBACK, "depth", 0) + 1
    try:
        _run(b, callbacks)
    finally:
        _IN_CALLBACK.depth -= 1


def _run(b: Batch, callbacks: Sequence[Callback]) -> None:
    for i, fn, kind in callbacks:
        err = b.error
        try:
            if err is None:
                md = RecordMetadata(b.tp[0], b.tp[1], b.base_offset + i, b.records[i][3])
                if kind == ON_DELIVERY:
                    fn(None, md)
                elif kind != ON_ERROR:
                    fn(md)
            elif kind == ON_DELIVERY:
                fn(err, None)
            elif kind != ON_SUCCESS:
                fn(err)
        except Exception:
            log.exception("a delivery callback for %s-%d raised; ignored", b.tp[0], b.tp[1])


class DeliveryQueue:
    """Runs written batches' callbacks in order per partition, one thread at a time per partition.

    A writer marks its batches written (one without callbacks is done at once), then hands
    those with callbacks (in write order) to ``deliver`` once it holds no producer lock; each
    is done, and its futures' waiters wake, once its callbacks ran. If no
    thread is running callbacks of that partition, the writer does, until the partition's
    queue is empty; otherwise it queues them and returns, and the thread already running
    callbacks runs them next. So callbacks of one partition run in send order, a callback may
    itself send (even with ``linger_ms=0``: its batch's callbacks are queued behind, not run
    recursively), and no writer waits for another's callbacks. A batch stays queued until its
    callbacks ran; ``wait_for`` lets ``flush`` return only once they did.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ran = threading.Condition(self._lock)
        self._queues: dict[TP, deque[tuple[Batch, list[Callback]]]] = {}  # to run, running first
        self._running: dict[TP, int] = {}  # partition -> the thread running its callbacks

    def deliver(self, tp: TP, finished: Sequence[tuple[Batch, list[Callback]]]) -> None:
        with self._lock:
            q = self._queues.get(tp)
            if q is None:
                if not finished:
                    return
                q = self._queues[tp] = deque()
            q.extend(finished)
            if tp in self._running:  # another thread (or this one, further up) runs them
                return
            self._running[tp] = threading.get_ident()
        try:
            while True:
                with self._lock:
                    if not q:
                        del self._queues[tp]
                        return
                    b, cbs = q[0]
                try:
                    run_callbacks(b, cbs)
                finally:  # even on KeyboardInterrupt: those callbacks had their turn
                    b.finish()  # now its futures' waiters wake: callbacks first
                    with self._lock:
                        q.popleft()
                        self._ran.notify_all()
        finally:
            with self._lock:
                self._running.pop(tp, None)

    def busy(self) -> bool:
        """Whether callbacks wait or run (read without the lock: a hint, for the fast path)."""
        return bool(self._queues)

    def delivering(self) -> bool:
        """Whether this thread is running callbacks (a flush from a callback must not wait)."""
        me = threading.get_ident()
        with self._lock:
            return me in self._running.values()

    def pending(self) -> list[Batch]:
        """The batches whose callbacks have not all run yet, every partition."""
        with self._lock:
            return [b for q in self._queues.values() for b, _ in q]

    def wait_for(self, batches: Sequence[Batch], deadline: float | None) -> int:
        """Wait until the callbacks of ``batches`` ran; how many had not at ``deadline``."""
        ids = {id(b) for b in batches}
        with self._lock:
            while True:
                left = sum(id(b) in ids for q in self._queues.values() for b, _ in q)
                wait = None if deadline is None else deadline - time.monotonic()
                if not left or (wait is not None and wait <= 0):
                    return left
                self._ran.wait(wait)

    def forget_in_fork_child(self) -> list[Batch]:
        """In a fork child, without the lock (a parent thread may have held it): the batches
        whose callbacks had not finished, for the child to fail; the queue starts afresh."""
        batches = [b for q in list(self._queues.values()) for b, _ in list(q)]
        self._lock = threading.Lock()
        self._queues, self._running = {}, {}
        return batches
