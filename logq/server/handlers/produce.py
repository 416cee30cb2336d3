"""Produce (key 0; advertised 0-7, versions 3-7 implemented) and InitProducerId (key 22, 0-1).

Produce stores the client's batches as they are (RecordBatch v2; a compressed batch stays
compressed): ``PartitionLog.append_batch`` checks each one (structure, CRC, every record
parses, offset deltas 0, 1, 2...) and assigns its offsets. Per partition, under one lock:
the idempotence verdict (logq/server/idempotence.py), the append, then the producer state.

acks and durability (one broker: the leader is the whole in-sync replica set):

* ``acks=0``: appended, no response is sent; a partition that fails closes the
  connection instead (Kafka's way of telling such a producer);
* ``acks=1`` and ``acks=-1`` (all): the response is sent once the append meets the topic's
  durability: with ``fsync="always"`` after its fdatasync (run off the event loop), with
  ``"interval"`` or ``"never"`` once the batch is in the page cache (it survives ``kill -9``
  of the server, not a power loss).

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


async def _append_all(
    broker: Broker, topic: str, partition: int, batches: list[tuple[bytes, BatchHeader]]
) -> tuple[int, int]:
    """Under the partition's write lock: (error, base offset of the first batch)."""
    lg = broker.log(topic, partition)
    producers = broker.producers(topic, partition)
    first = -1
    always = lg.config.fsync == "always"
    for batch, h in batches:
        verdict = producers.check(h.producer_id, h.producer_epoch, h.base_sequence, h.last_offset_delta)
        if verdict.error:
            return verdict.error, -1
        if verdict.duplicate_of is not None:
            base = verdict.duplicate_of
        else:
            if always:  # the fdatasync must not stall the event loop
                res = await broker.loop.run_in_executor(None, lg.append_batch, batch)
            else:
                res = lg.append_batch(batch)
            base = res.base_offset
            producers.observe(h.producer_id, h.producer_epoch, h.base_sequence, h.last_offset_delta, base)
        if first < 0:
            first = base
    return NONE, first


async def produce_partition(broker: Broker, topic: str, partition: int, records: bytes | None) -> tuple[int, int, int]:
    """(error code, base offset, log start offset) of one partition's data."""
    meta = broker.topic(topic)
    if meta is None or not 0 <= partition < meta.partitions:
        return UNKNOWN_TOPIC_OR_PARTITION, -1, -1
    try:
        batches = split_batches(records, meta.config.max_batch_bytes)
        async with broker.write_lock(topic, partition):
            error, base = await _append_all(broker, topic, partition, batches)
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
