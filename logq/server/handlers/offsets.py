"""ListOffsets (key 2; advertised 0-3, versions 1-3 implemented).

Per partition, ``timestamp`` -2 is the earliest offset (the log start), -1 the latest (the
log end, also the last stable offset: no transactions), and any other T the first offset
whose record timestamp is >= T (Kafka's rule, through the time index), answered with that
record's timestamp; offset and timestamp -1 when no record is that recent.
"""

from __future__ import annotations

from typing import Any

from logq.errors import LogqError
from logq.server import kio_api
from logq.server.context import Broker, Session

__all__ = ["HANDLERS", "VERSIONS"]

LIST_OFFSETS = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
KAFKA_STORAGE_ERROR = 56
LATEST = -1
EARLIEST = -2


def lookup(broker: Broker, topic: str, partition: int, timestamp: int) -> tuple[int, int, int]:
    """(error, offset, timestamp) for one partition."""
    meta = broker.topic(topic)
    if meta is None or not 0 <= partition < meta.partitions:
        return UNKNOWN_TOPIC_OR_PARTITION, -1, -1
    try:
        lg = broker.reader(topic, partition)
        if timestamp == LATEST:
            return 0, lg.log_end_offset, -1
        if timestamp == EARLIEST:
            return 0, lg.log_start_offset, -1
        offset = lg.offset_for_timestamp(timestamp)
        if offset is None:
            return 0, -1, -1
        for rec in lg.read(offset, 1).records():
            if rec.offset == offset:
                return 0, offset, rec.timestamp
        return 0, offset, timestamp
    except LogqError:
        return KAFKA_STORAGE_ERROR, -1, -1


async def handle_list_offsets(broker: Broker, session: Session, version: int, request: Any) -> Any:
    m = kio_api.module(LIST_OFFSETS, version)
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            error, offset, ts = lookup(broker, t.name, p.partition_index, p.timestamp)
            parts.append(
                kio_api.make(
                    m.ListOffsetsPartitionResponse,
                    partition_index=p.partition_index,
                    error_code=kio_api.error(error),
                    timestamp=ts,
                    offset=offset,
                    leader_epoch=-1,
                )
            )
        topics.append(kio_api.make(m.ListOffsetsTopicResponse, name=t.name, partitions=tuple(parts)))
    return kio_api.make(m.ListOffsetsResponse, throttle_time=kio_api.millis(0), topics=tuple(topics))


HANDLERS = {LIST_OFFSETS: handle_list_offsets}
VERSIONS = {LIST_OFFSETS: (0, 3)}
