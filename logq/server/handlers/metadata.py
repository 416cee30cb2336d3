"""Metadata (key 3), versions 0-5 advertised and implemented.

One broker (node 0, the advertised host and port, an IPv4 literal for loopback) leads every
partition; replicas and ISR are ``[0]``. Topics a request names that do not exist are created
when the request allows it (v4+: ``allow_auto_topic_creation``; earlier versions always) and
the server has ``auto_create_topics`` on; otherwise they are answered with
UNKNOWN_TOPIC_OR_PARTITION (3). A null topic list (v0: an empty one) means every topic.
Fields a version does not carry (``leader_epoch`` -1 from v7, topic ids from v10) are dropped
by ``kio_api.make``, so the handler serves any version.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from logq.errors import InvalidTopicError, LogqError
from logq.server import kio_api
from logq.server.context import Broker, Session
from logq.storage.topics import TopicMeta

__all__ = ["HANDLERS", "VERSIONS", "topic_uuid"]

METADATA = 3
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17


def topic_uuid(meta: TopicMeta) -> uuid.UUID:
    """A logq topic id (base64url of 16 bytes, as Kafka prints ids) as a UUID."""
    try:
        raw = base64.urlsafe_b64decode(meta.topic_id + "=" * (-len(meta.topic_id) % 4))
        return uuid.UUID(bytes=raw) if len(raw) == 16 else uuid.UUID(int=0)
    except ValueError:
        return uuid.UUID(int=0)


def _requested(version: int, request: Any) -> list[str] | None:
    topics = request.topics
    if topics is None or (version == 0 and not topics):
        return None
    return [t.name for t in topics]


def _topic_entry(m: Any, name: str, meta: TopicMeta | None, error: int) -> Any:
    partitions = ()
    if meta is not None:
        partitions = tuple(
            kio_api.make(
                m.MetadataResponsePartition,
                error_code=kio_api.error(0),
                partition_index=p,
                leader_id=0,
                leader_epoch=-1,
                replica_nodes=(0,),
                isr_nodes=(0,),
                offline_replicas=(),
            )
            for p in range(meta.partitions)
        )
    return kio_api.make(
        m.MetadataResponseTopic,
        error_code=kio_api.error(error),
        name=name,
        topic_id=topic_uuid(meta) if meta is not None else uuid.UUID(int=0),
        is_internal=False,
        partitions=partitions,
    )


def _lookup(broker: Broker, name: str, create: bool) -> tuple[TopicMeta | None, int]:
    try:
        meta = broker.topic(name, create=create)
    except InvalidTopicError:
        return None, INVALID_TOPIC_EXCEPTION
    except LogqError:
        return None, UNKNOWN_TOPIC_OR_PARTITION
    return meta, 0 if meta is not None else UNKNOWN_TOPIC_OR_PARTITION


async def handle_metadata(broker: Broker, session: Session, version: int, request: Any) -> Any:
    m = kio_api.module(METADATA, version)
    names = _requested(version, request)
    create = getattr(request, "allow_auto_topic_creation", True) and names is not None
    topics = []
    for name in names if names is not None else broker.registry.names():
        meta, error = _lookup(broker, name, create)
        topics.append(_topic_entry(m, name, meta, error))
    brokers = (
        kio_api.make(
            m.MetadataResponseBroker,
            node_id=broker.node_id,
            host=broker.advertised_host,
            port=broker.advertised_port,
            rack=None,
        ),
    )
    return kio_api.make(
        m.MetadataResponse,
        throttle_time=kio_api.millis(0),
        brokers=brokers,
        cluster_id=broker.cluster_id,
        controller_id=broker.node_id,
        topics=tuple(topics),
    )


HANDLERS = {METADATA: handle_metadata}
VERSIONS = {METADATA: (0, 5)}
