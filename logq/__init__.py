"""logq: an embedded, Kafka-format append-only event log for Python.

The public surface is re-exported here; everything else is internal. ``AIOProducer``,
``AIOConsumer`` (asyncio) and ``Server`` (the Kafka-protocol broker, which loads kio) are
imported on first use, so ``import logq`` and every ``logq`` command stay quick for
programs that use neither.
"""

from typing import TYPE_CHECKING, Any

from logq.client.admin import Admin, GroupInfo, GroupPartitionInfo, PartitionInfo, TopicDescription
from logq.client.consumer import Consumer
from logq.client.producer import BatchMetadata, Producer, RecordFuture, RecordMetadata
from logq.client.request_reply import Replier, Requester
from logq.client.share_consumer import ShareConsumer
from logq.codec.batch import Compression
from logq.codec.columnar import RecordColumns
from logq.config import LogConfig
from logq.errors import (
    AuthenticationError,
    ClientClosedError,
    CommitFailedError,
    ConcurrentAccessError,
    ConfigError,
    CorruptIndexError,
    CorruptMetadataError,
    CorruptRecordError,
    CorruptTopicMetadataError,
    DeserializationError,
    DiskFullError,
    DumpArgumentError,
    ForkedClientError,
    GroupError,
    GroupNotEmptyError,
    GroupServedError,
    InvalidGroupIdError,
    InvalidOffsetCommitError,
    InvalidPartitionsError,
    InvalidRecordError,
    InvalidTopicError,
    LockTimeoutError,
    LogClosedError,
    LogFailedError,
    LogLockedError,
    LogqError,
    LogqTimeoutError,
    MemberIdInUseError,
    MissingPartitionError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    OffsetsWarning,
    ProducerBufferFullError,
    ProtocolError,
    ReadOnlyLogError,
    RecordsFailedError,
    RecordTooLargeError,
    SeekError,
    SerializationError,
    ShareAcknowledgementError,
    ShareStateCorruptError,
    StorageError,
    StoragePermissionError,
    TooManyOpenFilesError,
    TopicDeletedError,
    TopicExistsError,
    UnknownGroupError,
    UnknownPartitionError,
    UnknownTopicError,
    WorkloadError,
)
from logq.storage.log import AppendResult, FetchResult, PartitionLog, RecoveryReport
from logq.types import OffsetAndTimestamp, Record, ShareRecord, TopicPartition

if TYPE_CHECKING:
    from logq.aio import AIOConsumer, AIOProducer
    from logq.server.server import Server

_LAZY = {"AIOConsumer": "logq.aio", "AIOProducer": "logq.aio", "Server": "logq.server.server"}


def __getattr__(name: str) -> Any:
    """PEP 562: the names of ``_LAZY`` are imported when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'logq' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "AIOConsumer",
    "AIOProducer",
    "Admin",
    "AppendResult",
    "AuthenticationError",
    "BatchMetadata",
    "ClientClosedError",
    "CommitFailedError",
    "ConcurrentAccessError",
    "Compression",
    "ConfigError",
    "Consumer",
    "CorruptIndexError",
    "CorruptMetadataError",
    "CorruptRecordError",
    "DeserializationError",
    "DiskFullError",
    "DumpArgumentError",
    "ForkedClientError",
    "FetchResult",
    "GroupError",
    "GroupInfo",
    "GroupNotEmptyError",
    "GroupServedError",
    "GroupPartitionInfo",
    "InvalidGroupIdError",
    "InvalidOffsetCommitError",
    "InvalidRecordError",
    "InvalidTopicError",
    "LockTimeoutError",
    "LogClosedError",
    "LogConfig",
    "LogFailedError",
    "LogLockedError",
    "LogqError",
    "LogqTimeoutError",
    "MemberIdInUseError",
    "NoOffsetForPartitionError",
    "OffsetAndTimestamp",
    "OffsetOutOfRangeError",
    "OffsetsWarning",
    "PartitionInfo",
    "PartitionLog",
    "Producer",
    "ProducerBufferFullError",
    "ProtocolError",
    "ReadOnlyLogError",
    "Record",
    "RecordFuture",
    "RecordMetadata",
    "RecordColumns",
    "RecordTooLargeError",
    "RecordsFailedError",
    "RecoveryReport",
    "SeekError",
    "SerializationError",
    "Server",
    "ShareAcknowledgementError",
    "Replier",
    "Requester",
    "ShareConsumer",
    "ShareRecord",
    "ShareStateCorruptError",
    "StorageError",
    "TopicDescription",
    "TopicExistsError",
    "TopicPartition",
    "UnknownTopicError",
    "WorkloadError",
    "__version__",
    "CorruptTopicMetadataError",
    "MissingPartitionError",
    "StoragePermissionError",
    "TooManyOpenFilesError",
    "UnknownPartitionError",
    "InvalidPartitionsError",
    "UnknownGroupError",
    "TopicDeletedError",
]
