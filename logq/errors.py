"""The logq exception hierarchy.

Every failure a caller can cause or meet is a :class:`LogqError`. Leaves carry the
structured facts (path, position, offsets) as attributes and a ``hint`` that says what to
do. ``str(err)`` is one line: what went wrong, then the hint, so the CLI can print it as is.
"""

from __future__ import annotations

import errno
import os
import resource
from typing import Any

__all__ = [
    "LogqError",
    "ConfigError",
    "InvalidTopicError",
    "UnknownTopicError",
    "TopicExistsError",
    "RecordTooLargeError",
    "OffsetOutOfRangeError",
    "CorruptRecordError",
    "CorruptIndexError",
    "CorruptMetadataError",
    "StorageError",
    "DiskFullError",
    "LogFailedError",
    "LogClosedError",
    "LogLockedError",
    "LockTimeoutError",
    "LogqTimeoutError",
    "ClientClosedError",
    "ProducerBufferFullError",
    "SerializationError",
    "GroupError",
    "GroupNotEmptyError",
    "CommitFailedError",
    "NoOffsetForPartitionError",
]


class LogqError(Exception):
    """Root of every error logq raises on purpose. Catch this to catch them all."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        if hint is not None:
            self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(LogqError, ValueError):
    """A setting is outside its allowed range or of the wrong type."""

    hint = "check the value against docs/guide.md"


class InvalidTopicError(LogqError, ValueError):
    """A topic name breaks Kafka's rule, or a partition number is out of range."""

    hint = "topic names are 1-249 characters of [a-zA-Z0-9._-], not '.' or '..'"

    def __init__(self, name: object, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"invalid topic {name!r}: {reason}")


class UnknownTopicError(LogqError, KeyError):
    hint = "create it first with Admin.create_topic or `logq topics create`"

    def __init__(self, topic: str) -> None:
        self.topic = topic
        super().__init__(f"topic {topic!r} does not exist")

    def __str__(self) -> str:  # KeyError would quote the message
        return LogqError.__str__(self)


class TopicExistsError(LogqError):
    hint = "pick another name, or delete the topic first"

    def __init__(self, topic: str) -> None:
        self.topic = topic
        super().__init__(f"topic {topic!r} already exists")


class RecordTooLargeError(LogqError, ValueError):
    """A batch is larger than the log accepts; nothing was written."""

    def __init__(
        self,
        size: int,
        limit: int,
        what: str = "batch",
        *,
        setting: str = "max_batch_bytes",
        where: str = "",
        hint: str | None = None,
    ) -> None:
        self.size = size
        self.limit = limit
        self.setting = setting  # the configured limit that refused it: max_batch_bytes or buffer_bytes
        super().__init__(
            f"{what} of {size} bytes exceeds {setting}={limit}{where}",
            hint=hint or "send smaller records or raise max_batch_bytes",
        )


class OffsetOutOfRangeError(LogqError, IndexError):
    """An offset outside [log start, log end] was asked for."""

    def __init__(self, offset: int, log_start: int, log_end: int, where: str = "") -> None:
        self.offset = offset
        self.log_start = log_start
        self.log_end = log_end
        place = f" in {where}" if where else ""
        super().__init__(
            f"offset {offset} is out of range [{log_start}, {log_end}]{place}",
            hint="seek to an offset inside the range (retention may have removed older data)",
        )


class CorruptRecordError(LogqError):
    """Bytes that should hold a valid batch do not. ``path`` is None for in-memory decoding."""

    hint = "data before this position stays readable; `logq dump` shows the damage"

    def __init__(self, reason: str, *, path: str | None = None, position: int | None = None) -> None:
        self.reason = reason
        self.path = path
        self.position = position
        where = ""
        if path is not None:
            where = f" in {path}"
        if position is not None:
            where += f" at byte {position}"
        super().__init__(f"corrupt record batch{where}: {reason}")


class CorruptIndexError(LogqError):
    hint = "indexes are derived data: reopening the log rebuilds them"

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"corrupt index {path}: {reason}")


class CorruptMetadataError(LogqError):
    """A metadata file (partition state, group offsets) failed its checksum or parse."""

    hint = "logq falls back to the previous good copy when one exists"

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"corrupt metadata file {path}: {reason}")


