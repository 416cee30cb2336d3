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
per-record checks of ``send`` in records.py, the topic cache and partition choice in
producer_topics.py, the batch queues and their writers (drain, group commit, the full
buffer) in producer_write.py (a base class of ``Producer``), the open partition logs and
their incarnation checks in producer_logs.py, settings and codecs in producer_config.py,
counters in producer_metrics.py, and exit, garbage collection, fork and the linger thread in
lifecycle.py.
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
    DeliveryQueue,
    RecordFuture,
    RecordMetadata,
    new_future,
)
from logq.client.handles import DEFAULT_MAX_OPEN_PARTITIONS, check_max_open_partitions
from logq.client.lifecycle import EXIT_FLUSH_S, LiveClients, check_timeout, start_linger
from logq.client.partitioner import call_partitioner, check_partitioner
from logq.client.producer_config import DEFAULT_METADATA_MAX_AGE_MS, Extras, check_settings, producer_codec
from logq.client.producer_logs import OpenLogs, append_values
from logq.client.producer_metrics import ProducerMetrics
from logq.client.producer_topics import TopicCache
from logq.client.producer_write import WritePath
from logq.client.records import (
    RECORD_OVERHEAD_BYTES,
    bulk_input,
    rare_arguments,
    send_headers,
    serialize,
)
from logq.client.serde import get_serializer
from logq.client.timestamps import to_millis
from logq.codec.batch import BATCH_OVERHEAD
from logq.errors import (
    ClientClosedError,
    ForkedClientError,
    LogqTimeoutError,
    RecordsFailedError,
)
from logq.storage.log import PartitionLog
from logq.storage.topics import TopicRegistry, validate_topic

__all__ = ["Producer", "RecordMetadata", "BatchMetadata", "RecordFuture"]

_BULK_BATCH_BYTES = 512 * 1024  # send_batch target batch size (below max_batch_bytes)
_RAW = (bytes, type(None))  # keys and values send() takes as they are

log = logging.getLogger("logq.producer")


class Producer(WritePath):
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
        self._t = TopicCache(self.registry, self._lock, batch_size, buffer_bytes, self._x)
        self._topics = self._t.infos  # send()'s look-up: the cache's dict, without loading self._t
        self._logs = OpenLogs(self.registry, fsync, max_open_partitions, self._drain_locks, self._t.forget)
        self._t.tid_partitions = self._logs.tid_partitions
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
            info = self._t.read(topic)
        now = int(time.time() * 1000)
        ts = now if timestamp_ms is None else to_millis(timestamp_ms, "timestamp_ms")
        if not info[6] <= now < info[7]:  # metadata_max_age_ms passed (or the clock went back)
            info = self._t.refresh(topic, info, now)
        size = RECORD_OVERHEAD_BYTES + (len(k) if k else 0) + (len(v) if v else 0)
        if headers is not None or delay_ms is not None or deliver_at is not None or ttl_ms is not None:
            headers, hsize = send_headers(headers, ts, delay_ms, deliver_at, ttl_ms)
            size += hsize
        if size > info[1]:
            raise self._t.too_large(topic, size)
        if on_delivery is not None or x.partitioner is not None:
            partition = rare_arguments(x.partitioner, topic, info[0], partition, k, on_delivery, (key, value, v))
        drain = False
        with self._lock:
            tp = (topic, self._t.choose(topic, info, partition, k, size))
            if self._pending_bytes + size > self.buffer_bytes:
                self._make_room(size)
            b = self._open.get(tp)
            cap = info[4]  # batch_size, capped so a batch also fits the topic's max_batch_bytes
            if b is None or (b.bytes + size > cap and b.records) or b.tid != info[5]:
                b, drain = self._new_batch(tp, b, info[5])
            recs = b.records
            recs.append((k, v, headers, ts))
            b.bytes += size
            self._pending_bytes += size
            fut = new_future(RecordFuture, (b, len(recs) - 1))
            if on_delivery is not None:  # the batch is open: its writer runs the callback
                fut.add_delivery_callback(on_delivery)
            if b.bytes >= cap or not self.linger_ms:  # linger_ms=0: no waiting, as in Kafka
                self._close_open(tp, b)
                drain = True
        if drain:
            self._drain(tp)
        return fut

    @property
    def metadata_max_age_ms(self) -> int:
        """Kafka's ``metadata.max.age.ms``: how long ``send`` uses a topic's count and limits (ms)."""
        return self._x.metadata_max_age_ms

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
        info = self._t.get(topic)
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
                raise self._t.too_large(topic, ends[start] - used)
            with self._lock:
                tp = (topic, self._t.choose(topic, info, partition, k, ends[stop - 1] - used))
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
