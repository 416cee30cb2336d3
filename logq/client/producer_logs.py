"""The producer's open partition logs: a bounded LRU, checked against topic incarnations.

Partition logs stay open between writes, at most ``max_open_partitions`` at once: past
that the least recently used is closed, under its partition's write lock taken without
waiting (a partition being written is skipped, so the limit is exceeded until it is free),
and reopened on its next write: nothing queued is lost or reordered.

Each append is checked, before and after, against the incarnation of the topic its batch
was partitioned for (logq/client/handles.py): a batch for a topic deleted meanwhile fails
with TopicDeletedError, never an offset in unlinked files; a topic deleted and created
again with the same partition count receives the batch, one with another count fails it
(its partitioning no longer holds). Either way the producer is told (``forget_topic``) to
read the topic again, so later sends go to the new topic.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from logq.client.futures import TP
from logq.client.handles import Incarnation
from logq.client.producer_config import Codec, topic_codec
from logq.codec.batch import encode_batch, encode_values
from logq.codec.compressed import compress_batch
from logq.config import LogConfig
from logq.errors import LogqError, TopicDeletedError, UnknownTopicError
from logq.storage.log import PartitionLog
from logq.storage.topics import TopicRegistry, partition_path

__all__ = ["OpenLogs", "append_records", "append_values"]

log = logging.getLogger("logq.producer")

# forget_topic(topic, stale): drop the producer's cached topic info if stale(its topic id)
ForgetTopic = Callable[[str, Callable[[str], bool]], None]


class _Handle(NamedTuple):
    log: PartitionLog
    inc: Incarnation


# The producer's appends. They return (AppendResult, the log, bytes stored, bytes before
# compression) for the producer's metrics; the sizes are None for an uncompressed batch, which
# goes through PartitionLog.append / append_values as before (the producer then counts its
# own estimate). ``codec`` is (codec id, level); None: the topic's compression_type, read
# from the log's config.
# A compressed batch is logq's own encoding of records send() checked, so the log takes it as
# trusted (no decode pass); it stays within max_batch_bytes (compress_batch never grows a
# batch) and within the readers' max_decompressed_bytes (it is not compressed past that).


def append_values(values: Sequence[bytes], ts: int, key: bytes | None, codec: Codec | None, lg: PartitionLog) -> Any:
    codec = topic_codec(lg.config) if codec is None else codec
    if not codec[0]:
        return lg.append_values(values, ts, key=key), lg, None, None
    return _append_compressed(lg, encode_values(values, ts, 0, key=key), codec)


def append_records(records: Sequence[Any], codec: Codec | None, lg: PartitionLog) -> Any:
    codec = topic_codec(lg.config) if codec is None else codec
    if not codec[0]:
        return lg.append(records), lg, None, None
    return _append_compressed(lg, encode_batch(records, 0), codec)


def _append_compressed(lg: PartitionLog, raw: bytes, codec: Codec) -> Any:
    batch = compress_batch(raw, codec[0], lg.config.max_decompressed_bytes, codec[1])
    return lg.append_batch(batch, _trusted=True), lg, len(batch), len(raw)


class OpenLogs:
    def __init__(
        self,
        registry: TopicRegistry,
        fsync: str | None,
        max_open_partitions: int,
        write_locks: dict[TP, threading.Lock],
        forget_topic: ForgetTopic,
    ) -> None:
        self.registry = registry
        self.root = registry.root
        self.fsync = fsync
        self.max_open_partitions = max_open_partitions
        self.tid_partitions: dict[str, int] = {}  # topic id -> its partition count
        self._write_locks = write_locks  # the producer's per-partition write locks (shared)
        self._forget_topic = forget_topic
        self._logs: OrderedDict[TP, _Handle] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()

    def append(self, tp: TP, tid: str, count: int, do: Callable[[PartitionLog], Any]) -> Any:
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

    def close_all(self) -> None:
        with self._lock:
            handles = list(self._logs.items())
            self._logs.clear()
        for tp, h in handles:
            self._close_handle(tp, h)

    def _handle(self, tp: TP, tid: str, count: int) -> _Handle:
        """The open log of ``tp`` for incarnation ``tid``, opening it (and closing the least
        recently used one past ``max_open_partitions``). A topic created again with the same
        partition count takes the batch; otherwise TopicDeletedError."""
        with self._lock:
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
            self.tid_partitions[meta.topic_id] = meta.partitions
            if not self._same_partitioning(tid, meta.topic_id):
                raise self._gone_error(tp, tid, meta.topic_id, count)
            # created again alike: this batch goes to it, later sends too
            self._forget_topic(topic, lambda cached: cached == tid)
        inc = Incarnation(self.root, topic, meta.topic_id)
        cfg: LogConfig = meta.config
        if self.fsync is not None:
            cfg = cfg.with_(fsync=self.fsync)
        try:
            lg = PartitionLog(partition_path(self.root, topic, tp[1]), cfg, create=False)
            lg.defer_sync = True  # fsync="always": the producer syncs before it acknowledges
        except (LogqError, OSError):
            if not inc.holds():  # deleted while opening
                raise self._gone_error(tp, tid, inc.current_id(), count) from None
            raise
        h = _Handle(lg, inc)
        with self._lock:
            self._logs[tp] = h
        self._evict(tp)
        return h

    def _same_partitioning(self, tid: str, new_tid: str) -> bool:
        """Whether records partitioned for incarnation ``tid`` may go to ``new_tid`` (same count)."""
        n = self.tid_partitions.get(tid)
        return n is not None and n == self.tid_partitions.get(new_tid)

    def _evict(self, keep: TP) -> None:
        """Close least recently used logs while more than ``max_open_partitions`` are open.

        A log is closed only under its partition's write lock, taken without waiting: a
        partition being written is skipped (the limit is exceeded until it is free).
        """
        while True:
            with self._lock:
                if len(self._logs) <= self.max_open_partitions:
                    return
                victim, held = None, None
                for vtp in self._logs:  # least recently used first
                    lk = self._write_locks.get(vtp)
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
        with self._lock:
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
        self._forget_topic(tp[0], lambda cached: cached != now)  # the next send reads the topic again
        what = f"{count} record(s) for {tp[0]}-{tp[1]} were not written"
        if now is None:
            hint = f"the records went with the topic; create {tp[0]!r} again to send to it"
        else:
            hint = (
                "the new topic has another partition count, so records partitioned for the old one "
                "were not written to it; send them again: later sends go to the new topic"
            )
        return TopicDeletedError(tp[0], tid, now, partition=tp[1], what=what, hint=hint)