class StorageError(LogqError, OSError):
    """The operating system refused an I/O operation. ``errno`` and ``path`` are set."""

    hint = "check the disk, permissions and free space"

    def __init__(self, op: str, path: str, cause: OSError) -> None:
        self.op = op
        self.path = path
        self.cause = cause
        LogqError.__init__(self, f"{op} failed on {path}: {cause.strerror or cause}")
        self.errno = cause.errno
        self.filename = path

    def __str__(self) -> str:
        return LogqError.__str__(self)

    def __reduce__(self) -> Any:
        return (type(self), (self.op, self.path, self.cause))


class DiskFullError(StorageError):
    hint = "free space (retention, or delete files); appends resume at the next offset"


def storage_error(op: str, path: str, cause: OSError) -> StorageError:
    """Wrap an OSError in the right logq leaf."""
    if cause.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(op, path, cause)
    if cause.errno in (errno.EMFILE, errno.ENFILE):
        return TooManyOpenFilesError(op, path, cause)
    if cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StoragePermissionError(op, path, cause)
    return StorageError(op, path, cause)


class LogFailedError(LogqError):
    """An fsync failed earlier; the log refuses work until it is reopened and recovered."""

    hint = "close and reopen the log; it recovers from what is really on disk"

    def __init__(self, path: str, cause: BaseException | None) -> None:
        self.path = path
        self.cause = cause
        super().__init__(f"log {path} is in a failed state after: {cause}")


class LogClosedError(LogqError):
    hint = "open a new instance"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is closed")


class ClientClosedError(LogClosedError):
    """A Producer, Consumer or GroupMember was used after ``close()``.

    A LogClosedError too, so code written when clients raised that keeps working.
    """

    hint = "create a new client; a closed one cannot be reopened"

    def __init__(self, client: str) -> None:
        self.client = client
        super().__init__(client)


class LogLockedError(LogqError):
    hint = "another process holds the lock; wait for it or stop it"

    def __init__(self, path: str, what: str) -> None:
        self.path = path
        super().__init__(f"{what} is locked: {path}")


class LockTimeoutError(LogLockedError, TimeoutError):
    """A bounded wait for a lock (the group lock) ran out; also a builtin TimeoutError."""

    hint = "another member holds the group lock; retry, or raise lock_timeout_ms"

    def __init__(self, path: str, what: str, waited_ms: float) -> None:
        self.waited_ms = waited_ms
        super().__init__(path, f"{what} (waited {waited_ms:.0f} ms)")

    def __str__(self) -> str:  # OSError's __str__ would come next in the MRO
        return LogqError.__str__(self)


class LogqTimeoutError(LogqError, TimeoutError):
    """A call that takes a ``timeout`` ran out of time; also a builtin TimeoutError.

    ``operation`` names the wait, ``timeout`` is the limit in seconds. Nothing was lost:
    the work the caller waited for goes on (records stay queued and are written).
    """

    hint = "wait longer, or call flush() to write queued records now"

    def __init__(self, operation: str, timeout: float | None, detail: str = "", *, hint: str | None = None) -> None:
        self.operation = operation
        self.timeout = timeout
        self.detail = detail
        extra = f": {detail}" if detail else ""
        super().__init__(f"{operation} did not finish within {timeout} s{extra}", hint=hint)

    def __str__(self) -> str:  # OSError's __str__ would come next in the MRO
        return LogqError.__str__(self)


class ProducerBufferFullError(LogqError):
    hint = "raise buffer_bytes or max_block_ms, or send more slowly"

    def __init__(self, buffer_bytes: int, waited_ms: float) -> None:
        self.buffer_bytes = buffer_bytes
        self.waited_ms = waited_ms
        super().__init__(f"producer buffer of {buffer_bytes} bytes stayed full for {waited_ms:.0f} ms")


class SerializationError(LogqError, TypeError):
    """A key, value or header could not be turned into bytes (``__cause__``: the serializer's error)."""

    hint = "pass bytes, or configure key_serializer / value_serializer"


class GroupError(LogqError):
    """Consumer-group coordination failed."""


