"""The consumer: pulls records from partition logs, alone or as a member of a group.

Modelled on Kafka's consumer (kafka-python / confluent-kafka names):

- ``Consumer(data, "orders", group_id="billing")`` joins the group and reads the
  partitions the group assigns it; without ``group_id`` it reads every partition of the
  given topics; ``assign([...])`` picks partitions by hand.
- ``poll`` returns records in offset order per partition and blocks until some arrive or
  the timeout passes; on Linux a write by any process wakes it (inotify, see logq/client/notify.py).
- Positions are the next offset to read. ``commit()`` stores them for the group (the next
  offset to read, as in Kafka). With ``enable_auto_commit`` positions are committed every
  ``auto_commit_interval_ms`` at the start of ``poll`` and before partitions are revoked:
  records returned by earlier polls count as processed. That gives at-least-once delivery:
  after a crash, a partition is re-read from its last commit.
- ``auto_offset_reset`` ("latest" by default, as in Kafka; "earliest"; "error") decides where
  a partition without a committed offset starts. A position that fell below the log start
  (retention deleted the data) moves to the log start with a warning whatever the policy
  (except "error", which raises): nothing that still exists is ever skipped.
- One thread at a time, as in Kafka's clients: a call made while another thread is inside
  one raises ConcurrentAccessError. ``wakeup()`` and ``close()`` may be called from any
  thread: they end a blocking ``poll`` at once (it returns an empty list).
- Timestamps (``replay_from``, ``offsets_for_times``) follow logq/client/timestamps.py:
  int milliseconds or an aware datetime; a float, a naive datetime or an int that looks
  like seconds is refused with a hint.
- Topic incarnations (logq/client/handles.py): each poll checks, with one stat per topic,
  that the topics it reads are still the incarnations it opened. A topic deleted under a
  subscription drops its partitions (the group rebalances); under ``assign`` the poll raises
  TopicDeletedError naming it. A topic deleted and created again is read from the new
  incarnation, from its committed offsets or ``auto_offset_reset`` (never the old
  positions), and commits name the incarnation their positions were read from, so old
  positions are never stored for the new topic.
- At most ``max_open_partitions`` partition logs are open at once; the least recently used
  is closed and reopened when it has new data (one stat tells), positions are kept.
- A record the deserializer refuses raises DeserializationError carrying ``topic``,
  ``partition`` and ``offset`` once the records before it were returned; the position stays
  on it, so ``consumer.seek(TopicPartition(err.topic, err.partition), err.offset + 1)``
  skips it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from re import Pattern
from typing import Any, ParamSpec, TypeVar

from logq.client.handles import DEFAULT_MAX_OPEN_PARTITIONS, Incarnation, check_max_open_partitions
from logq.client.notify import Watcher
from logq.client.serde import get_deserializer
from logq.client.timestamps import to_millis
from logq.codec.batch import decode_records
from logq.codec.columnar import RecordColumns, builds_records_lazily, columns_from_records, decode_columns
from logq.errors import (
    ClientClosedError,
    ConcurrentAccessError,
    ConfigError,
    DeserializationError,
    InvalidTopicError,
    LogqError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    TopicDeletedError,
    UnknownTopicError,
)
from logq.groups.member import GroupMember, group_dir
from logq.groups.offsets import OffsetStore
from logq.storage.log import PartitionLog
from logq.storage.segment import LOG_SUFFIX, segment_name
from logq.storage.topics import TopicRegistry, partition_path, validate_partition, validate_topic
from logq.types import OffsetAndTimestamp, Record, TopicPartition

__all__ = ["Consumer", "Record", "TopicPartition", "OffsetAndTimestamp"]

log = logging.getLogger("logq.consumer")
_RESETS = ("earliest", "latest", "error")
_GROUP_CHECK_S = 0.05  # how often a waiting poll re-checks the group for rebalances
# The first fetch after a seek (or of a new partition) reads this much (at least one whole
# batch); each fetch that continues where the last one ended doubles it, up to fetch_max_bytes.
FIRST_FETCH_BYTES = 16 << 10
_COLUMN_BYTES = 1 << 30  # a poll_columns stops adding partitions past this many key and value bytes


Timestamp = int | _dt.datetime
_P = ParamSpec("_P")
_R = TypeVar("_R")
_Out = TypeVar("_Out", list[Record], RecordColumns)


def _one_thread(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a Consumer method only if no other thread is inside one (Kafka's light lock)."""

    @functools.wraps(method)
    def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        self = args[0]
        assert isinstance(self, Consumer)
        if not self._access.acquire(blocking=False):  # reentrant for the thread inside
            if self._closing:
                raise ClientClosedError("consumer")
            raise ConcurrentAccessError(
                f"Consumer is not safe for multi-threaded access: {method.__name__}() was called while "
                f"thread {self._owner} is inside a call"
            )
        self._owner = threading.get_ident()
        try:
            return method(*args, **kwargs)
        finally:
            self._access.release()

    return guarded


def as_tp(tp: Any) -> TopicPartition:
    """A (topic, partition) pair given by the caller as a TopicPartition; InvalidTopicError if it is not one."""
    try:
        topic, partition = tp
    except (TypeError, ValueError):
        raise InvalidTopicError(tp, "expected a (topic, partition) pair") from None
    validate_topic(topic)
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        raise InvalidTopicError(f"{topic}-{partition}", "the partition must be an int >= 0")
    return TopicPartition(topic, partition)


