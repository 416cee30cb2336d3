"""Commits and offset look-ups of a Consumer (logq/client/consumer.py), with kafka-python's names.

- ``commit(offsets=None)`` stores positions (or the given ``{TopicPartition: next offset}``)
  for the group, now.
- ``commit_async(offsets=None, callback=None)`` takes the offsets now (positions at the call
  when ``offsets`` is None) and queues the commit; it is written at the start of the next
  ``poll``/``poll_columns``, or by ``commit()``, ``unsubscribe()`` or ``close()``, whichever
  comes first, as kafka-python runs commit callbacks from ``poll``. Queued commits are written
  one at a time in the order they were made, before any later ``commit()``, so a later commit
  is never overwritten by an earlier one. ``callback(offsets, exception_or_None)`` is called
  exactly once per commit_async, after its write (or its failure, with the LogqError that
  stopped it); an exception a callback raises is re-raised by the call that ran it, after
  every queued commit was written and every callback called.
- ``committed(tp)`` is the committed offset of one partition (an int, or None), as in
  kafka-python; ``committed([tp, ...])`` reads many at once (one read of the offsets file)
  and returns ``{TopicPartition: int or None}``.
- ``beginning_offsets(partitions)`` and ``end_offsets(partitions)``: the log start offset and
  the log end offset (the next offset to be written) of any partitions, assigned or not;
  ``get_watermark_offsets(tp)`` both for one partition, as confluent-kafka names it.
- ``topics()`` is the set of topic names; ``partitions_for_topic(topic)`` the set of its
  partition numbers, or None for a topic that does not exist (as in kafka-python).

``ConsumerOffsets`` is a part of ``Consumer``, which builds the state it declares; it extends
``ConsumerPositions`` (logq/client/consumer_positions.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, overload

from logq.client.consumer_access import one_thread
from logq.client.consumer_config import as_tp, iterable, mapping
from logq.client.consumer_logs import close_quietly
from logq.client.consumer_metrics import ConsumerMetrics
from logq.client.consumer_positions import ConsumerPositions
from logq.errors import CommitFailedError, ConfigError, InvalidOffsetCommitError, LogqError
from logq.groups.member import GroupMember
from logq.storage.log import PartitionLog
from logq.storage.topics import TopicRegistry, partition_path, validate_partition, validate_topic
from logq.types import TopicPartition

__all__ = ["CommitCallback", "ConsumerOffsets"]

log = logging.getLogger("logq.consumer")

CommitCallback = Callable[[dict[TopicPartition, int], LogqError | None], None]


class ConsumerOffsets(ConsumerPositions):
    """The Consumer's commits (sync and async) and offset look-ups (see the module docstring)."""

    registry: TopicRegistry
    auto_commit_interval_ms: int
    fsync_commits: bool
    _member: GroupMember | None
    _metrics: ConsumerMetrics
    _next_commit: float
    _async_commits: list[tuple[dict[TopicPartition, int], CommitCallback | None]]

    # ------------------------------------------------------------------ commits
    @one_thread
    def commit(self, offsets: dict[Any, int] | None = None) -> None:
        """Commit positions (default) or the given {TopicPartition: next offset} map, now.

        Commits queued by ``commit_async`` are written first."""
        self._check_open()
        items = self._commit_items(offsets, "commit")
        self._flush_async_commits()
        self._do_commit(items)

    @one_thread
    def commit_async(self, offsets: dict[Any, int] | None = None, callback: CommitCallback | None = None) -> None:
        """Queue a commit of positions (taken now) or of ``offsets``; written at the next poll.

        ``callback(offsets, exception_or_None)`` is called once, after the write (see the
        module docstring for when and in what order)."""
        self._check_open()
        if callback is not None and not callable(callback):
            raise ConfigError(
                f"callback={callback!r} is invalid: must be None or a callable (offsets, exception_or_None)"
            )
        self._async_commits.append((self._commit_items(offsets, "commit_async"), callback))

    def _commit_items(self, offsets: Any, what: str) -> dict[TopicPartition, int]:
        if self._store is None:
            raise ConfigError(f"{what}() needs a group_id", hint="pass group_id=... to the Consumer")
        if offsets is None:
            return dict(self._positions)
        items = {as_tp(tp): off for tp, off in mapping(offsets, "offsets").items()}
        for tp, off in items.items():  # refused at the call, not later in a poll
            if isinstance(off, bool) or not isinstance(off, int) or off < 0:
                raise InvalidOffsetCommitError(tp.topic, tp.partition, off, "an offset is an int >= 0")
        return items

    def _flush_async_commits(self) -> None:
        """Write the commits ``commit_async`` queued, in order, and call their callbacks."""
        first_error: BaseException | None = None
        while self._async_commits:
            items, callback = self._async_commits.pop(0)
            failure: LogqError | None = None
            try:
                self._do_commit(items)
            except LogqError as e:
                failure = e
            if callback is None:
                if failure is not None:
                    log.warning("commit_async of %d partition(s) failed: %s", len(items), failure)
                continue
            try:
                callback(dict(items), failure)
            except Exception as e:  # the other commits and callbacks still run; raised after them
                first_error = first_error or e
        if first_error is not None:
            raise first_error

    def _commit_positions(self, tps: Iterable[TopicPartition]) -> None:
        """The implicit commit (auto-commit, revoke, unsubscribe, close) of current positions.

        A position past the log end (a ``seek`` beyond it) is committed as the log end, with a
        warning: committed <= log end always holds, the next poll would move there anyway, and
        a close must not fail over a position the user set."""
        items = {tp: self._positions[tp] for tp in tps if tp in self._positions}
        for tp, pos in items.items():
            try:
                end = self._log(tp).log_end_offset
            except (LogqError, OSError):  # the partition is gone (topic deleted): the commit decides
                continue
            if pos > end:
                log.warning(
                    "%s-%d: position %d is past the log end %d; committing %d", tp.topic, tp.partition, pos, end, end
                )
                items[tp] = end
        if items:
            self._do_commit(items)

    def _do_commit(self, items: dict[TopicPartition, int]) -> None:
        assert self._store is not None
        self._next_commit = time.monotonic() + self.auto_commit_interval_ms / 1000
        if not items:
            return
        items, ids = self._logs.stamp(items)
        if not items:
            return
        m = self._member
        t0 = time.perf_counter_ns()
        ok = False
        try:
            self._store.commit(
                items,
                generation=m.generation if m else None,
                member_id=m.member_id if m else None,
                sync=self.fsync_commits,
                log_end=lambda t, p: self._log(TopicPartition(t, p)).log_end_offset,
                topic_ids=ids,
            )
            ok = True
        except CommitFailedError as e:
            if m is not None and not m.assignment():  # nothing assigned yet: say why
                raise CommitFailedError(
                    e.message,
                    hint="nothing is assigned to this member yet (its group forms for initial_rebalance_delay_ms "
                    "after the first member joins); commit after a poll returned records",
                ) from None
            raise
        finally:
            self._metrics.commit_done(time.perf_counter_ns() - t0, ok)

    @overload
    def committed(self, tp: tuple[str, int]) -> int | None: ...
    @overload
    def committed(self, tp: Iterable[Any]) -> dict[TopicPartition, int | None]: ...
    @one_thread
    def committed(self, tp: Any) -> int | None | dict[TopicPartition, int | None]:
        """The committed offset (next to read) of ``tp``, or None when there is none.

        Given a list (or set, or tuple) of partitions instead of one, returns
        ``{TopicPartition: offset or None}`` for all of them, read at once."""
        self._check_open()
        if self._store is None:
            raise ConfigError("committed() needs a group_id", hint="pass group_id=... to the Consumer")
        if _is_one_partition(tp):
            t, p = as_tp(tp)
            return self._store.committed(t, p)
        tps = [as_tp(x) for x in iterable(tp, "partitions")]
        stored = self._store.all() if tps else {}
        return {x: stored.get((x.topic, x.partition)) for x in tps}

    # ------------------------------------------------------------------ look-ups
    @one_thread
    def beginning_offsets(self, partitions: Iterable[Any]) -> dict[TopicPartition, int]:
        """The first offset still in each partition's log (its log start offset)."""
        return {tp: start for tp, (start, _) in self._bounds(partitions).items()}

    @one_thread
    def end_offsets(self, partitions: Iterable[Any]) -> dict[TopicPartition, int]:
        """The log end offset of each partition: the offset the next record written will get."""
        return {tp: end for tp, (_, end) in self._bounds(partitions).items()}

    @one_thread
    def get_watermark_offsets(self, partition: Any) -> tuple[int, int]:
        """(log start offset, log end offset) of one partition, as confluent-kafka's call."""
        tp = as_tp(partition)
        return self._bounds([tp])[tp]

    def _bounds(self, partitions: Iterable[Any]) -> dict[TopicPartition, tuple[int, int]]:
        """(log start offset, log end offset) of each partition, read fresh."""
        self._check_open()
        tps = [as_tp(tp) for tp in iterable(partitions, "partitions")]
        for tp in tps:
            validate_partition(tp.topic, tp.partition, self.registry.get(tp.topic, fresh=True).partitions)
        out: dict[TopicPartition, tuple[int, int]] = {}
        for tp in tps:
            if tp in self._positions:  # read: its log is (or will be) open anyway
                lg = self._log(tp)
                lg.refresh()  # another process may have moved its start (retention, delete_records)
                out[tp] = (lg.log_start_offset, lg.log_end_offset)
                continue
            lg = PartitionLog(
                partition_path(self.root, tp.topic, tp.partition), self.registry.get(tp.topic).config, readonly=True
            )
            try:
                out[tp] = (lg.log_start_offset, lg.log_end_offset)
            finally:
                close_quietly(lg)
        return out

    @one_thread
    def topics(self) -> set[str]:
        """The names of every topic in the data directory."""
        self._check_open()
        return set(self.registry.names())

    @one_thread
    def partitions_for_topic(self, topic: str) -> set[int] | None:
        """The partition numbers of ``topic``; None when no such topic exists (as kafka-python)."""
        self._check_open()
        validate_topic(topic)
        if not self.registry.exists(topic):
            return None
        return set(range(self.registry.get(topic, fresh=True).partitions))


def _is_one_partition(tp: Any) -> bool:
    """A TopicPartition or a (topic, partition) pair (or anything that is not a collection of
    them: as_tp then says what is wrong with it)."""
    if isinstance(tp, tuple) and len(tp) == 2 and isinstance(tp[0], str):
        return True
    return isinstance(tp, (str, bytes)) or not isinstance(tp, Iterable)
