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

Compression, delivery callbacks, partitioner, metrics: docs/guide.md, "Producer".

The pieces live beside this module: batches, futures and callbacks in futures.py, the
per-record checks of ``send`` in records.py, the open partition logs and their incarnation
checks in producer_logs.py, settings and codecs in producer_config.py, counters in
producer_metrics.py, and exit, garbage collection, fork and the linger thread in lifecycle.py.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import logging
import operator
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from logq.client.futures import (
    TP,
    Batch,
    BatchMetadata,
    Callback,
    DeliveryQueue,
    RecordFuture,
    RecordMetadata,
    new_future,
)
from logq.client.handles import DEFAULT_MAX_OPEN_PARTITIONS, check_max_open_partitions
from logq.client.lifecycle import EXIT_FLUSH_S, LiveClients, check_timeout, start_linger
from logq.client.partitioner import KeyPlacements, StickyPartitioner, call_partitioner, check_partitioner
from logq.client.producer_config import DEFAULT_METADATA_MAX_AGE_MS, Extras, check_settings, producer_codec, topic_codec
from logq.client.producer_logs import OpenLogs, append_records, append_values
from logq.client.producer_metrics import ProducerMetrics
from logq.client.records import (
    RECORD_OVERHEAD_BYTES,
    bulk_input,
    encode_headers,
    rare_arguments,
    record_too_large,
    serialize,
    timing_headers,
)
from logq.client.serde import get_serializer
from logq.client.timestamps import to_millis
from logq.codec.batch import BATCH_OVERHEAD
from logq.errors import (
    ClientClosedError,
    ForkedClientError,
    LogqError,
    LogqTimeoutError,
    ProducerBufferFullError,
    RecordsFailedError,
    RecordTooLargeError,
    SerializationError,
)
from logq.storage.log import PartitionLog
from logq.storage.topics import TopicRegistry, validate_partition, validate_topic

__all__ = ["Producer", "RecordMetadata", "BatchMetadata", "RecordFuture"]

_BULK_BATCH_BYTES = 512 * 1024  # send_batch target batch size (below max_batch_bytes)
_RAW = (bytes, type(None))  # keys and values send() takes as they are

