"""Metadata (key 3), versions 0-12 advertised and implemented.

One broker (node 0, the advertised host and port, an IPv4 literal for loopback) leads every
partition; replicas and ISR are ``[0]``. Topics a request names that do not exist are created
when the request allows it (v4+: ``allow_auto_topic_creation``; earlier versions always) and
the server has ``auto_create_topics`` on; otherwise they are answered with
UNKNOWN_TOPIC_OR_PARTITION (3). A null topic list (v0: an empty one) means every topic.
Fields a version does not carry (``leader_epoch`` -1 from v7, topic ids from v10) are dropped
by ``kio_api.make``, so the handler serves any version. Topic ids are logq's (see
``topic_uuid``); from v10 a request may name topics by id (librdkafka's share consumer does,
with v12, to resolve the ids of a ShareGroupHeartbeat assignment): an unknown id is answered
UNKNOWN_TOPIC_ID (100) with a null name. Authorized operations are "not provided"
(-2147483648), as Kafka answers when they are not asked for.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from logq.errors import InvalidTopicError, LogqError
from logq.server import kio_api
from logq.server.context import Broker, Session
from logq.storage.topics import TopicMeta

__all__ = ["HANDLERS", "VERSIONS", "topic_by_id", "topic_uuid"]

METADATA = 3
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
UNKNOWN_TOPIC_ID = 100
NO_OPERATIONS = -2147483648  # authorized operations not provided


def topic_uuid(meta: TopicMeta) -> uuid.UUID:
    """A logq topic id (base64url of 16 bytes, as Kafka prints ids) as a UUID."""
    try:
        raw = base64.urlsafe_b64decode(meta.topic_id + "=" * (-len(meta.topic_id) % 4))
        return uuid.UUID(bytes=raw) if len(raw) == 16 else uuid.UUID(int=0)
    except ValueError:
        return uuid.UUID(int=0)


def _requested(version: int, request: Any) -> list[str | uuid.UUID] | None:
    """Names asked for (a topic id where a v10+ request names none); None: every topic."""
    topics = request.topics
    if topics is None or (version == 0 and not topics):
        return None
    out: list[str | uuid.UUID] = []
    for t in topics:
        tid = getattr(t, "topic_id", None)
        out.append(t.name if t.name is not None or tid is None else tid)
    return out


def topic_by_id(broker: Broker, topic_id: uuid.UUID) -> TopicMeta | None:
    """The topic whose id is ``topic_id`` (None when no topic has it). Ids seen are remembered
    (``broker.extensions["topic_ids"]``: id -> name), each hit checked against the disk, so a
    share fetch costs one stat per topic, not one per topic of the data directory."""
    known: dict[uuid.UUID, str] = broker.extensions.setdefault("topic_ids", {})
    name = known.get(topic_id)
    if name is not None:
        meta = broker.topic(name)
        if meta is not None and topic_uuid(meta) == topic_id:
            return meta
        del known[topic_id]  # deleted, or deleted and created again (a new id)
    known.clear()  # rebuilt from the topics there are now
    for name in broker.registry.names():
        meta = broker.topic(name)
        if meta is not None:
            known[topic_uuid(meta)] = name
            if topic_uuid(meta) == topic_id:
                return meta
    return None


def _topic_entry(m: Any, name: str | None, meta: TopicMeta | None, error: int) -> Any:
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
        topic_authorized_operations=NO_OPERATIONS,
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
        if isinstance(name, uuid.UUID):
            meta = topic_by_id(broker, name)
            entry_name = meta.name if meta is not None else None
            topics.append(_topic_entry(m, entry_name, meta, 0 if meta is not None else UNKNOWN_TOPIC_ID))
            continue
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
        cluster_authorized_operations=NO_OPERATIONS,
        error_code=kio_api.error(0),
    )


HANDLERS = {METADATA: handle_metadata}
VERSIONS = {METADATA: (0, 12)}
