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

- A group that has no live member waits ``initial_rebalance_delay_ms`` (default 300, 0 turns
  it off; each member joining meanwhile extends it) before its first assignment, so members
  started together are assigned once each (logq/groups/startup.py).

The consumer's parts: argument checks in consumer_config.py, the one-thread rule in
consumer_access.py, positions and the calls that move them in consumer_positions.py, commits
(``commit``, ``commit_async``, ``committed``) and offset look-ups (``beginning_offsets``,
``end_offsets``, ``topics``, ...) in consumer_offsets.py, the counters of ``metrics()`` in
consumer_metrics.py, the open (and parked) partition logs and topic incarnations in
consumer_logs.py, fetching and decoding in fetcher.py; this module holds membership
(``subscribe``, ``assign``, ``unsubscribe``), polling and closing.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from re import Pattern
from typing import Any, TypeVar

from logq.client.consumer_access import one_thread
from logq.client.consumer_config import as_tp as as_tp
from logq.client.consumer_config import check_consumer_args, flag, int_at_least, iterable
from logq.client.consumer_logs import PartitionLogs
from logq.client.consumer_metrics import ConsumerMetrics
from logq.client.consumer_offsets import CommitCallback, ConsumerOffsets
from logq.client.consumer_positions import Timestamp as Timestamp
from logq.client.fetcher import FIRST_FETCH_BYTES as FIRST_FETCH_BYTES
from logq.client.fetcher import Fetcher
from logq.client.handles import DEFAULT_MAX_OPEN_PARTITIONS
from logq.client.notify import Watcher
from logq.client.serde import get_deserializer
from logq.client.timestamps import to_millis as to_millis
from logq.codec.columnar import RecordColumns
from logq.errors import (
    ConfigError,
    TopicDeletedError,
    UnknownTopicError,
)
from logq.groups.member import GroupMember, group_dir
from logq.groups.offsets import OffsetStore
from logq.groups.startup import DEFAULT_INITIAL_REBALANCE_DELAY_MS, check_delay
from logq.storage.topics import TopicRegistry, partition_path, validate_partition
from logq.types import OffsetAndTimestamp, Record, TopicPartition

__all__ = ["Consumer", "Record", "TopicPartition", "OffsetAndTimestamp"]

log = logging.getLogger("logq.consumer")
_GROUP_CHECK_S = 0.05  # how often a waiting poll re-checks the group for rebalances


_Out = TypeVar("_Out", list[Record], RecordColumns)


