"""Fetch (key 1; advertised 0-11, versions 4-11 implemented).

Stored batches are served as they are in the segment (no decoding, no recompression): the
bytes ``PartitionLog.read`` returns, whole batches from the one that holds the fetch offset
(the client skips the records below its position), at least one batch for the first
partition with data even above ``partition_max_bytes`` or ``max_bytes`` (KIP-74), then up
to those limits.

Long polls: while fewer than ``min_bytes`` are ready and ``max_wait_ms`` (capped by the
server's ``max_fetch_wait_ms``) has not passed, the fetch waits on the broker's append
signal (an append through this server, or an inotify event from another process writing
one of the fetched partitions) and reads again: woken by appends, not by a timer.

Fetch sessions (KIP-227) are not kept: every response says ``session_id`` 0 ("no
session"), so clients send full fetches; a request naming a session gets
FETCH_SESSION_ID_NOT_FOUND (70). ``high_watermark`` and ``last_stable_offset`` are the log
end offset (no replication, no transactions), ``log_start_offset`` the log's start.
Errors per partition: UNKNOWN_TOPIC_OR_PARTITION (3), OFFSET_OUT_OF_RANGE (1),
CORRUPT_MESSAGE (2) for a damaged stored batch, KAFKA_STORAGE_ERROR (56).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from logq.errors import CorruptRecordError, LogqError, OffsetOutOfRangeError, UnknownTopicError
from logq.server import kio_api
from logq.server.context import Broker, Session
from logq.storage.topics import partition_path

__all__ = ["HANDLERS", "VERSIONS"]

log = logging.getLogger("logq.server")

FETCH = 1
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
KAFKA_STORAGE_ERROR = 56
FETCH_SESSION_ID_NOT_FOUND = 70


@dataclass
class _Part:
    topic: str
    partition: int
    error: int = 0
    high_watermark: int = -1
    log_start_offset: int = -1
    records: bytes = b""


def _read_partition(broker: Broker, topic: str, p: Any, budget: int, first: bool) -> _Part:
    out = _Part(topic, p.partition)
    meta = broker.topic(topic)
    if meta is None or not 0 <= p.partition < meta.partitions:
        out.error = UNKNOWN_TOPIC_OR_PARTITION
        return out
    try:
        lg = broker.reader(topic, p.partition)
        limit = min(p.partition_max_bytes, budget)
        if limit <= 0 and not first:
            out.high_watermark = lg.log_end_offset
        else:
            res = lg.read(p.fetch_offset, max(limit, 1))
            out.records = res.data
            out.high_watermark = res.log_end_offset if res.log_end_offset >= 0 else lg.log_end_offset
        out.log_start_offset = lg.log_start_offset
    except OffsetOutOfRangeError as e:
        out.error = OFFSET_OUT_OF_RANGE
        out.high_watermark, out.log_start_offset = e.log_end, e.log_start
    except UnknownTopicError:
        out.error = UNKNOWN_TOPIC_OR_PARTITION
    except CorruptRecordError as e:
        log.warning("fetch from %s-%d: %s", topic, p.partition, e)
        out.error = CORRUPT_MESSAGE
    except LogqError as e:
        log.warning("fetch from %s-%d: %s", topic, p.partition, e)
        out.error = KAFKA_STORAGE_ERROR
    return out


def read_all(broker: Broker, request: Any) -> tuple[list[_Part], int]:
    """One pass over the requested partitions: their data and the bytes gathered."""
    parts: list[_Part] = []
    total = 0
    budget = min(request.max_bytes, broker.config.max_fetch_response_bytes)
    for t in request.topics:
        for p in t.partitions:
            part = _read_partition(broker, t.topic, p, budget - total, first=total == 0)
            parts.append(part)
            total += len(part.records)
    return parts, total


def _dirs(broker: Broker, request: Any) -> list[str]:
    return [partition_path(broker.data_dir, t.topic, p.partition) for t in request.topics for p in t.partitions]


def _response(version: int, parts: list[_Part], error: int = 0) -> Any:
    m = kio_api.module(FETCH, version)
    by_topic: dict[str, list[Any]] = {}
    for part in parts:
        by_topic.setdefault(part.topic, []).append(
            kio_api.make(
                m.PartitionData,
                partition_index=part.partition,
                error_code=kio_api.error(part.error),
                high_watermark=part.high_watermark,
                last_stable_offset=part.high_watermark,
                log_start_offset=part.log_start_offset,
                aborted_transactions=None,
                preferred_read_replica=-1,
                records=part.records,
            )
        )
    topics = tuple(kio_api.make(m.FetchableTopicResponse, topic=t, partitions=tuple(ps)) for t, ps in by_topic.items())
    return kio_api.make(
        m.FetchResponse,
        throttle_time=kio_api.millis(0),
        error_code=kio_api.error(error),
        session_id=0,
        responses=topics,
    )


async def handle_fetch(broker: Broker, session: Session, version: int, request: Any) -> Any:
    if getattr(request, "session_id", 0) != 0:
        return _response(version, [], FETCH_SESSION_ID_NOT_FOUND)
    wait_s = min(kio_api.timestamp_ms(request.max_wait), broker.config.max_fetch_wait_ms) / 1000
    deadline = time.monotonic() + max(wait_s, 0.0)
    parts, total = read_all(broker, request)
    dirs: list[str] | None = None
    while total < max(request.min_bytes, 1) and not any(p.error for p in parts):
        if broker.closing or session.closed:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if dirs is None:
            dirs = _dirs(broker, request)
        await broker.wait_for_append(left, dirs)
        parts, total = read_all(broker, request)
    return _response(version, parts)


HANDLERS = {FETCH: handle_fetch}
VERSIONS = {FETCH: (0, 11)}
