"""Produce (key 0; advertised 0-7, versions 3-7 implemented) and InitProducerId (key 22, 0-1).

Produce stores the client's batches as they are (RecordBatch v2; a compressed batch stays
compressed): ``PartitionLog.append_batch`` checks each one (structure, CRC, every record
parses, offset deltas 0, 1, 2...) and assigns its offsets. Per partition, under one lock:
the idempotence verdict (logq/server/idempotence.py), the append, then the producer state.

acks and durability (one broker: the leader is the whole in-sync replica set):

* ``acks=0``: appended, no response is sent; a partition that fails closes the
  connection instead (Kafka's way of telling such a producer);
* ``acks=1`` and ``acks=-1`` (all): the response is sent once the append meets the topic's
  durability: with ``fsync="always"`` after an fdatasync that covers its batch (run off the
  event loop), with ``"interval"`` or ``"never"`` once the batch is in the page cache (it
  survives ``kill -9`` of the server, not a power loss).

Group commit (``fsync="always"``): the append runs under the partition's write lock with its
fdatasync deferred (``PartitionLog.defer_sync``); the lock is released, and the request waits
for a ``sync_deferred()`` (in a thread) that started after its append returned. A sync
starts when requests wait, none runs, and no other request is queued for the lock or
appending (it would be covered by the next sync otherwise), so requests that overlap share
one fdatasync. A sync that fails fails every request it covered (KAFKA_STORAGE_ERROR), and
the log stays failed, so a retry that the idempotence check finds already appended waits for
a sync too and fails the same way: no acknowledgement without durability.

Per-partition errors: UNKNOWN_TOPIC_OR_PARTITION (3) for a topic or partition that does not
exist (produce does not create topics: Metadata does), CORRUPT_MESSAGE (2) for a batch that
fails its checks (or no batch at all), MESSAGE_TOO_LARGE (10) above the topic's
``max_batch_bytes``, OUT_OF_ORDER_SEQUENCE_NUMBER (45), INVALID_PRODUCER_EPOCH (47),
KAFKA_STORAGE_ERROR (56) when the disk fails, TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53)
for transactional produce (transactions are not served).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

from logq.codec.batch import BatchHeader, iter_batches
from logq.errors import (
    CorruptRecordError,
    LogFailedError,
    LogqError,
    RecordTooLargeError,
    StorageError,
    UnknownTopicError,
)
from logq.server import kio_api
from logq.server.context import Broker, Session
from logq.storage.log import PartitionLog

__all__ = ["HANDLERS", "VERSIONS"]

log = logging.getLogger("logq.server")

PRODUCE = 0
INIT_PRODUCER_ID = 22
NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
KAFKA_STORAGE_ERROR = 56
UNKNOWN_SERVER_ERROR = -1


def _error_of(e: LogqError) -> int:
    if isinstance(e, RecordTooLargeError):
        return MESSAGE_TOO_LARGE
    if isinstance(e, CorruptRecordError):
        return CORRUPT_MESSAGE
    if isinstance(e, UnknownTopicError):
        return UNKNOWN_TOPIC_OR_PARTITION
    if isinstance(e, (StorageError, LogFailedError)):
        return KAFKA_STORAGE_ERROR
    return UNKNOWN_SERVER_ERROR


def split_batches(records: bytes | None, max_batch_bytes: int) -> list[tuple[bytes, BatchHeader]]:
    """The batches of a produce request's ``records`` (CorruptRecordError if any is bad)."""
    if not records:
        raise CorruptRecordError("no record batch")
    out = []
    for pos, h in iter_batches(records):
        if h.size > max_batch_bytes:
            raise RecordTooLargeError(h.size, max_batch_bytes)
        out.append((bytes(records[pos : pos + h.size]), h))
    return out