def _iterable(items: Any, what: str) -> list[Any]:
    if isinstance(items, (str, bytes)):
        raise ConfigError(f"{what} must be an iterable of them, got the single {type(items).__name__} {items!r}")
    try:
        return list(items)
    except TypeError:
        raise ConfigError(f"{what} must be an iterable, got {type(items).__name__}") from None


def _mapping(items: Any, what: str) -> Mapping[Any, Any]:
    if not isinstance(items, Mapping):
        raise ConfigError(f"{what} must be a dict {{TopicPartition: ...}}, got {type(items).__name__}")
    return items


def _int_at_least(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"{name}={v!r} is invalid: must be an int >= {lo}")
    return v


def _flag(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{name}={v!r} is invalid: must be True or False")
    return v


class Consumer:
    def __init__(
        self,
        data_dir: str,
        *topics: str,
        group_id: str | None = None,
        auto_offset_reset: str = "latest",
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: int = 5000,
        max_poll_records: int = 500,
        fetch_max_bytes: int = 1 << 20,
        session_timeout_ms: int = 3000,
        max_poll_interval_ms: int = 300_000,
        key_deserializer: Any = None,
        value_deserializer: Any = None,
        on_assign: Callable[[set[TopicPartition]], None] | None = None,
        on_revoke: Callable[[set[TopicPartition]], None] | None = None,
        fsync_commits: bool = False,
        consumer_timeout_ms: int | None = None,
        member_id: str | None = None,
        max_open_partitions: int = DEFAULT_MAX_OPEN_PARTITIONS,
    ) -> None:
        self._closed = True  # until built
        if not isinstance(data_dir, (str, os.PathLike)):
            raise ConfigError(f"data_dir={data_dir!r} is invalid: must be a path (str or os.PathLike)")
        if not isinstance(auto_offset_reset, str) or auto_offset_reset not in _RESETS:
            raise ConfigError(f"auto_offset_reset={auto_offset_reset!r} is invalid: one of {', '.join(_RESETS)}")
        for name, v in (
            ("max_poll_records", max_poll_records),
            ("fetch_max_bytes", fetch_max_bytes),
            ("auto_commit_interval_ms", auto_commit_interval_ms),
            ("session_timeout_ms", session_timeout_ms),
            ("max_poll_interval_ms", max_poll_interval_ms),
        ):
            _int_at_least(name, v, 1)
        _flag("enable_auto_commit", enable_auto_commit)
        _flag("fsync_commits", fsync_commits)
        for name, fn in (("on_assign", on_assign), ("on_revoke", on_revoke)):
            if fn is not None and not callable(fn):
                raise ConfigError(f"{name}={fn!r} is invalid: must be None or a callable taking a set of partitions")
        for name, ident in (("group_id", group_id), ("member_id", member_id)):
            if ident is not None and not isinstance(ident, str):
                raise ConfigError(f"{name}={ident!r} is invalid: must be None or a str")
        for t in topics:
            if not isinstance(t, str):
                raise InvalidTopicError(t, "topics are passed as separate str arguments: Consumer(data_dir, 'a', 'b')")
        if consumer_timeout_ms is not None and (
            isinstance(consumer_timeout_ms, bool)
            or not isinstance(consumer_timeout_ms, (int, float))
            or not consumer_timeout_ms >= 0
        ):
            raise ConfigError(f"consumer_timeout_ms={consumer_timeout_ms!r} is invalid: must be None or a number >= 0")
        check_max_open_partitions(max_open_partitions)
        self.registry = TopicRegistry(data_dir)
        self.root = self.registry.root
        self.max_open_partitions = max_open_partitions
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.enable_auto_commit = enable_auto_commit and group_id is not None
        self.auto_commit_interval_ms = auto_commit_interval_ms
        self.max_poll_records = max_poll_records
        self.fetch_max_bytes = fetch_max_bytes
        self.session_timeout_ms = session_timeout_ms
        self.max_poll_interval_ms = max_poll_interval_ms
        self.fsync_commits = fsync_commits
        self.consumer_timeout_ms = consumer_timeout_ms
        self._member_id = member_id
        self._kdes = None if key_deserializer is None else get_deserializer(key_deserializer)
        self._vdes = None if value_deserializer is None else get_deserializer(value_deserializer)
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._member: GroupMember | None = None
        self._store: OffsetStore | None = OffsetStore(group_dir(self.root, group_id)) if group_id else None
        self._subscription: list[str] | Pattern[str] | None = None
        self._manual: list[TopicPartition] = []
        self._positions: dict[TopicPartition, int] = {}
        self._buffers: dict[TopicPartition, tuple] = {}  # (fetch, header i, byte pos, records, i)
        self._fetch_sizes: dict[TopicPartition, int] = {}  # bytes of the next fetch (grows while reading on)
        self._record_bytes: dict[TopicPartition, float] = {}  # bytes per record of the last batch decoded
        self._stats = {"fetches": 0, "bytes_read": 0, "batches_decoded": 0, "records_decoded": 0, "records_built": 0}
        self._paused: set[TopicPartition] = set()
        self._logs: OrderedDict[TopicPartition, PartitionLog] = OrderedDict()  # least recently used first
        # a closed log read to its end: (end offset, active segment file, its size, next segment file)
        self._parked: dict[TopicPartition, tuple[int, str | None, int, str]] = {}
        self._incarnations: dict[str, Incarnation] = {}  # topic -> the incarnation positions refer to
        self._pending_error: DeserializationError | None = None  # raised by the next poll
        self._watcher = Watcher()
        self._rr = 0
        self._next_commit = time.monotonic() + auto_commit_interval_ms / 1000
        self._access = threading.RLock()  # held by the thread inside a call (see _one_thread)
        self._owner = 0
        self._wakeup = False  # wakeup() called: the poll in progress (or the next) returns []
        self._closing = False  # close() called from another thread: the poll in progress returns []
        self._was_woken = False  # the last poll ended on a wakeup()
        self._closed = False
        if topics:
            if group_id is not None:
                self.subscribe(list(topics))
            else:
                self.assign([TopicPartition(t, p) for t in topics for p in range(self.registry.get(t).partitions)])

    # ------------------------------------------------------------------ membership
    @_one_thread
    def subscribe(self, topics: Sequence[str] | str | Pattern[str]) -> None:
        """Join the group for these topics (a list, or a regex matched against topic names)."""
        self._check_open()
        if self.group_id is None:
            raise ConfigError("subscribe() needs a group_id", hint="pass group_id=..., or use assign()")
        if isinstance(topics, str):
            topics = [topics]
        if isinstance(topics, re.Pattern):
            self._subscription = topics
        else:
            topics = _iterable(topics, "topics")
            for t in topics:
                self.registry.get(t)  # UnknownTopicError now, not in the background
            self._subscription = list(topics)
        self._manual = []
        if self._member is None:
            self._member = GroupMember(
                self.root,
                self.group_id,
                self._subscribed_partitions,
                member_id=self._member_id,
                session_timeout_ms=self.session_timeout_ms,
                max_poll_interval_ms=self.max_poll_interval_ms,
            )
        self._sync_group()

    def _subscribed_partitions(self) -> dict[str, int]:
        sub = self._subscription
        if sub is None:
            return {}
        names = [t for t in self.registry.names() if sub.fullmatch(t)] if isinstance(sub, re.Pattern) else list(sub)
        out = {}
        for t in names:
            try:  # fresh: a topic deleted (or created again) elsewhere changes the subscription
                out[t] = self.registry.get(t, fresh=True).partitions
            except UnknownTopicError:
                pass
        return out

    @_one_thread
    def assign(self, partitions: Iterable[Any]) -> None:
        """Read exactly these partitions, without group coordination."""
        self._check_open()
        if self._member is not None:
            raise ConfigError(
                "this consumer is subscribed to a group", hint="use a second Consumer for manual assignment"
            )
        tps = []
        for tp in _iterable(partitions, "partitions"):
            t, p = as_tp(tp)
            validate_partition(t, p, self.registry.get(t).partitions)
            tps.append(TopicPartition(t, p))
        for tp in set(self._positions) - set(tps):
            self._forget(tp)
        self._manual = tps
        self._init_positions(tps)

    @_one_thread
    def assignment(self) -> set[TopicPartition]:
        if self._member is not None:
            return {TopicPartition(*tp) for tp in self._member.owned()}
        return set(self._manual)

    def _sync_group(self) -> None:
        m = self._member
        if m is None:
            return
        assigned, revoked = m.poll_assignment(on_revoke=self._revoke, on_lost=self._lost)
        if assigned:
            tps = {TopicPartition(*tp) for tp in assigned}
            self._init_positions(sorted(tps))
            if self._on_assign is not None:
                self._on_assign(tps)

    def _revoke(self, tps: set[Any]) -> None:
        tps = {TopicPartition(*tp) for tp in tps}
        if self.enable_auto_commit:
            self._commit_positions([tp for tp in tps if tp in self._positions])
        if self._on_revoke is not None:
            self._on_revoke(tps)
        for tp in tps:
            self._forget(tp)

    def _lost(self, tps: set[Any]) -> None:
        for tp in tps:
            self._forget(TopicPartition(*tp))

    def _forget(self, tp: TopicPartition) -> None:
        self._positions.pop(tp, None)
        self._drop_buffer(tp)
        self._record_bytes.pop(tp, None)
        self._paused.discard(tp)
        self._parked.pop(tp, None)
        self._watcher.unwatch(partition_path(self.root, tp.topic, tp.partition))
        lg = self._logs.pop(tp, None)
        if lg is not None:
            self._close_log(lg)
        if not any(t.topic == tp.topic for t in self._positions):
            self._incarnations.pop(tp.topic, None)

    @staticmethod
    def _close_log(lg: PartitionLog) -> None:
        try:
            lg.close()
        except (LogqError, OSError) as e:  # a reader writes nothing: nothing is lost
            log.debug("closing %s: %s", lg.path, e)

    # ------------------------------------------------------------------ positions
    def _log(self, tp: TopicPartition) -> PartitionLog:
        lg = self._logs.get(tp)
        if lg is not None:
            self._logs.move_to_end(tp)
            return lg
        inc = self._incarnation(tp.topic)
        try:
            lg = PartitionLog(
                partition_path(self.root, tp.topic, tp.partition), self.registry.get(tp.topic).config, readonly=True
            )
        except (LogqError, OSError):
            now = inc.current_id()
            if now != inc.topic_id:  # deleted under us: say so, not "no such file"
                raise TopicDeletedError(tp.topic, inc.topic_id, now, partition=tp.partition) from None
            raise
        self._logs[tp] = lg
        self._parked.pop(tp, None)
        while len(self._logs) > self.max_open_partitions:
            old_tp, old = self._logs.popitem(last=False)
            self._park(old_tp, old)
        return lg

    def _park(self, tp: TopicPartition, lg: PartitionLog) -> None:
        """Close the log of ``tp``; remember enough to tell, by one stat, that it has nothing new."""
        try:
            if lg.num_segments:
                seg = lg.active
                end, path, size = seg.next_offset, seg.log_path, seg.size
            else:
                end, path, size = lg.log_start_offset, None, 0
            self._parked[tp] = (end, path, size, os.path.join(lg.path, segment_name(end) + LOG_SUFFIX))
        except (LogqError, OSError):
            pass
        self._close_log(lg)

    def _nothing_new(self, tp: TopicPartition) -> bool:
        """Whether closed partition ``tp`` is read to its end and nothing was appended since."""
        park = self._parked.get(tp)
        if park is None or park[0] != self._positions[tp]:
            return False
        end, path, size, next_path = park
        try:
            if path is not None and os.stat(path).st_size != size:
                return False
        except OSError:
            return False
        return not os.path.exists(next_path)  # a roll starts the segment at the end

    def _incarnation(self, topic: str) -> Incarnation:
        """The incarnation of ``topic`` this consumer's positions refer to (the current one at first use)."""
        inc = self._incarnations.get(topic)
        if inc is None:
            meta = self.registry.get(topic, fresh=True)
            inc = self._incarnations[topic] = Incarnation(self.root, topic, meta.topic_id)
        return inc

    def _check_incarnations(self, topics: Iterable[str]) -> None:
        """Follow topics deleted or created again since positions were taken (see the module docstring)."""
        for topic in set(topics):
            inc = self._incarnations.get(topic)
            if inc is None:
                continue
            now = inc.current_id()
            if now == inc.topic_id:
                continue
            tps = sorted(tp for tp in self._positions if tp.topic == topic)
            for tp in tps:
                self._forget(tp)
            self._incarnations.pop(topic, None)
            if now is None:
                log.warning("topic %r (topic id %s) was deleted; its partitions are dropped", topic, inc.topic_id)
                if self._member is None:
                    self._manual = [tp for tp in self._manual if tp.topic != topic]
                    raise TopicDeletedError(
                        topic,
                        inc.topic_id,
                        None,
                        what=f"partitions {', '.join(str(tp.partition) for tp in tps)} were assigned to this consumer",
                        hint="they are no longer assigned; assign() partitions that exist, or create the topic again",
                    )
                continue
            count = self.registry.get(topic, fresh=True).partitions
            keep = [tp for tp in tps if tp.partition < count]
            log.warning(
                "topic %r was deleted and created again (topic id %s -> %s); reading the new one from its "
                "committed offsets or auto_offset_reset=%s",
                topic,
                inc.topic_id,
                now,
                self.auto_offset_reset,
            )
            if self._member is None:
                self._manual = [tp for tp in self._manual if tp.topic != topic or tp in keep]
            self._init_positions(keep)

    def _init_positions(self, tps: Sequence[TopicPartition]) -> None:
        for tp in tps:
            self._watcher.watch(partition_path(self.root, tp.topic, tp.partition))
            committed = self._store.committed(tp.topic, tp.partition) if self._store else None
            lg = self._log(tp)
            if committed is None:
                self._positions[tp] = self._reset(tp, "no committed offset")
            else:
                self._positions[tp] = self._clamp(tp, committed, lg)
            self._drop_buffer(tp)

    def _reset(self, tp: TopicPartition, why: str) -> int:
        lg = self._log(tp)
        if self.auto_offset_reset == "error":
            raise NoOffsetForPartitionError(tp.topic, tp.partition, why)
        return lg.log_start_offset if self.auto_offset_reset == "earliest" else lg.log_end_offset

    def _clamp(self, tp: TopicPartition, offset: int, lg: PartitionLog) -> int:
        start, end = lg.log_start_offset, lg.log_end_offset
        if offset < start:
            if self.auto_offset_reset == "error":
                raise NoOffsetForPartitionError(
                    tp.topic, tp.partition, f"offset {offset} was deleted; log starts at {start}"
                )
            log.warning(
                "%s-%d: offset %d was deleted by retention; resuming at log start %d",
                tp.topic,
                tp.partition,
                offset,
                start,
            )
            return start
        if offset > end:
            log.warning(
                "%s-%d: offset %d is past the log end %d; resuming at the log end", tp.topic, tp.partition, offset, end
            )
            return end
        return offset

    def _tp(self, tp: Any) -> TopicPartition:
        tp = as_tp(tp)
        if tp not in self._positions:
            raise ConfigError(f"{tp.topic}-{tp.partition} is not assigned to this consumer")
        return tp

    @_one_thread
    def position(self, tp: Any) -> int:
        return self._positions[self._tp(tp)]

    @_one_thread
    def seek(self, tp: Any, offset: int) -> None:
        tp = self._tp(tp)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ConfigError(f"offset must be an int >= 0, got {offset!r}")
        self._positions[tp] = offset
        self._drop_buffer(tp)

    def _drop_buffer(self, tp: TopicPartition) -> None:
        """Forget what was fetched for ``tp``: the position moved, the next fetch starts small."""
        self._buffers.pop(tp, None)
        self._fetch_sizes.pop(tp, None)

    def read_stats(self) -> dict[str, int]:
        """What polls read so far: ``fetches`` (reads of a partition log), ``bytes_read`` (bytes
        those reads took from segment files), ``batches_decoded``, ``records_decoded`` (records
        parsed out of them, into Records or columns) and ``records_built`` (Record objects built).

        A poll reads and decodes only what it returns, plus the rest of the last batch it
        needed (with the compiled codec that rest is kept as columns: no Record is built for
        it until a poll returns it). A fetch after a seek reads ``FIRST_FETCH_BYTES`` (at least
        one batch) and each fetch that continues the last one doubles, up to ``fetch_max_bytes``."""
        return dict(self._stats)

    @_one_thread
    def seek_to_beginning(self, *tps: Any) -> None:
        for tp in tps or tuple(self._positions):
            self.seek(tp, self._log(self._tp(tp)).log_start_offset)

    @_one_thread
    def seek_to_end(self, *tps: Any) -> None:
        for tp in tps or tuple(self._positions):
            self.seek(tp, self._log(self._tp(tp)).log_end_offset)

    @_one_thread
    def offsets_for_times(self, timestamps: dict[Any, Timestamp]) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """Per partition, the first offset whose timestamp >= T (Kafka's rule), else None.

        T is int milliseconds since the epoch or an aware datetime (see logq/client/timestamps.py).
        """
        self._check_open()
        wanted = {as_tp(tp): to_millis(ts) for tp, ts in _mapping(timestamps, "timestamps").items()}
        out: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for tp, ms in wanted.items():
            lg = self._logs.get(tp)
            if lg is None:
                meta = self.registry.get(tp.topic)
                validate_partition(tp.topic, tp.partition, meta.partitions)
                lg = PartitionLog(partition_path(self.root, tp.topic, tp.partition), meta.config, readonly=True)
            off = lg.offset_for_timestamp(ms)
            if off is None:
                out[tp] = None
            else:
                rec = lg.read_records(off, 1)
                out[tp] = OffsetAndTimestamp(off, rec[0].timestamp if rec else -1)
            if tp not in self._logs:
                self._close_log(lg)
        return out

    @_one_thread
    def replay_from(
        self, *, offset: int | None = None, timestamp: Timestamp | None = None, partitions: Iterable[Any] | None = None
    ) -> dict[TopicPartition, int]:
        """Seek the given (default: all assigned) partitions to an offset or a time.

        ``timestamp`` is int milliseconds since the epoch or an aware datetime; a partition
        with no record at or after it moves to its end.
        """
        self._check_open()
        if (offset is None) == (timestamp is None):
            raise ConfigError("replay_from needs exactly one of offset= or timestamp=")
        if offset is not None:
            _int_at_least("offset", offset, 0)
        ms = None if timestamp is None else to_millis(timestamp)
        tps = (
            [self._tp(tp) for tp in _iterable(partitions, "partitions")]
            if partitions is not None
            else list(self._positions)
        )
        out = {}
        for tp in tps:
            if ms is None:
                target = offset or 0  # offset is set: exactly one of the two is, checked above
            else:
                found = self.offsets_for_times({tp: ms})[tp]
                target = found.offset if found else self._log(tp).log_end_offset
            self.seek(tp, target)
            out[tp] = target
        return out

    @_one_thread
    def pause(self, *tps: Any) -> None:
        self._paused.update(self._tp(tp) for tp in tps)

    @_one_thread
    def resume(self, *tps: Any) -> None:
        self._paused.difference_update(as_tp(tp) for tp in tps)

    @_one_thread
    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    @_one_thread
    def lag(self) -> dict[TopicPartition, int]:
        return {tp: self._log(tp).log_end_offset - pos for tp, pos in self._positions.items()}

    # ------------------------------------------------------------------ polling
    @_one_thread
    def poll(self, timeout: float | None = 1.0, max_records: int | None = None) -> list[Record]:
        """Records from the assigned partitions; waits up to ``timeout`` seconds for some.

        ``timeout=None`` waits until records arrive, ``wakeup()`` or ``close()`` (from
        another thread) ends the wait: then it returns an empty list. ``max_records``
        (default ``max_poll_records``) is an int >= 1.
        """
        limit = self._poll_args(timeout, max_records)
        return self._poll(timeout, limit, self._fetch, list)

    @_one_thread
    def poll_columns(self, timeout: float | None = 1.0, max_records: int | None = None) -> RecordColumns:
        """``poll``, with the records as columns: a RecordColumns of numpy arrays (offsets,
        timestamps, partitions) and Arrow-style key and value columns, built without a Python
        object per record when the compiled codec is in use (see logq/codec/columnar.py).

        Positions, commits, waiting and ``max_records`` behave as with ``poll``; the two can
        be mixed. Keys and values are the raw bytes: a consumer with a key or value
        deserializer refuses this call (ConfigError). An empty RecordColumns when nothing
        arrived in time.
        """
        limit = self._poll_args(timeout, max_records)
        if self._kdes is not None or self._vdes is not None:
            raise ConfigError(
                "poll_columns() returns raw bytes and this consumer has a key or value deserializer",
                hint="use poll(), or a Consumer without key_deserializer/value_deserializer",
            )
        return self._poll(timeout, limit, self._fetch_columns, RecordColumns.empty)

    def _poll_args(self, timeout: Any, max_records: Any) -> int:
        self._check_open()
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout < float("inf")
        ):
            raise ConfigError(f"timeout={timeout!r} is invalid: None (wait for records) or a number of seconds >= 0")
        return self.max_poll_records if max_records is None else _int_at_least("max_records", max_records, 1)

    def _poll(self, timeout: float | None, limit: int, fetch: Callable[[int], _Out], empty: Callable[[], _Out]) -> _Out:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._sync_group()
        if self.enable_auto_commit and time.monotonic() >= self._next_commit:
            self.commit()
        while True:
            if self._interrupted():
                return empty()
            self._watcher.drain()
            out = fetch(limit)
            if out:
                self._watcher.reset_backoff()  # data flows: the next wait starts short again
                return out
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return out
            if self._member is not None:
                left = _GROUP_CHECK_S if left is None else min(left, _GROUP_CHECK_S)
            self._watcher.wait(left)
            if self._member is not None and not self._closing:
                self._sync_group()

    def _interrupted(self) -> bool:
        """A wakeup() (consumed here) or a close() from another thread ends the poll."""
        if self._wakeup:
            self._wakeup = False
            self._was_woken = True
            return True
        return self._closing

    def wakeup(self) -> None:
        """End the blocking ``poll`` in progress, or the next one, at once: it returns an empty list.

        Safe from any thread (the one way, with ``close()``, to reach a Consumer another thread
        is polling). A ``for record in consumer`` loop ends.
        """
        self._wakeup = True
        self._watcher.wake()

    def _fetchable(self) -> list[TopicPartition]:
        if self._member is not None:
            owned = self._member.owned()
            missing = [TopicPartition(*tp) for tp in owned if tp not in self._positions]
            if missing:  # dropped when their topic was deleted: read them if it exists again
                live = [tp for tp in missing if self.registry.exists(tp.topic) and self._has(tp)]
                self._init_positions(sorted(live))
            return [tp for tp in self._positions if tp in owned and tp not in self._paused]
        return [tp for tp in self._positions if tp not in self._paused]

    def _has(self, tp: TopicPartition) -> bool:
        try:
            return tp.partition < self.registry.get(tp.topic, fresh=True).partitions
        except UnknownTopicError:
            return False

    def _fetch(self, limit: int) -> list[Record]:
        err = self._pending_error
        if err is not None and err.topic is not None and err.partition is not None:
            self._pending_error = None
            tp = TopicPartition(err.topic, err.partition)
            if self._positions.get(tp) == err.offset and tp not in self._paused:
                raise err
        tps = self._fetchable()
        if not tps:
            return []
        self._check_incarnations(tp.topic for tp in tps)
        tps = self._fetchable()
        if not tps:
            return []
        out: list[Record] = []
        n = len(tps)
        start = self._rr % n
        self._rr += 1
        for i in range(n):
            tp = tps[(start + i) % n]
            try:
                got = self._take(tp, limit - len(out))
            except DeserializationError as e:
                if not out:
                    raise
                self._pending_error = e  # return what was read first; the next poll raises it
                break
            out.extend(got)
            if len(out) >= limit:
                break
        return out

    def _take(self, tp: TopicPartition, want: int) -> list[Record]:
        """Up to ``want`` records of one partition, decoding fetched batches one at a time.

        A fetch brings whole batches, sized to what the poll wants (see ``_fetch_batches``);
        only as many batches are decoded as this poll needs, so a poll after a seek does not
        pay for a whole fetch, and the rest stays buffered, undecoded, for the next poll.
        """
        st = self._buffers.get(tp)
        if st is None:
            st = self._fetch_batches(tp, want)
            if st is None:
                return []
        res, hi, pos, recs, ri = st
        out: list[Record] = []
        budget = self.fetch_max_bytes - len(res.data)  # bytes this poll may still fetch
        while len(out) < want:
            if ri >= len(recs):
                if hi >= len(res.headers):
                    # this fetch is used up: read on (a larger fetch) while the poll wants more,
                    # unless it already reached the log end (a read there finds nothing but costs
                    # a catch-up: the wake-up path of a consumer that follows the end)
                    if budget <= 0 or res.next_offset == res.log_end_offset:
                        break
                    try:
                        st = self._fetch_batches(tp, want - len(out), res.next_offset)
                    except LogqError:
                        if not out:
                            raise
                        break  # return what was read; the next poll fetches again and raises
                    if st is None:
                        break
                    res, hi, pos, recs, ri = st
                    budget -= len(res.data)
                    continue
                h = res.headers[hi]
                try:
                    recs, ri = self._decode(tp, res, h, pos, want - len(out)), 0
                except DeserializationError as e:
                    # the records before the bad one are returned first; the position stays on it
                    good = getattr(e, "_good", [])
                    out.extend(good[: want - len(out)])
                    self._buffers.pop(tp, None)
                    if out:
                        self._positions[tp] = out[-1].offset + 1
                        return out
                    raise
                pos += h.size
                hi += 1
                continue
            k = min(len(recs) - ri, want - len(out))
            if isinstance(recs, RecordColumns):  # build only the records returned
                out.extend(recs.records(ri, ri + k))
                self._stats["records_built"] += k
            else:
                out.extend(recs if ri == 0 and k == len(recs) else recs[ri : ri + k])
            ri += k
        if ri < len(recs) or hi < len(res.headers):
            self._buffers[tp] = (res, hi, pos, recs, ri)
        else:
            self._buffers.pop(tp, None)
        if out:
            self._positions[tp] = out[-1].offset + 1
        return out

    def _fetch_columns(self, limit: int) -> RecordColumns:
        """_fetch, as columns (no deserializers here: poll_columns refuses them)."""
        tps = self._fetchable()
        if not tps:
            return RecordColumns.empty()
        self._check_incarnations(tp.topic for tp in tps)
        tps = self._fetchable()
        if not tps:
            return RecordColumns.empty()
        parts: list[RecordColumns] = []
        got = nbytes = 0
        n = len(tps)
        start = self._rr % n
        self._rr += 1
        for i in range(n):
            cols = self._take_columns(tps[(start + i) % n], limit - got)
            parts.append(cols)
            got += len(cols)
            nbytes += cols.nbytes
            if got >= limit or nbytes >= _COLUMN_BYTES:
                break
        return RecordColumns.concat(parts)

    def _take_columns(self, tp: TopicPartition, want: int) -> RecordColumns:
        """_take, as columns: batches are decoded into columns, the rest kept for the next poll."""
        st = self._buffers.get(tp)
        if st is None:
            st = self._fetch_batches(tp, want)
            if st is None:
                return RecordColumns.empty()
        res, hi, pos, pending, ri = st
        parts: list[RecordColumns] = []
        got = 0
        budget = self.fetch_max_bytes - len(res.data)
        while got < want:
            if ri >= len(pending):
                if hi >= len(res.headers):
                    if budget <= 0 or res.next_offset == res.log_end_offset:
                        break
                    try:
                        st = self._fetch_batches(tp, want - got, res.next_offset)
                    except LogqError:
                        if not got:
                            raise
                        break  # return what was read; the next poll fetches again and raises
                    if st is None:
                        break
                    res, hi, pos, pending, ri = st
                    budget -= len(res.data)
                    continue
                h = res.headers[hi]
                pending, ri = self._decode_columns(tp, res, h, pos), 0
                pos += h.size
                hi += 1
                continue
            k = min(len(pending) - ri, want - got)
            if isinstance(pending, list):  # the rest of a batch poll decoded
                parts.append(columns_from_records(pending[ri : ri + k]))
            else:
                parts.append(pending if ri == 0 and k == len(pending) else pending.slice(ri, ri + k))
            got += k
            ri += k
        if ri < len(pending) or hi < len(res.headers):
            self._buffers[tp] = (res, hi, pos, pending, ri)
        else:
            self._buffers.pop(tp, None)
        out = RecordColumns.concat(parts)
        if len(out):
            self._positions[tp] = int(out.offsets[-1]) + 1
        return out

    def _decode_columns(self, tp: TopicPartition, res: Any, h: Any, pos: int) -> RecordColumns:
        cols = decode_columns(
            res.data,
            h,
            pos,
            topic=tp.topic,
            partition=tp.partition,
            max_decompressed_bytes=self.registry.get(tp.topic).config.max_decompressed_bytes,
            min_offset=res.offset,
        )
        self._note_decoded(tp, h, len(cols))
        return cols

    def _fetch_batches(self, tp: TopicPartition, want: int, offset: int | None = None) -> tuple | None:
        """Fetch from the position (or ``offset``): whole batches, about as many bytes as ``want``
        records need (see read_stats), never more than fetch_max_bytes unless one batch is larger."""
        if tp not in self._logs and self._nothing_new(tp):
            return None
        lg = self._log(tp)
        pos = self._positions[tp] if offset is None else offset
        size = self._fetch_sizes.get(tp, FIRST_FETCH_BYTES)
        per_record = self._record_bytes.get(tp)
        if per_record is not None:
            size = max(size, int(want * per_record))
        size = min(size, self.fetch_max_bytes)
        try:
            res = lg.read(pos, size)
        except OffsetOutOfRangeError as e:
            self._positions[tp] = (
                self._clamp(tp, pos, lg) if pos < e.log_start else self._reset_high(tp, pos, e.log_end)
            )
            return None
        self._stats["fetches"] += 1
        self._stats["bytes_read"] += res.bytes_read
        if not res.headers:
            return None
        self._fetch_sizes[tp] = min(self.fetch_max_bytes, 2 * size)  # reading on: the next fetch is larger
        return (res, 0, 0, [], 0)

    def _decode(self, tp: TopicPartition, res: Any, h: Any, pos: int, want: int) -> list[Record] | RecordColumns:
        """The records of batch ``h`` as Records, or, when the poll wants fewer than the batch
        holds and the compiled codec is in use, as columns from which only the records
        returned are built (no deserializer: they are applied to Records, record by record)."""
        kd, vd = self._kdes, self._vdes
        if kd is None and vd is None and want < h.records_count and builds_records_lazily():
            return self._decode_columns(tp, res, h, pos)
        recs = decode_records(
            res.data,
            h,
            pos,
            max_decompressed_bytes=self.registry.get(tp.topic).config.max_decompressed_bytes,
            min_offset=res.offset,
            origin=(Record, tp.topic, tp.partition),
        )
        self._note_decoded(tp, h, len(recs))
        self._stats["records_built"] += len(recs)
        if kd is None and vd is None:
            return recs
        out: list[Record] = []
        for r in recs:
            what = "key"
            try:
                k = kd(r.key) if kd else r.key
                what = "value"
                v = vd(r.value) if vd else r.value
            except Exception as e:  # say where, keep the deserializer's error as the cause
                reason = e.message if isinstance(e, LogqError) else repr(e)
                err = DeserializationError(
                    f"the {what} deserializer failed on the record at offset {r.offset} of "
                    f"{tp.topic}-{tp.partition}: {reason}",
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=r.offset,
                    hint=f"skip it with consumer.seek(TopicPartition({tp.topic!r}, {tp.partition}), {r.offset + 1}), "
                    "or fix the deserializer",
                )
                err._good = out  # type: ignore[attr-defined]  # records before it, returned first
                raise err from e
            out.append(r._replace(key=k, value=v))
        return out

    def _note_decoded(self, tp: TopicPartition, h: Any, n: int) -> None:
        st = self._stats
        st["batches_decoded"] += 1
        st["records_decoded"] += n
        if h.records_count:
            self._record_bytes[tp] = h.size / h.records_count

    def _reset_high(self, tp: TopicPartition, pos: int, end: int) -> int:
        if self.auto_offset_reset == "error":
            raise NoOffsetForPartitionError(tp.topic, tp.partition, f"offset {pos} is past the log end {end}")
        log.warning("%s-%d: position %d is past the log end %d; moving to the end", tp.topic, tp.partition, pos, end)
        return end

    def __iter__(self) -> Iterator[Record]:
        idle_since = time.monotonic()
        while not self._closed and not self._closing:
            wait = 0.5
            if self.consumer_timeout_ms is not None:  # never wait past the idle limit
                wait = min(wait, max(0.0, self.consumer_timeout_ms / 1000 - (time.monotonic() - idle_since)))
            self._was_woken = False
            recs = self.poll(timeout=wait)
            if not recs and (self._was_woken or self._closing):
                return
            if recs:
                idle_since = time.monotonic()
                yield from recs
            elif (
                self.consumer_timeout_ms is not None
                and (time.monotonic() - idle_since) * 1000 >= self.consumer_timeout_ms
            ):
                return

    # ------------------------------------------------------------------ commits
    @_one_thread
    def commit(self, offsets: dict[Any, int] | None = None) -> None:
        """Commit positions (default) or the given {TopicPartition: next offset} map."""
        self._check_open()
        if self._store is None:
            raise ConfigError("commit() needs a group_id")
        items = (
            {as_tp(tp): off for tp, off in _mapping(offsets, "offsets").items()}
            if offsets is not None
            else {tp: self._positions[tp] for tp in self._positions}
        )
        self._do_commit(items)

    def _commit_positions(self, tps: Sequence[TopicPartition]) -> None:
        if tps:
            self._do_commit({tp: self._positions[tp] for tp in tps})

    def _do_commit(self, items: dict[TopicPartition, int]) -> None:
        assert self._store is not None
        self._next_commit = time.monotonic() + self.auto_commit_interval_ms / 1000
        if not items:
            return
        ids: dict[str, str | None] = {}
        for topic in {tp.topic for tp in items}:
            inc = self._incarnations.get(topic)
            if inc is None:
                continue  # not read by this consumer: the store stamps the current id
            if not inc.holds():  # positions of a deleted incarnation: never stored for a new one
                log.warning(
                    "offsets of topic %r not committed: it was deleted since they were read (topic id %s)",
                    topic,
                    inc.topic_id,
                )
                items = {tp: off for tp, off in items.items() if tp.topic != topic}
                continue
            ids[topic] = inc.topic_id  # a delete racing this commit leaves them under the old id
        if not items:
            return
        m = self._member
        self._store.commit(
            items,
            generation=m.generation if m else None,
            member_id=m.member_id if m else None,
            sync=self.fsync_commits,
            log_end=lambda t, p: self._log(TopicPartition(t, p)).log_end_offset,
            topic_ids=ids,
        )

    @_one_thread
    def committed(self, tp: Any) -> int | None:
        if self._store is None:
            raise ConfigError("committed() needs a group_id")
        t, p = as_tp(tp)
        return self._store.committed(t, p)

    # ------------------------------------------------------------------ closing
    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("consumer")

    def close(self, autocommit: bool = True) -> None:
        """Leave the group (committing first if ``autocommit`` and auto-commit are on) and release everything.

        Safe from another thread: a ``poll`` blocking there returns an empty list, then the
        close proceeds; the next call on the consumer raises ClientClosedError.
        """
        _flag("autocommit", autocommit)
        if self._closed:
            return
        self._closing = True
        self._watcher.wake()
        with self._access:  # waits for the call in progress in another thread to return
            if not self._closed:
                self._close(autocommit)

    def _close(self, autocommit: bool) -> None:
        try:
            if self._member is not None:

                def revoke(tps: set[Any]) -> None:
                    if autocommit:
                        self._revoke(tps)

                self._member.close(on_revoke=revoke)
            elif autocommit and self.enable_auto_commit and self._store is not None and self._positions:
                self.commit()
        finally:
            self._closed = True
            for tp in list(self._logs):
                self._forget(tp)
            self._watcher.close()
            if self._store is not None:
                self._store.close()
            self.registry.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
