"""The producer: batches records per partition and appends them to the partition logs.

Modelled on Kafka's producer. ``send`` adds a record to its partition's open batch and
returns a future; a batch is written when it reaches ``batch_size`` bytes, when it is
``linger_ms`` old (a background thread), on ``flush()`` and on ``close()``. Batches of one
partition are written strictly in the order they were closed (one writer at a time per
partition), so records from one producer keep their order per partition.

Partitioning is Kafka's: keyed records go to ``murmur2(key) & 0x7fffffff % partitions``,
records without a key stick to one partition per ``batch_size`` bytes (KIP-794).

Every buffer is bounded: at most ``buffer_bytes`` of records wait unwritten; past that,
``send`` writes batches itself, and waits at most ``max_block_ms`` for other threads'
writes before raising ProducerBufferFullError.

Partition logs stay open between writes, at most ``max_open_partitions`` at once (the
least recently used is closed, under its partition's write lock, and reopened on its next
write: nothing queued is lost or reordered). Each write checks that the topic is still the
incarnation its batch was made for (logq/client/handles.py): a batch for a topic deleted
meanwhile fails with TopicDeletedError, never an offset in unlinked files; a topic deleted
and created again with the same partition count receives the batch, one with another
count fails it (its partitioning no longer holds) and later sends use the new topic.
"""

from __future__ import annotations

import atexit
import bisect
import functools
import itertools
import logging
import operator
import os
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from logq.client.handles import DEFAULT_MAX_OPEN_PARTITIONS, Incarnation, check_max_open_partitions
from logq.client.partitioner import StickyPartitioner, partition_for_key
from logq.client.serde import get_serializer
from logq.client.timestamps import to_millis
from logq.codec.batch import BATCH_OVERHEAD
from logq.config import FSYNC_MODES, LogConfig
from logq.errors import (
    ClientClosedError,
    ConfigError,
    ForkedClientError,
    LogqError,
    LogqTimeoutError,
    ProducerBufferFullError,
    RecordsFailedError,
    RecordTooLargeError,
    SerializationError,
    TopicDeletedError,
    UnknownTopicError,
)
from logq.storage.log import PartitionLog
from logq.storage.topics import TopicRegistry, partition_path, validate_partition, validate_topic

__all__ = ["Producer", "RecordMetadata", "BatchMetadata", "RecordFuture"]

TP = tuple[str, int]
_RECORD_OVERHEAD_BYTES = 24  # varints, attributes and header count of one record, at most
_BULK_BATCH_BYTES = 512 * 1024  # send_batch target batch size (below max_batch_bytes)
_EVENT_LOCK = threading.Lock()  # creates a batch's completion Event on its first waiter
_KEY_CACHE_ENTRIES = 65536  # memoised key -> partition placements
_new_future = tuple.__new__
_EXIT_FLUSH_S = 30.0  # how long interpreter exit or garbage collection waits to write what is queued

log = logging.getLogger("logq.producer")

# Every open Producer, so that interpreter exit writes what they accepted and a fork child
# poisons its copies. Weak: a Producer dropped by its owner is flushed by __del__ instead.
_LIVE: weakref.WeakSet[Producer] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    for p in list(_LIVE):
        p._close_unattended("interpreter exit")


def _poison_all_after_fork() -> None:
    for p in list(_LIVE):
        p._poison_after_fork()


atexit.register(_close_all_at_exit)
os.register_at_fork(after_in_child=_poison_all_after_fork)


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


class _Batch:
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

    def __new__(cls, batch: _Batch, index: int) -> RecordFuture:
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


class _Handle(NamedTuple):
    log: PartitionLog
    inc: Incarnation