class GroupNotEmptyError(GroupError):
    hint = "stop the group's consumers first (offsets can only be reset while it is empty)"

    def __init__(self, group: str, members: int, *, hint: str | None = None) -> None:
        self.group = group
        self.members = members
        super().__init__(f"group {group!r} has {members} live member(s)", hint=hint)


class UnknownGroupError(GroupError, KeyError):
    """A consumer group that does not exist (Kafka's GroupIdNotFoundException)."""

    hint = "`logq groups list` lists the groups"

    def __init__(self, group: str, *, kind: str = "consumer group", hint: str | None = None) -> None:
        self.group = group
        super().__init__(f"{kind} {group!r} does not exist", hint=hint)

    def __str__(self) -> str:  # KeyError would quote the message
        return LogqError.__str__(self)


class CommitFailedError(GroupError):
    hint = "the partition was reassigned; records since the last commit will be redelivered"


class NoOffsetForPartitionError(LogqError):
    hint = "set auto_offset_reset to 'earliest' or 'latest', or seek explicitly"

    def __init__(self, topic: str, partition: int, reason: str) -> None:
        self.topic = topic
        self.partition = partition
        super().__init__(f"no valid offset for {topic}-{partition}: {reason}")


# --- consumer groups, offsets and serde (logq/groups/member.py, logq/groups/offsets.py, logq/client/serde.py) ---


class DeserializationError(SerializationError, ValueError):
    """Stored bytes could not be turned back into a value by the configured deserializer."""

    hint = "read the record with the bytes deserializer to inspect it, or fix value_deserializer"

    def __init__(
        self,
        message: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        hint: str | None = None,
    ) -> None:
        # where the record is, when a consumer raised it: ``seek((topic, partition), offset + 1)`` skips it
        self.topic = topic
        self.partition = partition
        self.offset = offset
        super().__init__(message, hint=hint)


class InvalidGroupIdError(GroupError, ValueError):
    """A group id or member id cannot be used as a directory or file name."""

    hint = "group and member ids are 1-249 characters of [a-zA-Z0-9._-], not '.' or '..'"

    def __init__(self, kind: str, value: object, reason: str) -> None:
        self.kind = kind
        self.value = value
        super().__init__(f"invalid {kind} {value!r}: {reason}")


class MemberIdInUseError(GroupError):
    """Another live member of the group already uses this member id."""

    hint = "let logq generate the member id, or stop the other member first"

    def __init__(self, group: str, member_id: str) -> None:
        self.group = group
        self.member_id = member_id
        super().__init__(f"member id {member_id!r} is already in use in group {group!r}")


class GroupServedError(GroupError):
    """The group is coordinated by `logq serve` for network (Kafka-client) members, or has
    live embedded members when a second coordinator wants it: one group is either embedded
    or served at a time (docs/server.md, "Consumer groups")."""

    hint = "use another group id, or stop the group's network consumers (or the other server) first"

    def __init__(self, group: str, reason: str) -> None:
        self.group = group
        self.reason = reason
        super().__init__(f"group {group!r} cannot be joined here: {reason}")


class InvalidOffsetCommitError(GroupError, ValueError):
    """A commit names an offset that can not be right (negative, or beyond the log end)."""

    hint = "commit the next offset to read (last processed + 1), at most the log end offset"

    def __init__(self, topic: str, partition: int, offset: object, reason: str) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.reason = reason
        super().__init__(f"refused commit of offset {offset!r} for {topic}-{partition}: {reason}")


class OffsetsWarning(LogqError, UserWarning):
    """A committed-offsets file was damaged, or an offset was clamped (a warning, not raised).

    Issued with ``warnings.warn``; ``warnings.simplefilter("error", OffsetsWarning)`` turns
    it into an exception that ``except LogqError`` catches.
    """


# --- command-line input (logq/cli/seek.py, logq/cli/dump.py) ---


class SeekError(LogqError, ValueError):
    """Malformed option value, or a plan that cannot be made (shift of nothing committed).

    No hint: the CLI prints ``str(err)`` after the option name, and the message already
    says what form was expected.
    """


