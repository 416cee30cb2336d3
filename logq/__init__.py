"""logq: an embedded, Kafka-format append-only event log for Python.

The public surface is re-exported here; everything else is internal.
"""

from logq.client.admin import Admin, GroupInfo, GroupPartitionInfo, PartitionInfo, TopicDescription
from logq.client.consumer import Consumer
from logq.client.producer import BatchMetadata, Producer, RecordFuture, RecordMetadata
from logq.codec.batch import Compression
from logq.config import LogConfig
from logq.errors import (
    CommitFailedError,
    ConfigError,
    CorruptIndexError,
    CorruptMetadataError,
    CorruptRecordError,
    DiskFullError,
    GroupError,
    GroupNotEmptyError,
    InvalidTopicError,
    LogClosedError,
    LogFailedError,
    LogLockedError,
    LogqError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    ProducerBufferFullError,
    RecordTooLargeError,
    SerializationError,
    StorageError,
    TopicExistsError,
    UnknownTopicError,
)
from logq.storage.log import AppendResult, FetchResult, PartitionLog, RecoveryReport
from logq.types import OffsetAndTimestamp, Record, TopicPartition

__version__ = "0.1.0"

__all__ = [
    "Admin",
    "AppendResult",
    "BatchMetadata",
    "CommitFailedError",
    "Compression",
    "ConfigError",
    "Consumer",
    "CorruptIndexError",
    "CorruptMetadataError",
    "CorruptRecordError",
    "DiskFullError",
    "FetchResult",
    "GroupError",
    "GroupInfo",
    "GroupNotEmptyError",
    "GroupPartitionInfo",
    "InvalidTopicError",
    "LogClosedError",
    "LogConfig",
    "LogFailedError",
    "LogLockedError",
    "LogqError",
    "NoOffsetForPartitionError",
    "OffsetAndTimestamp",
    "OffsetOutOfRangeError",
    "PartitionInfo",
    "PartitionLog",
    "Producer",
    "ProducerBufferFullError",
    "Record",
    "RecordFuture",
    "RecordMetadata",
    "RecordTooLargeError",
    "RecoveryReport",
    "SerializationError",
    "StorageError",
    "TopicDescription",
    "TopicExistsError",
    "TopicPartition",
    "UnknownTopicError",
    "__version__",
]