class Producer:
    def __init__(
        self,
        data_dir: str,
        *,
        linger_ms: int = 5,
        batch_size: int = 16384,
        buffer_bytes: int = 32 << 20,
        max_block_ms: int = 60_000,
        key_serializer: Any = None,
        value_serializer: Any = None,
        fsync: str | None = None,
        max_open_partitions: int = DEFAULT_MAX_OPEN_PARTITIONS,
    ) -> None:
        self._closed = True  # until built: __del__ of a half-built Producer does nothing
        if not isinstance(data_dir, (str, os.PathLike)):
            raise ConfigError(f"data_dir={data_dir!r} is invalid: must be a path (str or os.PathLike)")
        if fsync is not None and fsync not in FSYNC_MODES:
            raise ConfigError(
                f"fsync={fsync!r} is invalid: None (the topic's setting) or one of {', '.join(FSYNC_MODES)}"
            )
        for name, v, lo in (
            ("linger_ms", linger_ms, 0),
            ("batch_size", batch_size, 1),
            ("buffer_bytes", buffer_bytes, 1),
            ("max_block_ms", max_block_ms, 0),
        ):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"{name}={v!r} is invalid: must be an int >= {lo}")
        check_max_open_partitions(max_open_partitions)
        self.registry = TopicRegistry(data_dir)
        self.root = self.registry.root
        self.max_open_partitions = max_open_partitions
        self.linger_ms = linger_ms
        self.batch_size = batch_size
        self.buffer_bytes = buffer_bytes
        self.max_block_ms = max_block_ms
        self.fsync = fsync
        self._key_ser: Callable | None = None if key_serializer is None else get_serializer(key_serializer)
        self._value_ser: Callable | None = None if value_serializer is None else get_serializer(value_serializer)
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._open: dict[TP, _Batch] = {}
        self._ready: dict[TP, deque[_Batch]] = {}
        self._drain_locks: dict[TP, threading.Lock] = {}
        self._pending_bytes = 0
        self._logs: OrderedDict[TP, _Handle] = OrderedDict()  # open partition logs, least recently used first
        self._logs_lock = threading.Lock()
        self._tid_partitions: dict[str, int] = {}  # topic id -> its partition count
        self._sticky: dict[str, StickyPartitioner] = {}
        self._topics: dict[str, list] = {}
        self._key_cache: dict[tuple[bytes, int], int] = {}
        self._writing: dict[TP, list[_Batch]] = {}  # the batches each partition's writer is writing
        self._failed = 0  # records that could not be written since the last flush()
        self._first_error: BaseException | None = None
        self._pid = os.getpid()
        self._forked_from: int | None = None
        self._closed = False
        self._linger_stop = threading.Event()
        self._linger: threading.Thread | None = None
        if linger_ms > 0:
            # the thread holds the Producer weakly, so a Producer nobody holds is collected (and flushed)
            self._linger = threading.Thread(
                target=_linger_main,
                args=(weakref.ref(self), self._linger_stop, linger_ms / 1000),
                name="logq-linger",
                daemon=True,
            )
            self._linger.start()
        _LIVE.add(self)

    # ------------------------------------------------------------------ sending
    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> RecordFuture:
        if self._closed:
            self._raise_closed()
        try:  # a user serializer's failure is the caller's, wrapped; ours pass as they are
            k = key if self._key_ser is None else self._key_ser(key)
            v = value if self._value_ser is None else self._value_ser(value)
        except LogqError:
            raise
        except Exception as e:
            raise SerializationError(f"the serializer failed on {topic!r}: {e!r}") from e
        if (k is not None and type(k) is not bytes) or (v is not None and type(v) is not bytes):
            k, v = _as_bytes(k, "key"), _as_bytes(v, "value")
        try:
            info = self._topics[topic]
        except (KeyError, TypeError):  # first send to it, or not a topic name at all
            info = self._topic_info(topic)
        size = _RECORD_OVERHEAD_BYTES + (len(k) if k else 0) + (len(v) if v else 0)
        if headers:
            headers, hsize = _headers(headers)
            size += hsize
        elif headers is not None and not isinstance(headers, (dict, list, tuple)):
            raise SerializationError(f"headers must be a dict or a list of (str, bytes) pairs, got {headers!r}")
        if size > info[1]:
            raise self._too_large(topic, size)
        ts = int(time.time() * 1000) if timestamp_ms is None else to_millis(timestamp_ms, "timestamp_ms")
        drain = False
        with self._lock:
            tp = (topic, self._choose_partition(topic, info, partition, k, size))
            if self._pending_bytes + size > self.buffer_bytes:
                self._make_room(size)
            b = self._open.get(tp)
            cap = info[4]  # batch_size, capped so a batch also fits the topic's max_batch_bytes
            if b is None or (b.bytes + size > cap and b.records) or b.tid != info[5]:
                if b is not None:
                    self._close_batch(tp, b)
                    drain = True
                b = self._open[tp] = _Batch(tp, info[5])
            recs = b.records
            recs.append((k, v, headers, ts))
            b.bytes += size
            self._pending_bytes += size
            fut = _new_future(RecordFuture, (b, len(recs) - 1))
            if b.bytes >= cap or not self.linger_ms:  # linger_ms=0: no waiting, as in Kafka
                self._close_batch(tp, b)
                del self._open[tp]
                drain = True
        if drain:
            self._drain(tp)
        return fut

    def _topic_info(self, topic: str) -> list:
        """[partitions, largest record bytes, sticky partition, bytes sent to it, batch cap, topic id]."""
        meta = self.registry.get(validate_topic(topic), fresh=True)
        sticky = self._sticky_for(topic).partition(None, meta.partitions, self.batch_size)
        limit = meta.config.max_batch_bytes - BATCH_OVERHEAD
        if limit + _RECORD_OVERHEAD_BYTES > self.buffer_bytes:
            limit = self.buffer_bytes - _RECORD_OVERHEAD_BYTES  # a record must fit the buffer too
        info = [meta.partitions, limit, sticky, 0, min(self.batch_size, limit), meta.topic_id]
        self._tid_partitions[meta.topic_id] = meta.partitions
        self._topics[topic] = info
        return info

    def _too_large(self, topic: str, size: int) -> RecordTooLargeError:
        """A record of ``size`` bytes (as send() counts them) that cannot be sent: quote the
        configured limit it broke, the topic's max_batch_bytes or this producer's buffer_bytes."""
        max_batch = self.registry.get(topic).config.max_batch_bytes
        if size + BATCH_OVERHEAD > max_batch:
            return RecordTooLargeError(
                size + BATCH_OVERHEAD,
                max_batch,
                "record (in a batch of its own)",
                where=f" of topic {topic!r}",
                hint=f"send smaller records, or raise the topic's max_batch_bytes "
                f"(`logq topics alter {topic} --config max_batch_bytes=...`)",
            )
        return RecordTooLargeError(
            size,
            self.buffer_bytes,
            "record",
            setting="buffer_bytes",
            where=" of this Producer",
            hint="raise the Producer's buffer_bytes above the largest record, or send smaller records",
        )

    def _choose_partition(self, topic: str, info: list, partition: object, key: bytes | None, size: int) -> int:
        """Under self._lock: the one partition rule of ``send`` and ``send_batch``.

        An explicit partition is checked; a key goes to its murmur2 partition; records
        without a key stick to ``info[2]`` until ``batch_size`` bytes went to it (KIP-794).
        """
        if partition is not None:
            return validate_partition(topic, partition, info[0])
        if key is not None:
            return self._key_partition(key, info[0])
        if info[3] >= self.batch_size:
            info[2] = self._sticky_for(topic).partition(None, info[0], self.batch_size)
            info[3] = 0
        info[3] += size
        return info[2]

    def _key_partition(self, key: bytes, n: int) -> int:
        """murmur2 placement, memoised: hashing in Python costs microseconds per key."""
        ck = (key, n)
        p = self._key_cache.get(ck)
        if p is None:
            if len(self._key_cache) >= _KEY_CACHE_ENTRIES:
                self._key_cache.clear()
            p = self._key_cache[ck] = partition_for_key(key, n)
        return p

    def send_batch(
        self,
        topic: str,
        values: Sequence[Any],
        *,
        key: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> list[BatchMetadata]:
        """Bulk path: many values, one key (or none) and one timestamp, no headers.

        Written synchronously in batches of about 512 KiB; returns where each batch landed.
        Records already waiting from ``send`` for the same partition are written first.
        """
        if self._closed:
            self._raise_closed()
        if isinstance(values, (str, bytes, bytearray, memoryview, dict)) or not hasattr(values, "__iter__"):
            raise SerializationError(
                f"values must be a list (or any iterable) of values, got {type(values).__name__}",
                hint="wrap a single value in a list, or use send()",
            )
        values = list(values)  # a generator is read once, here
        try:
            if self._value_ser is not None:
                values = [self._value_ser(v) for v in values]
            k = key if self._key_ser is None else self._key_ser(key)
        except LogqError:
            raise
        except Exception as e:
            raise SerializationError(f"the serializer failed on {topic!r}: {e!r}") from e
        if k is not None:
            k = _as_bytes(k, "key")
        values = _bulk_values(values)
        try:
            info = self._topics[topic]
        except (KeyError, TypeError):
            info = self._topic_info(topic)
        record_limit = info[1]
        ts = int(time.time() * 1000) if timestamp_ms is None else to_millis(timestamp_ms, "timestamp_ms")
        limit = min(_BULK_BATCH_BYTES, record_limit + BATCH_OVERHEAD - 1024)
        extra = _RECORD_OVERHEAD_BYTES + (len(k) if k else 0)
        ends = list(itertools.accumulate(map(operator.add, map(len, values), itertools.repeat(extra, len(values)))))
        out: list[BatchMetadata] = []
        logs: list[PartitionLog] = []  # written with the fdatasync deferred (fsync="always"): synced once below
        start, used = 0, 0
        while start < len(values):
            stop = max(start + 1, bisect.bisect_right(ends, used + limit))
            if stop - start == 1 and ends[start] - used > record_limit:
                raise self._too_large(topic, ends[start] - used)
            with self._lock:
                tp = (topic, self._choose_partition(topic, info, partition, k, ends[stop - 1] - used))
            p = tp[1]
            self._flush_tp(tp)
            chunk = values[start:stop]
            with self._drain_lock(tp):
                res, lg = self._append(tp, info[5], stop - start, functools.partial(_append_values, chunk, ts, k))
            if all(lg is not x for x in logs):
                logs.append(lg)
            out.append(BatchMetadata(topic, p, res.base_offset, stop - start, ts))
            used = ends[stop - 1]
            start = stop
        for lg in logs:  # group commit: one fdatasync per partition, before any batch is acknowledged
            lg.sync_deferred()
        return out

    def _sticky_for(self, topic: str) -> StickyPartitioner:
        s = self._sticky.get(topic)
        if s is None:
            s = self._sticky[topic] = StickyPartitioner(self.batch_size)
        return s

    # ------------------------------------------------------------------ batches
    def _close_batch(self, tp: TP, b: _Batch) -> None:
        """Under self._lock: queue an open batch for writing."""
        q = self._ready.get(tp)
        if q is None:
            q = self._ready[tp] = deque()
        q.append(b)

    def _drain_lock(self, tp: TP) -> threading.Lock:
        lk = self._drain_locks.get(tp)
        if lk is None:
            with self._lock:
                lk = self._drain_locks.setdefault(tp, threading.Lock())
        return lk

    def _drain(self, tp: TP, deadline: float | None = None) -> None:
        """Write the ready batches of one partition, oldest first, one writer at a time.

        With a ``deadline`` (monotonic s), give up waiting for another writer of the
        partition then; that writer writes the queued batches itself.
        """
        lk = self._drain_lock(tp)
        if not lk.acquire(timeout=-1 if deadline is None else max(0.0, deadline - time.monotonic())):
            return
        try:
            while True:
                with self._lock:
                    q = self._ready.get(tp)
                    if not q:
                        return
                    group = list(q)  # every batch queued meanwhile: written together (group commit)
                    q.clear()
                    self._writing[tp] = group
                self._write(tp, group)
        finally:
            self._writing.pop(tp, None)
            lk.release()

    def _write(self, tp: TP, group: list[_Batch]) -> None:
        """Write queued batches of one partition in order, then acknowledge them.

        With fsync="always" each append defers its fdatasync and one fdatasync after the
        last covers them all (group commit): no batch is acknowledged before it is durable.
        """
        written: list[_Batch] = []
        logs: list[PartitionLog] = []
        bug: BaseException | None = None
        try:
            for i, b in enumerate(group):
                recs = b.records
                try:
                    res, lg = self._append(b.tp, b.tid, len(recs), functools.partial(_append_records, recs))
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
            with self._lock:
                self._pending_bytes -= sum(b.bytes for b in group)
                self._space.notify_all()
            for b in group:
                b.finish()
        if bug is not None:
            raise bug

    def _failed_batch(self, b: _Batch, e: BaseException) -> None:
        """A batch could not be written (or synced): its futures raise ``e``, and it is counted and logged.

        send() checked every record, so this is the system (no space, too many open files,
        a deleted topic) or a logq bug. Never silent: the next flush() raises
        RecordsFailedError counting it.
        """
        b.error = e
        with self._lock:
            self._failed += len(b.records)
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

    def flush(self, timeout: float | None = None) -> None:
        """Write every waiting record; return when all are in the log.

        Raise RecordsFailedError if records could not be written since the last flush
        (each failed future says why). With ``timeout`` (seconds), raise LogqTimeoutError
        (a TimeoutError) if another thread's write of one of these partitions still holds
        it then; the records stay queued and are written.
        """
        if self._forked_from is not None:
            self._raise_closed()
        timeout = _timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            for tp, b in list(self._open.items()):
                self._close_batch(tp, b)
            self._open.clear()
            tps = list(self._ready)
        for tp in tps:
            self._drain(tp, deadline)
        with self._lock:
            left = sum(len(self._ready.get(tp, ())) for tp in tps)
            failed, first = self._failed, self._first_error
            self._failed, self._first_error = 0, None
        if failed:
            raise RecordsFailedError(failed, first) from first
        if left:
            raise LogqTimeoutError(
                "flush",
                timeout,
                f"{left} batch(es) wait behind another thread's write",
                hint="they stay queued and are written; call flush() again to wait for them",
            )

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

    # ------------------------------------------------------------------ logs
    def _append(self, tp: TP, tid: str, count: int, do: Callable[[PartitionLog], Any]) -> Any:
        """Under the partition's write lock: ``do(log)`` on the partition's log of incarnation
        ``tid``, checked before and after (see the module docstring): an append that a
        delete overtook is reported as failed, never acknowledged."""
        h = self._handle(tp, tid, count)
        if not h.inc.holds():
            raise self._gone(tp, h, count)
        try:
            res = do(h.log)
        except (LogqError, OSError) as e:
            if not h.inc.holds():  # the files went away under the append
                raise self._gone(tp, h, count) from e
            raise
        if not h.inc.holds():
            raise self._gone(tp, h, count)
        return res

    def _handle(self, tp: TP, tid: str, count: int) -> _Handle:
        """The open log of ``tp`` for incarnation ``tid``, opening it (and closing the least
        recently used one past ``max_open_partitions``). A topic created again with the same
        partition count takes the batch; otherwise TopicDeletedError."""
        with self._logs_lock:
            h = self._logs.get(tp)
            if h is not None:
                self._logs.move_to_end(tp)
        if h is not None:
            if h.inc.topic_id == tid or self._same_partitioning(tid, h.inc.topic_id):
                return h
            self._drop(tp, h)
        topic = tp[0]
        try:
            meta = self.registry.get(topic, fresh=True)
        except UnknownTopicError:
            raise self._gone_error(tp, tid, None, count) from None
        if meta.topic_id != tid:
            self._tid_partitions[meta.topic_id] = meta.partitions
            if not self._same_partitioning(tid, meta.topic_id):
                raise self._gone_error(tp, tid, meta.topic_id, count)
            with self._lock:  # created again alike: this batch goes to it, later sends too
                info = self._topics.get(topic)
                if info is not None and info[5] == tid:
                    del self._topics[topic]
        inc = Incarnation(self.root, topic, meta.topic_id)
        cfg: LogConfig = meta.config
        if self.fsync is not None:
            cfg = cfg.with_(fsync=self.fsync)
        try:
            lg = PartitionLog(partition_path(self.root, topic, tp[1]), cfg, create=False)
            lg.defer_sync = True  # fsync="always": _write and send_batch sync before they acknowledge
        except (LogqError, OSError):
            if not inc.holds():  # deleted while opening
                raise self._gone_error(tp, tid, inc.current_id(), count) from None
            raise
        h = _Handle(lg, inc)
        with self._logs_lock:
            self._logs[tp] = h
        self._evict(tp)
        return h

    def _same_partitioning(self, tid: str, new_tid: str) -> bool:
        """Whether records partitioned for incarnation ``tid`` may go to ``new_tid`` (same count)."""
        n = self._tid_partitions.get(tid)
        return n is not None and n == self._tid_partitions.get(new_tid)

    def _evict(self, keep: TP) -> None:
        """Close least recently used logs while more than ``max_open_partitions`` are open.

        A log is closed only under its partition's write lock, taken without waiting: a
        partition being written is skipped (the limit is exceeded until it is free).
        """
        while True:
            with self._logs_lock:
                if len(self._logs) <= self.max_open_partitions:
                    return
                victim, held = None, None
                for vtp in self._logs:  # least recently used first
                    lk = self._drain_locks.get(vtp)
                    if vtp != keep and lk is not None and lk.acquire(blocking=False):
                        victim, held = vtp, lk
                        break
                if victim is None or held is None:
                    return
                h = self._logs.pop(victim)
            try:
                self._close_handle(victim, h)
            finally:
                held.release()

    def _drop(self, tp: TP, h: _Handle) -> None:
        """Under the partition's write lock: forget and close a handle of an old incarnation."""
        with self._logs_lock:
            if self._logs.get(tp) is h:
                del self._logs[tp]
        self._close_handle(tp, h)

    def _close_handle(self, tp: TP, h: _Handle) -> None:
        try:
            h.log.close()
        except (LogqError, OSError) as e:
            if h.inc.holds():  # the records are in the log; only the clean-close bookkeeping failed
                log.warning("closing %s-%d: %s", tp[0], tp[1], e)

    def _gone(self, tp: TP, h: _Handle, count: int) -> TopicDeletedError:
        """The incarnation of ``h`` is gone: drop the handle; the error for ``count`` records."""
        self._drop(tp, h)
        return self._gone_error(tp, h.inc.topic_id, h.inc.current_id(), count)

    def _gone_error(self, tp: TP, tid: str, now: str | None, count: int) -> TopicDeletedError:
        with self._lock:
            info = self._topics.get(tp[0])
            if info is not None and info[5] != now:
                del self._topics[tp[0]]  # the next send reads the topic again
        what = f"{count} record(s) for {tp[0]}-{tp[1]} were not written"
        if now is None:
            hint = f"the records went with the topic; create {tp[0]!r} again to send to it"
        else:
            hint = (
                "the new topic has another partition count, so records partitioned for the old one "
                "were not written to it; send them again: later sends go to the new topic"
            )
        return TopicDeletedError(tp[0], tid, now, partition=tp[1], what=what, hint=hint)

    def close(self, timeout: float | None = None) -> None:
        """Write every waiting record (as ``flush``), then release the partitions.

        Raises what ``flush`` raises (RecordsFailedError, LogqTimeoutError), after closing.
        In a child process after ``os.fork()`` it only marks this copy closed: the parent
        owns the queued records and the files.
        """
        timeout = _timeout(timeout)
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            self._closed = True
            _LIVE.discard(self)
            self._linger_stop.set()
            if self._linger is not None and self._linger is not threading.current_thread():
                self._linger.join(5)
            with self._logs_lock:
                handles = list(self._logs.items())
                self._logs.clear()
            for tp, h in handles:
                self._close_handle(tp, h)
            self.registry.close()

    def _unwritten(self) -> int:
        """Records accepted and not (yet) in the log, failed ones included."""
        n = self._failed + sum(len(b.records) for b in self._open.values())
        n += sum(len(b.records) for q in self._ready.values() for b in q)
        return n + sum(len(b.records) for g in self._writing.values() for b in g if not b.done)

    def _close_unattended(self, why: str) -> None:
        """Close at interpreter exit or garbage collection: bounded, never raises, warns of losses."""
        if self._closed or self._forked_from is not None:
            return
        lost = 0
        try:
            self.close(_EXIT_FLUSH_S)
        except RecordsFailedError as e:
            lost = e.count
        except Exception:
            pass
        lost += self._unwritten()
        if lost:
            log.warning(
                "%s: a Producer closed without close() could not write %d record(s) (see the errors above)",
                why,
                lost,
            )

    def _poison_after_fork(self) -> None:
        """In a fork child: refuse every call; fail the futures the parent's threads would finish.

        Takes no lock: a thread of the parent may have held one at the fork, and it is gone.
        The parent still writes these records; the child's copies of their futures raise.
        """
        if self._closed:
            return
        self._forked_from = self._pid
        self._closed = True  # send() refuses at once (and names the fork); exit and GC leave it alone
        err = ForkedClientError("producer", self._pid)
        batches = list(self._open.values()) + [b for q in self._ready.values() for b in q]
        for b in batches + [b for g in self._writing.values() for b in g]:
            if not b.done:
                b.error = err
                b._event = None  # the parent's Event (and its lock) stays behind
                b.done = True
        self._open, self._ready, self._writing = {}, {}, {}
        self._failed, self._first_error = 0, None
        self._linger = None

    def _raise_closed(self) -> None:
        if self._forked_from is not None:
            raise ForkedClientError("producer", self._forked_from)
        raise ClientClosedError("producer")

    def __del__(self) -> None:
        # a Producer its owner dropped without close(): write what it accepted (bounded)
        if not getattr(self, "_closed", True):
            self._close_unattended("garbage collection")

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_bytes(x: Any, what: str) -> bytes | None:
    if x is None or type(x) is bytes:
        return x
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    raise SerializationError(f"{what} must be bytes or None, got {type(x).__name__}")


def _append_values(values: Sequence[bytes], ts: int, key: bytes | None, lg: PartitionLog) -> Any:
    return lg.append_values(values, ts, key=key), lg


def _append_records(records: Sequence[Any], lg: PartitionLog) -> Any:
    return lg.append(records), lg


def _linger_main(ref: weakref.ref[Producer], stop: threading.Event, period: float) -> None:
    """The linger thread: write batches ``linger_ms`` old; ends when the Producer closes or is collected."""
    while not stop.wait(period):
        p = ref()
        if p is None:
            return
        p._linger_tick(period)
        del p


def _timeout(timeout: Any) -> float | None:
    """None (wait as long as it takes) or a number of seconds >= 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise ConfigError(f"timeout={timeout!r} is invalid: None (no limit) or a number of seconds >= 0")
    return timeout


def _bulk_values(values: Any) -> Sequence[bytes]:
    """``send_batch`` values as a sequence of bytes; refuses anything else before writing."""
    if not isinstance(values, (list, tuple)):
        try:
            values = list(values)
        except TypeError:
            raise SerializationError(f"values must be a sequence of bytes, got {type(values).__name__}") from None
    if not values or set(map(type, values)) == {bytes}:  # C loops: no bytecode per record
        return values
    out: list[bytes] = []
    for v in values:
        b = _as_bytes(v, "value")
        if b is None:
            raise SerializationError("send_batch values cannot be None", hint="send tombstones with send()")
        out.append(b)
    return out


def _headers(headers: Any) -> tuple[tuple[tuple[str, bytes | None], ...], int]:
    """The headers as a tuple of (str, bytes | None) pairs, and the bytes they add.

    Refuses, before anything is queued, what the codec cannot encode or a consumer could not
    decode: a key that is not str (or UTF-8 bytes), a value that is not bytes or None. A
    generator is read once, here.
    """
    try:
        if isinstance(headers, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"got {type(headers).__name__}")
        items = list(headers.items() if isinstance(headers, dict) else headers)
        out = []
        n = 0
        for item in items:
            if isinstance(item, (str, bytes)) or len(item) != 2:
                raise TypeError(f"{item!r} is not a (key, value) pair")
            hk, hv = item
            if isinstance(hk, (bytes, bytearray)):
                hk = bytes(hk).decode("utf-8")  # stored as UTF-8; consumers decode it to str
            if not isinstance(hk, str):
                raise TypeError(f"key {hk!r} is a {type(hk).__name__}")
            kb = hk.encode("utf-8")
            if hv is not None:
                if not isinstance(hv, (bytes, bytearray, memoryview)):
                    raise TypeError(f"value of {hk!r} is a {type(hv).__name__}")
                hv = bytes(hv)
            out.append((hk, hv))
            n += len(kb) + (len(hv) if hv else 0) + 10
        return tuple(out), n
    except (TypeError, ValueError, UnicodeError) as e:
        raise SerializationError(f"headers must be (str key, bytes or None value) pairs: {e}") from None