class GroupCommit:
    """Group commit of the ``fsync="always"`` appends made through one writer log.

    ``appended`` counts appends; ``synced`` is the count a finished fdatasync covered (a
    sync covers every append counted when it starts). ``appending`` counts requests queued
    for the write lock or inside it: while it is above zero no sync starts, as the last of
    them starts one that covers them all.
    """

    def __init__(self, lg: PartitionLog, stats: GroupCommitStats) -> None:
        self.lg = lg
        self.stats = stats
        self.appending = 0
        self.appended = 0
        self.synced = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._running: asyncio.Task[None] | None = None

    async def leave(self, loop: asyncio.AbstractEventLoop, wait_for: int | None) -> None:
        """A request is done with the lock; with ``wait_for`` (the ``appended`` count after
        its appends) return once a sync covering that count finished (its error if it failed)."""
        self.appending -= 1
        fut = None
        if wait_for is not None and wait_for > self.synced:
            fut = loop.create_future()
            self._waiters.append((wait_for, fut))
        self._kick(loop)
        if fut is not None:
            await fut

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._waiters and self._running is None and self.appending == 0:
            self._running = loop.create_task(self._sync(loop, self.appended))

    async def _sync(self, loop: asyncio.AbstractEventLoop, target: int) -> None:
        error: BaseException | None = None
        try:
            await loop.run_in_executor(None, self.lg.sync_deferred)  # one fdatasync, off the event loop
        except Exception as e:  # LogFailedError; passed to every request it covered
            error = e
        else:
            self.synced = max(self.synced, target)
        self.stats.syncs += 1
        covered = [f for seq, f in self._waiters if seq <= target]
        self._waiters = [(seq, f) for seq, f in self._waiters if seq > target]
        self.stats.synced_requests += len(covered)
        for f in covered:
            if not f.done():
                f.set_exception(error) if error is not None else f.set_result(None)
        self._running = None
        self._kick(loop)  # requests that appended while this sync ran


@dataclass
class GroupCommitStats:
    """The group commits of one server (``broker.extensions["produce"]``): ``syncs``, the
    ``sync_deferred()`` calls produce requests made (each one fdatasync at most; failed
    ones included), and ``synced_requests``, the requests (per partition) a sync covered:
    each was answered after it, with its error if it failed."""

    syncs: int = 0
    synced_requests: int = 0
    by_log: weakref.WeakKeyDictionary[PartitionLog, GroupCommit] = field(default_factory=weakref.WeakKeyDictionary)

    def of(self, lg: PartitionLog) -> GroupCommit:
        gc = self.by_log.get(lg)
        if gc is None:
            gc = self.by_log[lg] = GroupCommit(lg, self)
            lg.defer_sync = True  # every append through this log is synced by sync_deferred()
        return gc


def group_commits(broker: Broker) -> GroupCommitStats:
    stats = broker.extensions.get("produce")
    if stats is None:
        stats = broker.extensions["produce"] = GroupCommitStats()
    assert isinstance(stats, GroupCommitStats)
    return stats


async def _append_all(
    broker: Broker,
    lg: PartitionLog,
    gc: GroupCommit | None,
    tp: tuple[str, int],
    batches: list[tuple[bytes, BatchHeader]],
) -> tuple[int, int]:
    """Under the partition's write lock: (error, base offset of the first batch). With a
    group commit (fsync="always") the appends leave their fdatasync to it."""
    producers = broker.producers(*tp)
    first = -1
    for batch, h in batches:
        verdict = producers.check(h.producer_id, h.producer_epoch, h.base_sequence, h.last_offset_delta)
        if verdict.error:
            return verdict.error, -1
        if verdict.duplicate_of is not None:
            base = verdict.duplicate_of  # acknowledged once a sync covers the appends so far
        else:
            if gc is not None:  # off the event loop: a running sync holds the log's mutex
                res = await broker.loop.run_in_executor(None, lg.append_batch, batch)
                gc.appended += 1
            else:
                res = lg.append_batch(batch)
            base = res.base_offset
            producers.observe(h.producer_id, h.producer_epoch, h.base_sequence, h.last_offset_delta, base)
        if first < 0:
            first = base
    return NONE, first


async def _append_durably(
    broker: Broker, topic: str, partition: int, batches: list[tuple[bytes, BatchHeader]]
) -> tuple[int, int]:
    """(error, base offset): appended under the write lock; with fsync="always" returns
    once a sync covering the appends finished (its error, raised, if it failed)."""
    tp = (topic, partition)
    while True:
        lg = broker.log(topic, partition)
        if lg.config.fsync != "always":
            async with broker.write_lock(topic, partition):
                if broker.log(topic, partition) is lg:
                    return await _append_all(broker, lg, None, tp, batches)
        else:
            result = await _append_grouped(broker, lg, group_commits(broker).of(lg), tp, batches)
            if result is not None:
                return result
        # the log was closed (max_open_partitions) while this request waited for the lock