class DumpArgumentError(LogqError, ValueError):
    """A path given to ``dump`` is missing or is not a segment file or partition directory.

    No hint: ``logq dump`` prints ``str(err)`` as its usage error, which names the path.
    """


__all__ += [
    "DeserializationError",
    "InvalidGroupIdError",
    "MemberIdInUseError",
    "GroupServedError",
    "InvalidOffsetCommitError",
    "OffsetsWarning",
    "SeekError",
    "DumpArgumentError",
]


class ReadOnlyLogError(LogqError):
    """A write (append) to a partition log opened with ``readonly=True``."""

    hint = "open the log without readonly=True to append"

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"log {path} is opened read-only")


__all__ += ["ReadOnlyLogError"]


class WorkloadError(LogqError):
    """A ``logq perf`` workload could not finish: a spawned producer or consumer process
    failed or overstayed its deadline, or a measured answer failed its own check.

    No hint: the message names the process and its exit code, or the wrong answer.
    """


__all__ += ["WorkloadError"]


class InvalidRecordError(LogqError, ValueError):
    """Records that cannot be encoded as a batch: none at all, a key, value or header that
    is not bytes, a timestamp outside int64, or a codec logq does not write."""

    hint = "pass (key, value, headers, timestamp_ms) with bytes or None and integer milliseconds"


__all__ += ["InvalidRecordError"]


class RecordsFailedError(LogqError):
    """``flush()`` (or ``close()``) found records that could not be written since the last flush.

    ``count`` is how many; ``first`` the first error met (also ``__cause__``). Each future
    of a failed record raises its own error; every failure was logged once when it happened.
    """

    hint = "each failed future's exception() says why; fix that and send them again"

    def __init__(self, count: int, first: BaseException | None) -> None:
        self.count = count
        self.first = first
        super().__init__(f"{count} record(s) could not be written since the last flush: {first}")


class ForkedClientError(ClientClosedError):
    """A Producer (or Consumer) created before ``os.fork()`` was used in the child process.

    Its threads and locks did not cross the fork and its unwritten records belong to the
    parent (which writes them), so the child's copy refuses every call.
    """

    hint = "create a new Producer or Consumer in the child process"

    def __init__(self, what: str, parent_pid: int) -> None:
        self.what = self.client = what
        self.parent_pid = parent_pid
        LogqError.__init__(self, f"this {what} was created in process {parent_pid} and cannot be used after os.fork()")


class ConcurrentAccessError(LogqError, RuntimeError):
    """A Consumer was called from a second thread while another thread was inside one of its calls.

    A Consumer is not safe for multi-threaded access (as in Kafka's clients); only
    ``wakeup()`` and ``close()`` may be called from another thread.
    """

    hint = "use one Consumer per thread, or hand it over between calls; wakeup() and close() are thread-safe"


__all__ += ["RecordsFailedError", "ForkedClientError", "ConcurrentAccessError"]


# --- partitions, resources, permissions and topic metadata (logq/storage/topics.py, files.py) ---


class UnknownPartitionError(InvalidTopicError):
    """A partition number a topic does not have (or one that is not an int).

    An InvalidTopicError too, so code written when out-of-range partitions raised that keeps
    working; ``topic``, ``partition`` and ``partitions`` (the topic's count) are set.
    """

    def __init__(self, topic: str, partition: object, partitions: int) -> None:
        self.topic = topic
        self.partition = partition
        self.partitions = partitions
        self.name = topic
        have = f"0-{partitions - 1}" if partitions > 1 else "0"
        if isinstance(partition, int) and not isinstance(partition, bool):
            self.reason = f"it has {partitions} ({have})"
            message = f"topic {topic!r} has no partition {partition} ({self.reason})"
        else:
            self.reason = f"a partition is an int, not {type(partition).__name__}"
            message = f"invalid partition {partition!r} of topic {topic!r}: {self.reason}"
        LogqError.__init__(
            self, message, hint=f"use a partition from {have}; `logq topics describe {topic}` lists them"
        )