log = logging.getLogger("logq.producer")


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
        compression_type: str | None = None,
        compression_level: int | None = None,
        partitioner: Any = None,  # a callable (kafka-python 1-2) or a kafka.partitioner.Partitioner
        metadata_max_age_ms: int = DEFAULT_METADATA_MAX_AGE_MS,
    ) -> None:
        self._closed = True  # until built: __del__ of a half-built Producer does nothing
        check_settings(data_dir, fsync, linger_ms, batch_size, buffer_bytes, max_block_ms, metadata_max_age_ms)
        check_max_open_partitions(max_open_partitions)
        codec = producer_codec(compression_type, compression_level)  # None: the topic's
        self._x = Extras(codec, check_partitioner(partitioner), ProducerMetrics(), DeliveryQueue())
        self._x.metadata_max_age_ms = metadata_max_age_ms
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
        self._x.plain = self._key_ser is None and self._value_ser is None
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._open: dict[TP, Batch] = {}
        self._ready: dict[TP, deque[Batch]] = {}
        self._drain_locks: dict[TP, threading.Lock] = {}
        self._pending_bytes = 0
        self._logs = OpenLogs(self.registry, fsync, max_open_partitions, self._drain_locks, self._forget_topic)
        self._sticky: dict[str, StickyPartitioner] = {}
        self._topics: dict[str, list] = {}
        self._keys = KeyPlacements()
        self._writing: dict[TP, list[Batch]] = {}  # the batches each partition's writer is writing
        self._failed = 0  # records that could not be written since the last flush()
        self._first_error: BaseException | None = None
        self._pid = os.getpid()
        self._forked_from: int | None = None
        self._closed = False
        self._linger_stop = threading.Event()
        self._linger: threading.Thread | None = None
        if linger_ms > 0:
            self._linger = start_linger(self, self._linger_stop, linger_ms / 1000, Producer._linger_tick)
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
        on_delivery: Callable[[BaseException | None, RecordMetadata | None], Any] | None = None,
        *,
        delay_ms: int | None = None,
        deliver_at: Any = None,
        ttl_ms: int | None = None,
    ) -> RecordFuture:
        """Queue one record; the future gives where it landed. ``on_delivery(error, metadata)``
        (confluent-kafka's order) runs once it is written or failed (docs/guide.md, Producer).
        ``delay_ms``/``deliver_at`` and ``ttl_ms``: for ShareConsumers (records.timing_headers)."""
        if self._closed:
            self._raise_closed()
        x = self._x
        if x.plain and type(key) in _RAW and type(value) in _RAW:
            k, v = key, value  # the common case costs no call
        else:
            k, v = serialize(topic, key, value, self._key_ser, self._value_ser)
        try:
            info = self._topics[topic]
        except (KeyError, TypeError):  # first send to it, or not a topic name at all
            info = self._topic_info(topic)
        now = int(time.time() * 1000)
        ts = now if timestamp_ms is None else to_millis(timestamp_ms, "timestamp_ms")
        if not info[6] <= now < info[7]:  # metadata_max_age_ms passed (or the clock went back)
            info = self._refresh_topic(topic, info, now)
        size = RECORD_OVERHEAD_BYTES + (len(k) if k else 0) + (len(v) if v else 0)
        if delay_ms is not None or deliver_at is not None or ttl_ms is not None:
            headers = timing_headers(headers, ts, delay_ms, deliver_at, ttl_ms)
        if headers:
            headers, hsize = encode_headers(headers)
            size += hsize
        elif headers is not None and not isinstance(headers, (dict, list, tuple)):
            raise SerializationError(f"headers must be a dict or a list of (str, bytes) pairs, got {headers!r}")
        if size > info[1]:
            raise self._too_large(topic, size)
        if on_delivery is not None or x.partitioner is not None:
            partition = rare_arguments(x.partitioner, topic, info[0], partition, k, on_delivery, (key, value, v))
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
                b = self._open[tp] = Batch(tp, info[5])
            recs = b.records
            recs.append((k, v, headers, ts))
            b.bytes += size
            self._pending_bytes += size
            fut = new_future(RecordFuture, (b, len(recs) - 1))
            if on_delivery is not None:  # the batch is open: its writer runs the callback
                fut.add_delivery_callback(on_delivery)
            if b.bytes >= cap or not self.linger_ms:  # linger_ms=0: no waiting, as in Kafka
                self._close_batch(tp, b)
                del self._open[tp]
                drain = True
        if drain:
            self._drain(tp)
        return fut

    def _topic_info(self, topic: str) -> list:
        """[partitions, largest record bytes, sticky partition, bytes sent to it, batch cap, topic id,
        read at (wall ms), read again from (wall ms), the TopicMeta it was made from]."""
        meta = self.registry.get(validate_topic(topic), fresh=True)
        sticky = self._sticky_for(topic).partition(None, meta.partitions, self.batch_size)
        limit = meta.config.max_batch_bytes - BATCH_OVERHEAD
        if limit + RECORD_OVERHEAD_BYTES > self.buffer_bytes:
            limit = self.buffer_bytes - RECORD_OVERHEAD_BYTES  # a record must fit the buffer too
        if self._x.codec is None:
            topic_codec(meta.config)  # a topic codec whose library is missing fails this send
        now = int(time.time() * 1000)
        age = self._x.metadata_max_age_ms
        info = [meta.partitions, limit, sticky, 0, min(self.batch_size, limit), meta.topic_id, now, now + age, meta]
        self._logs.tid_partitions[meta.topic_id] = meta.partitions
        self._topics[topic] = info
        return info

    def _refresh_topic(self, topic: str, info: list, now: int) -> list:
        """``info`` is ``metadata_max_age_ms`` old: read the topic again (one stat when unchanged).

        Partitions added (or a config altered) since: new info, so keyed records map over the
        new count from now on, as Kafka's producer does after its metadata refresh. A topic
        deleted (or unreadable) meanwhile keeps its info: the write reports it
        (TopicDeletedError on the futures), as before the refresh.
        """
        try:
            meta = self.registry.get(topic, fresh=True)
        except LogqError:
            meta = info[8]
        if meta is info[8]:  # unchanged: the registry hands back the same object
            info[6], info[7] = now, now + self._x.metadata_max_age_ms
            return info
        return self._topic_info(topic)

    @property
    def metadata_max_age_ms(self) -> int:
        """Kafka's ``metadata.max.age.ms``: how long ``send`` uses a topic's count and limits (ms)."""
        return self._x.metadata_max_age_ms

    def _too_large(self, topic: str, size: int) -> RecordTooLargeError:
        """A record of ``size`` bytes that cannot be sent, with the limit it broke (records.py)."""
        max_batch = self.registry.get(topic).config.max_batch_bytes
        return record_too_large(topic, size, max_batch, self.buffer_bytes)

    def _forget_topic(self, topic: str, stale: Callable[[str], bool]) -> None:
        """Drop the cached info of ``topic`` if ``stale(its topic id)``: the next send reads it again."""
        with self._lock:
            info = self._topics.get(topic)
            if info is not None and stale(info[5]):
                del self._topics[topic]

    def _choose_partition(self, topic: str, info: list, partition: object, key: bytes | None, size: int) -> int:
        """Under self._lock: the one partition rule of ``send`` and ``send_batch``.

        An explicit partition is checked; a key goes to its murmur2 partition; records
        without a key stick to ``info[2]`` until ``batch_size`` bytes went to it (KIP-794).
        """
        if partition is not None:
            return validate_partition(topic, partition, info[0])
        if key is not None:
            return self._keys.partition(key, info[0])
        if info[3] >= self.batch_size:
            info[2] = self._sticky_for(topic).partition(None, info[0], self.batch_size)
            info[3] = 0
        info[3] += size
        return info[2]

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
        values, k = bulk_input(topic, values, key, self._key_ser, self._value_ser)
        try:
            info = self._topics[topic]
        except (KeyError, TypeError):
            info = self._topic_info(topic)
        now = int(time.time() * 1000)
        if not info[6] <= now < info[7]:
            info = self._refresh_topic(topic, info, now)
        if partition is None and self._x.partitioner is not None:
            partition = call_partitioner(self._x.partitioner, topic, k, info[0], (key, None, None))
        record_limit = info[1]
        ts = int(time.time() * 1000) if timestamp_ms is None else to_millis(timestamp_ms, "timestamp_ms")
        limit = min(_BULK_BATCH_BYTES, record_limit + BATCH_OVERHEAD - 1024)
        extra = RECORD_OVERHEAD_BYTES + (len(k) if k else 0)
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
                do = functools.partial(append_values, chunk, ts, k, self._x.codec)
                res, lg, stored, raw = self._logs.append(tp, info[5], stop - start, do)
            with self._lock:
                size = ends[stop - 1] - used + BATCH_OVERHEAD  # send()'s accounting, when uncompressed
                self._x.metrics.written(stop - start, stored or size, raw or size, None)
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
    def _close_batch(self, tp: TP, b: Batch) -> None:
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

    def flush(self, timeout: float | None = None) -> None:
        """Write every record sent so far; return once they are in the log and their callbacks
        ran (unless called from a callback). RecordsFailedError if records could not be written
        since the last flush (each failed future says why); with ``timeout`` (seconds),
        LogqTimeoutError if another thread still writes them or runs their callbacks then.
        """
        if self._forked_from is not None:
            self._raise_closed()
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            for tp, b in list(self._open.items()):
                self._close_batch(tp, b)
            self._open.clear()
            tps = list(self._ready) + [tp for tp in self._writing if tp not in self._ready]
            # below: the batches sent before this call, then their callbacks
            mine = [b for q in self._ready.values() for b in q] + [b for g in self._writing.values() for b in g]
        for tp in tps:
            self._drain(tp, deadline)
        left = sum(not b.wait_written(None if deadline is None else deadline - time.monotonic()) for b in mine)
        if not self._x.delivery.delivering():  # from inside a callback it cannot wait for callbacks
            left += self._x.delivery.wait_for(mine + self._x.delivery.pending(), deadline)
        with self._lock:
            failed, first = self._failed, self._first_error
            self._failed, self._first_error = 0, None
        if failed:
            raise RecordsFailedError(failed, first) from first
        if left:
            raise LogqTimeoutError(
                "flush",
                timeout,
                f"{left} batch(es) wait behind another thread's write or callbacks",
                hint="they stay queued and are written; call flush() again to wait for them",
            )

    def partitions_for(self, topic: str) -> set[int]:
        """The partition numbers of ``topic``, read fresh (UnknownTopicError if it does not exist)."""
        if self._closed:
            self._raise_closed()
        return set(range(self.registry.get(validate_topic(topic), fresh=True).partitions))

    def metrics(self) -> dict[str, float]:
        """Counters since the producer was built, under Kafka's names (producer_metrics.py)."""
        with self._lock:
            return self._x.metrics.snapshot(self.buffer_bytes, self._pending_bytes)

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

    def close(self, timeout: float | None = None) -> None:
        """Write every waiting record (as ``flush``), then release the partitions.

        Raises what ``flush`` raises (RecordsFailedError, LogqTimeoutError), after closing.
        In a child process after ``os.fork()`` it only marks this copy closed: the parent
        owns the queued records and the files.
        """
        timeout = check_timeout(timeout)
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
            self._logs.close_all()
            self.registry.close()

    def _unwritten(self) -> int:
        """Records accepted and not (yet) in the log, failed ones included."""
        n = self._failed + sum(len(b.records) for b in self._open.values())
        n += sum(len(b.records) for q in self._ready.values() for b in q)
        return n + sum(len(b.records) for g in self._writing.values() for b in g if not b.written)

    def _close_unattended(self, why: str) -> None:
        """Close at interpreter exit or garbage collection: bounded, never raises, warns of losses."""
        if self._closed or self._forked_from is not None:
            return
        lost = 0
        try:
            self.close(EXIT_FLUSH_S)
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
        batches += [b for g in self._writing.values() for b in g] + self._x.delivery.forget_in_fork_child()
        for b in batches:
            if not b.done:
                b.abandon(err)  # the parent's Event (and its lock) stays behind
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


# Every open Producer, so that interpreter exit writes what they accepted and a fork child
# poisons its copies. Weak: a Producer dropped by its owner is flushed by __del__ instead.
_LIVE: LiveClients[Producer] = LiveClients(
    at_exit=lambda p: p._close_unattended("interpreter exit"),
    after_fork=lambda p: p._poison_after_fork(),
)