class Consumer(ConsumerOffsets):
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
        initial_rebalance_delay_ms: int = DEFAULT_INITIAL_REBALANCE_DELAY_MS,
    ) -> None:
        self._closed = True  # until built
        check_delay(initial_rebalance_delay_ms)
        check_consumer_args(
            data_dir,
            topics,
            auto_offset_reset=auto_offset_reset,
            positive_ints={
                "max_poll_records": max_poll_records,
                "fetch_max_bytes": fetch_max_bytes,
                "auto_commit_interval_ms": auto_commit_interval_ms,
                "session_timeout_ms": session_timeout_ms,
                "max_poll_interval_ms": max_poll_interval_ms,
            },
            flags={"enable_auto_commit": enable_auto_commit, "fsync_commits": fsync_commits},
            callbacks={"on_assign": on_assign, "on_revoke": on_revoke},
            idents={"group_id": group_id, "member_id": member_id},
            consumer_timeout_ms=consumer_timeout_ms,
            max_open_partitions=max_open_partitions,
        )
        self.registry = TopicRegistry(data_dir)
        self.root = self.registry.root
        self.max_open_partitions = max_open_partitions
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.enable_auto_commit = enable_auto_commit and group_id is not None
        self.auto_commit_interval_ms = auto_commit_interval_ms
        self.max_poll_records = max_poll_records
        self.session_timeout_ms = session_timeout_ms
        self.max_poll_interval_ms = max_poll_interval_ms
        self.fsync_commits = fsync_commits
        self.consumer_timeout_ms = consumer_timeout_ms
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self._init_group(member_id, on_assign, on_revoke)
        self._init_fetch(fetch_max_bytes, key_deserializer, value_deserializer)
        self._logs = PartitionLogs(self.registry, max_open_partitions)
        self._init_runtime()
        self._start(topics)

    def _init_group(
        self,
        member_id: str | None,
        on_assign: Callable[[set[TopicPartition]], None] | None,
        on_revoke: Callable[[set[TopicPartition]], None] | None,
    ) -> None:
        """The group side: membership (on subscribe), committed offsets, the assignment."""
        self._member_id = member_id
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._member: GroupMember | None = None
        group_id = self.group_id
        self._store: OffsetStore | None = OffsetStore(group_dir(self.root, group_id)) if group_id else None
        self._subscription: list[str] | Pattern[str] | None = None
        self._manual: list[TopicPartition] = []
        self._async_commits: list[tuple[dict[TopicPartition, int], CommitCallback | None]] = []

    def _init_fetch(self, fetch_max_bytes: int, key_deserializer: Any, value_deserializer: Any) -> None:
        """Positions, and the Fetcher that reads from them (logq/client/fetcher.py)."""
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._metrics = ConsumerMetrics()
        self._fetcher = Fetcher(
            self.registry,
            self._positions,
            fetch_max_bytes=fetch_max_bytes,
            key_deserializer=None if key_deserializer is None else get_deserializer(key_deserializer),
            value_deserializer=None if value_deserializer is None else get_deserializer(value_deserializer),
            open_log=self._readable_log,
            out_of_range=self._out_of_range,
        )

    def _start(self, topics: Sequence[str]) -> None:
        """Read the topics given to the constructor: as the group assigns them, or all their partitions."""
        if topics:
            if self.group_id is not None:
                self.subscribe(list(topics))
            else:
                self.assign([TopicPartition(t, p) for t in topics for p in range(self.registry.get(t).partitions)])

    def _init_runtime(self) -> None:
        """The state of polls and of the calls in progress (set last: the consumer is then open)."""
        self._watcher = Watcher()
        self._next_commit = time.monotonic() + self.auto_commit_interval_ms / 1000
        self._access = threading.RLock()  # held by the thread inside a call (see logq/client/consumer_access.py)
        self._owner = 0
        self._wakeup = False  # wakeup() called: the poll in progress (or the next) returns []
        self._closing = False  # close() called from another thread: the poll in progress returns []
        self._was_woken = False  # the last poll ended on a wakeup()
        self._closed = False

    @property
    def fetch_max_bytes(self) -> int:
        """The most bytes one poll fetches from a partition (unless one batch is larger)."""
        return self._fetcher.fetch_max_bytes

    @fetch_max_bytes.setter
    def fetch_max_bytes(self, v: int) -> None:
        self._fetcher.fetch_max_bytes = v

    # ------------------------------------------------------------------ membership
    @one_thread
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
            topics = iterable(topics, "topics")
            for t in topics:
                self.registry.get(t)  # UnknownTopicError now, not in the background
            self._subscription = list(topics)
        self._manual = []
        self._flush_async_commits()
        if self._member is None:
            self._member = GroupMember(
                self.root,
                self.group_id,
                self._subscribed_partitions,
                member_id=self._member_id,
                session_timeout_ms=self.session_timeout_ms,
                max_poll_interval_ms=self.max_poll_interval_ms,
                initial_rebalance_delay_ms=self.initial_rebalance_delay_ms,
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

    @one_thread
    def assign(self, partitions: Iterable[Any]) -> None:
        """Read exactly these partitions, without group coordination."""
        self._check_open()
        if self._member is not None:
            raise ConfigError(
                "this consumer is subscribed to a group", hint="use a second Consumer for manual assignment"
            )
        tps = []
        for tp in iterable(partitions, "partitions"):
            t, p = as_tp(tp)
            validate_partition(t, p, self.registry.get(t).partitions)
            tps.append(TopicPartition(t, p))
        for tp in set(self._positions) - set(tps):
            self._forget(tp)
        self._manual = tps
        self._init_positions(tps)

    @one_thread
    def assignment(self) -> set[TopicPartition]:
        if self._member is not None:
            return {TopicPartition(*tp) for tp in self._member.owned()}
        return set(self._manual)

    @one_thread
    def unsubscribe(self) -> None:
        """Stop reading: leave the group (a subscription) or drop the manual assignment.

        Commits queued by ``commit_async`` are written first. A member leaves as at ``close()``:
        positions are committed when auto-commit is on, ``on_revoke`` is called with its
        partitions, and the group rebalances without it. A manual assignment is dropped (its
        positions committed first when auto-commit is on). ``subscribe()`` or ``assign()`` again
        to read on."""
        self._check_open()
        self._flush_async_commits()
        try:
            if self._member is not None:
                self._member.close(on_revoke=self._revoke)
            elif self.enable_auto_commit and self._positions:
                self._commit_positions(list(self._positions))
        finally:
            self._member = None
            self._subscription = None
            self._manual = []
            for tp in list(self._positions):
                self._forget(tp)

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
        self._fetcher.forget(tp)
        self._paused.discard(tp)
        self._watcher.unwatch(partition_path(self.root, tp.topic, tp.partition))
        self._logs.close(tp)
        if not any(t.topic == tp.topic for t in self._positions):
            self._logs.incarnations.pop(tp.topic, None)

    # ------------------------------------------------------------------ positions
    def _check_incarnations(self, topics: Iterable[str]) -> None:
        """Follow topics deleted or created again since positions were taken (see the module docstring)."""
        for topic in set(topics):
            changed = self._logs.changed(topic)
            if changed is None:
                continue
            inc, now = changed
            tps = sorted(tp for tp in self._positions if tp.topic == topic)
            for tp in tps:
                self._forget(tp)
            self._logs.incarnations.pop(topic, None)
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

    # ------------------------------------------------------------------ polling
    @one_thread
    def poll(self, timeout: float | None = 1.0, max_records: int | None = None) -> list[Record]:
        """Records from the assigned partitions; waits up to ``timeout`` seconds for some.

        ``timeout=None`` waits until records arrive, ``wakeup()`` or ``close()`` (from
        another thread) ends the wait: then it returns an empty list. ``max_records``
        (default ``max_poll_records``) is an int >= 1.
        """
        limit = self._poll_args(timeout, max_records)
        return self._poll(timeout, limit, self._fetch, list)

    @one_thread
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
        if self._fetcher.deserializes:
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
        return self.max_poll_records if max_records is None else int_at_least("max_records", max_records, 1)

    def _poll(self, timeout: float | None, limit: int, fetch: Callable[[int], _Out], empty: Callable[[], _Out]) -> _Out:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._flush_async_commits()
        self._sync_group()
        if self.enable_auto_commit and time.monotonic() >= self._next_commit and self._store is not None:
            self._commit_positions(list(self._positions))
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

    def _readable(self) -> list[TopicPartition]:
        """The partitions a poll reads, once topics deleted or created again are followed."""
        tps = self._fetchable()
        if not tps:
            return []
        self._check_incarnations(tp.topic for tp in tps)
        return self._fetchable()

    def _fetch(self, limit: int) -> list[Record]:
        self._fetcher.raise_pending(self._paused)
        tps = self._readable()
        if not tps:
            return []
        t0 = time.perf_counter_ns()
        out = self._fetcher.fetch(tps, limit)
        self._metrics.fetched(time.perf_counter_ns() - t0, len(out))
        return out

    def _fetch_columns(self, limit: int) -> RecordColumns:
        tps = self._readable()
        if not tps:
            return RecordColumns.empty()
        t0 = time.perf_counter_ns()
        out = self._fetcher.fetch_columns(tps, limit)
        self._metrics.fetched(time.perf_counter_ns() - t0, len(out))
        return out

    @one_thread
    def metrics(self) -> dict[str, int | float]:
        """Counters named as Kafka's consumer metrics (logq/client/consumer_metrics.py lists them)."""
        self._check_open()
        lags = self.lag()
        stats = self._fetcher.stats
        return self._metrics.snapshot(
            bytes_read=stats["bytes_read"],
            fetches=stats["fetches"],
            lag_max=max(lags.values(), default=0),
            assigned=len(self.assignment()),
        )

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

    # ------------------------------------------------------------------ closing
    def close(self, autocommit: bool = True) -> None:
        """Leave the group (committing first if ``autocommit`` and auto-commit are on) and release everything.

        Safe from another thread: a ``poll`` blocking there returns an empty list, then the
        close proceeds; the next call on the consumer raises ClientClosedError.
        """
        flag("autocommit", autocommit)
        if self._closed:
            return
        self._closing = True
        self._watcher.wake()
        with self._access:  # waits for the call in progress in another thread to return
            if not self._closed:
                self._close(autocommit)

    def _close(self, autocommit: bool) -> None:
        try:
            try:
                self._flush_async_commits()
            except Exception:  # a commit callback failed: closing goes on
                log.exception("a commit_async callback raised while the consumer was closing")
            if self._member is not None:

                def revoke(tps: set[Any]) -> None:
                    if autocommit:
                        self._revoke(tps)

                self._member.close(on_revoke=revoke)
            elif autocommit and self.enable_auto_commit and self._store is not None and self._positions:
                self._commit_positions(list(self._positions))
        finally:
            self._closed = True
            for tp in list(self._logs.logs):
                self._forget(tp)
            self._watcher.close()
            if self._store is not None:
                self._store.close()
            self.registry.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
