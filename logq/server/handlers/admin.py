"""Topic administration: CreateTopics (19; advertised 0-3, 2-3 implemented), DeleteTopics
(20; 0-3, 1-3 implemented), DeleteRecords (21; 0-1) and DescribeConfigs (32; 0-2, 1-2
implemented).

Topic configs travel under Kafka's names where logq has the same setting
(``KAFKA_NAMES``: ``retention.ms`` is ``retention_ms``...) and under logq's own names
otherwise (``fsync``, ``fsync_interval_ms``...). CreateTopics refuses an unknown name or a
bad value with INVALID_CONFIG (40), a replication factor above 1 with
INVALID_REPLICATION_FACTOR (38), an existing topic with TOPIC_ALREADY_EXISTS (36).
DescribeConfigs answers every setting of a topic (source 1, dynamic topic config, for the
topic's overrides; 5, default, for the rest) and an empty list for a broker.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from logq.config import LogConfig
from logq.errors import (
    ConfigError,
    InvalidTopicError,
    LogqError,
    OffsetOutOfRangeError,
    TopicExistsError,
    UnknownTopicError,
)
from logq.server import kio_api
from logq.server.context import Broker, Session

__all__ = ["HANDLERS", "KAFKA_NAMES", "VERSIONS"]

log = logging.getLogger("logq.server")

CREATE_TOPICS, DELETE_TOPICS, DELETE_RECORDS, DESCRIBE_CONFIGS = 19, 20, 21, 32
UNKNOWN_SERVER_ERROR = -1
OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40
RESOURCE_TOPIC, RESOURCE_BROKER = 2, 4
SOURCE_TOPIC, SOURCE_DEFAULT = 1, 5

KAFKA_NAMES = {
    "retention.ms": "retention_ms",
    "retention.bytes": "retention_bytes",
    "segment.bytes": "segment_bytes",
    "segment.ms": "segment_ms",
    "compression.type": "compression_type",
    "max.message.bytes": "max_batch_bytes",
    "segment.index.bytes": "segment_index_bytes",
    "index.interval.bytes": "index_interval_bytes",
}
_LOGQ_TO_KAFKA = {v: k for k, v in KAFKA_NAMES.items()}


def _parse_configs(configs: Any) -> dict[str, Any]:
    """Kafka (or logq) config names and string values as LogConfig overrides."""
    defaults = asdict(LogConfig())
    out: dict[str, Any] = {}
    for c in configs:
        name = KAFKA_NAMES.get(c.name, c.name)
        if name not in defaults:
            raise ConfigError(f"unknown topic config {c.name!r}")
        if c.value is None:
            continue
        kind = type(defaults[name])
        try:
            out[name] = kind(c.value) if kind is not bool else c.value.lower() == "true"
        except ValueError:
            raise ConfigError(f"{c.name}={c.value!r} is not a {kind.__name__}") from None
    LogConfig.from_dict(out)
    return out


def _create_one(broker: Broker, t: Any, validate_only: bool) -> tuple[int, str | None]:
    partitions = broker.config.default_partitions if t.num_partitions == -1 else t.num_partitions
    if t.replication_factor not in (-1, 1):
        return INVALID_REPLICATION_FACTOR, "one broker: the replication factor is 1"
    if t.assignments:
        return INVALID_REPLICATION_FACTOR, "manual replica assignments are not supported"
    try:
        overrides = _parse_configs(t.configs)
        if broker.registry.exists(t.name):
            return TOPIC_ALREADY_EXISTS, f"topic {t.name!r} already exists"
        if validate_only:
            return 0, None
        broker.registry.create(t.name, partitions, **{**broker.config.default_topic_config, **overrides})
    except TopicExistsError as e:
        return TOPIC_ALREADY_EXISTS, e.message
    except ConfigError as e:
        return INVALID_CONFIG, e.message
    except InvalidTopicError as e:
        code = INVALID_PARTITIONS if "partitions" in e.message else INVALID_TOPIC_EXCEPTION
        return code, e.message
    except LogqError as e:
        return UNKNOWN_SERVER_ERROR, e.message
    log.info("created topic %s with %d partition(s)", t.name, partitions)
    return 0, None


async def handle_create_topics(broker: Broker, session: Session, version: int, request: Any) -> Any:
    m = kio_api.module(CREATE_TOPICS, version)
    results = []
    for t in request.topics:
        error, message = _create_one(broker, t, request.validate_only)
        results.append(
            kio_api.make(m.CreatableTopicResult, name=t.name, error_code=kio_api.error(error), error_message=message)
        )
    return kio_api.make(m.CreateTopicsResponse, throttle_time=kio_api.millis(0), topics=tuple(results))


async def handle_delete_topics(broker: Broker, session: Session, version: int, request: Any) -> Any:
    m = kio_api.module(DELETE_TOPICS, version)
    results = []
    for name in request.topic_names:
        try:
            broker.delete_topic(name)
            error = 0
        except (UnknownTopicError, InvalidTopicError):
            error = UNKNOWN_TOPIC_OR_PARTITION
        except LogqError as e:
            log.warning("delete topic %s: %s", name, e)
            error = UNKNOWN_SERVER_ERROR
        results.append(kio_api.make(m.DeletableTopicResult, name=name, error_code=kio_api.error(error)))
    return kio_api.make(m.DeleteTopicsResponse, throttle_time=kio_api.millis(0), responses=tuple(results))


def _delete_records_one(broker: Broker, topic: str, partition: int, offset: int) -> tuple[int, int]:
    meta = broker.topic(topic)
    if meta is None or not 0 <= partition < meta.partitions:
        return UNKNOWN_TOPIC_OR_PARTITION, -1
    try:
        lg = broker.log(topic, partition)
        lg.delete_records_before(lg.log_end_offset if offset == -1 else offset)
        return 0, lg.log_start_offset
    except OffsetOutOfRangeError:
        return OFFSET_OUT_OF_RANGE, -1
    except LogqError as e:
        log.warning("delete records of %s-%d: %s", topic, partition, e)
        return UNKNOWN_SERVER_ERROR, -1


async def handle_delete_records(broker: Broker, session: Session, version: int, request: Any) -> Any:
    m = kio_api.module(DELETE_RECORDS, version)
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            error, low = _delete_records_one(broker, t.name, p.partition_index, p.offset)
            parts.append(
                kio_api.make(
                    m.DeleteRecordsPartitionResult,
                    partition_index=p.partition_index,
                    low_watermark=low,
                    error_code=kio_api.error(error),
                )
            )
        topics.append(kio_api.make(m.DeleteRecordsTopicResult, name=t.name, partitions=tuple(parts)))
    return kio_api.make(m.DeleteRecordsResponse, throttle_time=kio_api.millis(0), topics=tuple(topics))


def _config_entries(m: Any, broker: Broker, name: str, keys: Any) -> tuple[int, tuple[Any, ...]]:
    meta = broker.topic(name)
    if meta is None:
        return UNKNOWN_TOPIC_OR_PARTITION, ()
    entries = []
    for key, value in asdict(meta.config).items():
        kname = _LOGQ_TO_KAFKA.get(key, key)
        if keys is not None and kname not in keys and key not in keys:
            continue
        entries.append(
            kio_api.make(
                m.DescribeConfigsResourceResult,
                name=kname,
                value=str(value).lower() if isinstance(value, bool) else str(value),
                read_only=False,
                is_default=key not in meta.overrides,
                config_source=SOURCE_TOPIC if key in meta.overrides else SOURCE_DEFAULT,
                is_sensitive=False,
                synonyms=(),
            )
        )
    return 0, tuple(entries)


async def handle_describe_configs(broker: Broker, session: Session, version: int, request: Any) -> Any:
    m = kio_api.module(DESCRIBE_CONFIGS, version)
    results = []
    for r in request.resources:
        error, entries = 0, ()
        if r.resource_type == RESOURCE_TOPIC:
            error, entries = _config_entries(m, broker, r.resource_name, r.configuration_keys)
        results.append(
            kio_api.make(
                m.DescribeConfigsResult,
                error_code=kio_api.error(error),
                error_message=None,
                resource_type=r.resource_type,
                resource_name=r.resource_name,
                configs=entries,
            )
        )
    return kio_api.make(m.DescribeConfigsResponse, throttle_time=kio_api.millis(0), results=tuple(results))


HANDLERS = {
    CREATE_TOPICS: handle_create_topics,
    DELETE_TOPICS: handle_delete_topics,
    DELETE_RECORDS: handle_delete_records,
    DESCRIBE_CONFIGS: handle_describe_configs,
}
VERSIONS = {CREATE_TOPICS: (0, 3), DELETE_TOPICS: (0, 3), DELETE_RECORDS: (0, 1), DESCRIBE_CONFIGS: (0, 2)}