class InvalidPartitionsError(InvalidTopicError):
    """A new partition count a topic cannot take (Kafka's InvalidPartitionsException).

    Partitions can only be added; ``topic``, ``partitions`` (the count it has) and
    ``requested`` are set.
    """

    def __init__(self, topic: str, partitions: int, requested: object, limit: int) -> None:
        self.topic = topic
        self.name = topic
        self.partitions = partitions
        self.requested = requested
        self.reason = f"it has {partitions} partition(s); partitions can only be added, up to {limit} per topic"
        LogqError.__init__(
            self,
            f"cannot give topic {topic!r} {requested!r} partitions: {self.reason}",
            hint="ask for an int above the current count, or create a new topic to have fewer",
        )


class MissingPartitionError(StorageError):
    """A partition's directory is gone while its topic still lists it (removed by hand).

    ``topic`` and ``partition`` are read from the directory name (None if it is not one).
    """

    def __init__(self, op: str, path: str, cause: OSError) -> None:
        super().__init__(op, path, cause)
        base = os.path.basename(path.rstrip("/"))
        topic, _, num = base.rpartition("-")
        self.topic: str | None = topic if topic and num.isdigit() else None
        self.partition: int | None = int(num) if self.topic else None
        if self.topic is not None:
            self.message = f"partition {base!r} has no directory: {path} does not exist"
            self.hint = (
                f"if topic {self.topic!r} still exists its partition directory was removed: restore it from a "
                f"backup, or run `logq topics repair {self.topic}` to recreate it empty"
            )
        else:
            self.message = f"directory {path} does not exist"
            self.hint = "it was removed, or the path is wrong"
        self.args = (self.message,)

    def __reduce__(self) -> Any:
        return (type(self), (self.op, self.path, self.cause))


class TooManyOpenFilesError(StorageError):
    """The process (EMFILE) or the system (ENFILE) ran out of file descriptors.

    ``limit`` and ``hard_limit`` are this process's RLIMIT_NOFILE when it happened.
    """

    def __init__(self, op: str, path: str, cause: OSError) -> None:
        super().__init__(op, path, cause)
        self.limit, self.hard_limit = resource.getrlimit(resource.RLIMIT_NOFILE)
        soft = "unlimited" if self.limit == resource.RLIM_INFINITY else str(self.limit)
        hard = "unlimited" if self.hard_limit == resource.RLIM_INFINITY else str(self.hard_limit)
        if cause.errno == errno.ENFILE:
            self.message = f"{op} failed on {path}: the system-wide limit on open files (fs.file-max) is reached"
            self.hint = "raise fs.file-max (sysctl), or close other programs' files; logq opens fewer partitions"
        else:
            self.message = (
                f"{op} failed on {path}: too many open files (this process's limit RLIMIT_NOFILE "
                f"is {soft}, hard limit {hard})"
            )
            self.hint = (
                "raise the limit (`ulimit -n <n>` in the shell, LimitNOFILE= in a systemd unit, or "
                "resource.setrlimit(resource.RLIMIT_NOFILE, ...) up to the hard limit), or open fewer "
                "partitions at once (fewer partitions per Producer or Consumer, a lower max_open_segments)"
            )
        self.args = (self.message,)

    def __reduce__(self) -> Any:
        return (type(self), (self.op, self.path, self.cause))


class StoragePermissionError(StorageError):
    """The user running logq may not write (or read) a file of the data directory
    (EACCES, EPERM, or EROFS: a read-only file system)."""

    hint = (
        "run as the data directory's owner; reading needs no write access (a Consumer without "
        "group_id, topics list/describe, offsets, groups describe, dump); to share read access "
        "with a group see shared_read in docs/durability.md"
    )


class CorruptTopicMetadataError(CorruptMetadataError):
    """A topic's metadata file (and its backup copy) failed its checksum or parse.

    The topic exists (it is listed and its name is taken) but cannot be used until repaired.
    """

    def __init__(self, topic: str, path: str, reason: str) -> None:
        self.topic = topic
        super().__init__(path, reason)
        self.message = f"topic {topic!r} has a corrupt metadata file {path}: {reason}"
        self.hint = (
            f"`logq topics repair {topic}` (Admin.repair_topic) rewrites it from the partition "
            f"directories; `logq topics delete {topic}` removes the topic"
        )
        self.args = (self.message,)