async def _append_grouped(
    broker: Broker, lg: PartitionLog, gc: GroupCommit, tp: tuple[str, int], batches: list[tuple[bytes, BatchHeader]]
) -> tuple[int, int] | None:
    """``_append_all`` under the lock, then the wait for a sync covering it; None when
    ``lg`` is no longer the partition's writer once the lock is taken."""
    gc.appending += 1
    wait_for = None
    result = None
    try:
        async with broker.write_lock(*tp):
            if broker.log(*tp) is lg:
                result = await _append_all(broker, lg, gc, tp, batches)
                if result[0] == NONE:
                    wait_for = gc.appended
    finally:
        await gc.leave(broker.loop, wait_for)
    return result


async def produce_partition(broker: Broker, topic: str, partition: int, records: bytes | None) -> tuple[int, int, int]:
    """(error code, base offset, log start offset) of one partition's data."""
    meta = broker.topic(topic)
    if meta is None or not 0 <= partition < meta.partitions:
        return UNKNOWN_TOPIC_OR_PARTITION, -1, -1
    try:
        batches = split_batches(records, meta.config.max_batch_bytes)
        error, base = await _append_durably(broker, topic, partition, batches)
        after = broker.topic(topic)
        if after is None or after.topic_id != meta.topic_id:
            return UNKNOWN_TOPIC_OR_PARTITION, -1, -1  # deleted meanwhile: not acknowledged
        start = broker.log(topic, partition).log_start_offset
    except LogqError as e:
        code = _error_of(e)
        if code in (KAFKA_STORAGE_ERROR, UNKNOWN_SERVER_ERROR):
            log.warning("produce to %s-%d failed: %s", topic, partition, e)
        return code, -1, -1
    return error, base, start


async def _produce_all(broker: Broker, request: Any) -> list[tuple[int, int, int]]:
    """(error, base offset, log start) per partition, in request order. Partitions run
    concurrently: with fsync="always" their appends and fdatasyncs overlap."""
    if request.transactional_id is not None:
        n = sum(len(t.partition_data) for t in request.topic_data)
        return [(TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1, -1)] * n
    jobs = [produce_partition(broker, t.name, p.index, p.records) for t in request.topic_data for p in t.partition_data]
    if len(jobs) == 1:
        return [await jobs[0]]
    return list(await asyncio.gather(*jobs))


async def handle_produce(broker: Broker, session: Session, version: int, request: Any) -> Any:
    m = kio_api.module(PRODUCE, version)
    results = iter(await _produce_all(broker, request))
    topics = []
    appended = failed = False
    for t in request.topic_data:
        parts = []
        for p in t.partition_data:
            error, base, start = next(results)
            appended = appended or error == NONE
            failed = failed or error != NONE
            parts.append(
                kio_api.make(
                    m.PartitionProduceResponse,
                    index=p.index,
                    error_code=kio_api.error(error),
                    base_offset=base,
                    log_append_time=None,
                    log_start_offset=start,
                )
            )
        topics.append(kio_api.make(m.TopicProduceResponse, name=t.name, partition_responses=tuple(parts)))
    if appended:
        broker.notify_append()
    if request.acks == 0:
        # No response to carry an error: like Kafka, close the connection, so the client
        # notices (it reconnects and refreshes its metadata).
        session.close_after_response = failed
        return None
    return kio_api.make(m.ProduceResponse, responses=tuple(topics), throttle_time=kio_api.millis(0))


async def handle_init_producer_id(broker: Broker, session: Session, version: int, request: Any) -> Any:
    m = kio_api.module(INIT_PRODUCER_ID, version)
    if request.transactional_id is not None:
        return kio_api.make(
            m.InitProducerIdResponse,
            throttle_time=kio_api.millis(0),
            error_code=kio_api.error(TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            producer_id=-1,
            producer_epoch=-1,
        )
    pid = broker.producer_ids.next_id()
    return kio_api.make(
        m.InitProducerIdResponse,
        throttle_time=kio_api.millis(0),
        error_code=kio_api.error(NONE),
        producer_id=pid,
        producer_epoch=0,
    )


HANDLERS = {PRODUCE: handle_produce, INIT_PRODUCER_ID: handle_init_producer_id}
VERSIONS = {PRODUCE: (0, 7), INIT_PRODUCER_ID: (0, 1)}