__all__ += [
    "UnknownPartitionError",
    "MissingPartitionError",
    "TooManyOpenFilesError",
    "StoragePermissionError",
    "CorruptTopicMetadataError",
]


# --- topics deleted under a live client (logq/client/producer.py, consumer.py) ---


class TopicDeletedError(UnknownTopicError):
    """A topic was deleted, or deleted and created again, while a client was using it.

    ``topic_id`` is the incarnation the client used; ``new_topic_id`` the one that exists now
    (None: the topic is gone); ``partition`` the partition concerned, if one is. An
    UnknownTopicError too: the topic the client knew no longer exists.
    """

    def __init__(
        self,
        topic: str,
        topic_id: str,
        new_topic_id: str | None = None,
        *,
        partition: int | None = None,
        what: str = "",
        hint: str | None = None,
    ) -> None:
        self.topic = topic
        self.topic_id = topic_id
        self.new_topic_id = new_topic_id
        self.partition = partition
        self.what = what
        if new_topic_id is None:
            message = f"topic {topic!r} (topic id {topic_id}) was deleted"
        else:
            message = f"topic {topic!r} was deleted and created again (topic id {topic_id} -> {new_topic_id})"
        if what:
            message += f": {what}"
        LogqError.__init__(
            self,
            message,
            hint=hint or f"create it again with `logq topics create {topic}`, or stop using it",
        )

    def __reduce__(self) -> Any:
        return (
            _rebuild_topic_deleted,
            (self.topic, self.topic_id, self.new_topic_id, self.partition, self.what, self.hint),
        )


def _rebuild_topic_deleted(
    topic: str, topic_id: str, new_topic_id: str | None, partition: int | None, what: str, hint: str
) -> TopicDeletedError:
    return TopicDeletedError(topic, topic_id, new_topic_id, partition=partition, what=what, hint=hint)


__all__ += ["TopicDeletedError"]


class ProtocolError(LogqError):
    """A Kafka-protocol peer sent bytes `logq serve` cannot accept (a bad frame size, an
    undecodable request, an unknown API or version); the server closes that connection."""

    def __init__(
        self, reason: str, *, peer: str = "", api_key: int | None = None, api_version: int | None = None
    ) -> None:
        self.reason = reason
        self.peer = peer
        self.api_key = api_key
        self.api_version = api_version
        where = f" from {peer}" if peer else ""
        LogqError.__init__(
            self,
            f"protocol error{where}: {reason}",
            hint="the connection is closed; check the client's version and its configured broker address",
        )


__all__ += ["ProtocolError"]


class AuthenticationError(LogqError):
    """A SASL exchange with `logq serve` failed: wrong password, unknown user, a malformed
    message (logq/server/scram.py, logq/server/sasl.py). The client gets
    SASL_AUTHENTICATION_FAILED and the connection is closed."""

    hint = "check the user name and password, and that the user is in the server's --users file"

    def __init__(self, reason: str, *, mechanism: str = "", user: str | None = None) -> None:
        self.reason = reason
        self.mechanism = mechanism
        self.user = user
        LogqError.__init__(self, f"authentication failed{f' ({mechanism})' if mechanism else ''}: {reason}")


__all__ += ["AuthenticationError"]


# --- share groups (logq/groups/share_store.py, logq/client/share_consumer.py) ---


class ShareStateCorruptError(CorruptMetadataError):
    """A share-partition's state journal failed its checksum or parse below its tail: the
    in-flight states and delivery counts cannot be trusted, so nothing is delivered from it
    (never silently reset, which would deliver finished records again)."""

    hint = (
        "inspect the file; to start the share-partition over from a chosen offset, run "
        "logq.groups.share_store.reset_share_start (records before it are not delivered again)"
    )

    def __init__(self, path: str, position: int, reason: str) -> None:
        self.position = position
        super().__init__(path, f"at byte {position}: {reason}")


class ShareAcknowledgementError(GroupError, ValueError):
    """A ShareConsumer was asked something its share-group rules forbid: acknowledging a record
    it did not deliver (or twice), polling again in explicit mode with records unacknowledged."""

    hint = "acknowledge every record of the last poll (accept, release or reject) before polling again"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)


__all__ += ["ShareStateCorruptError", "ShareAcknowledgementError"]
