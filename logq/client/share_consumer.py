"""ShareConsumer: queues on the log (Kafka's share groups, KIP-932), embedded.

Any number of ShareConsumers with one ``group_id``, in any number of processes, share every
partition of their topics: each ``poll`` *acquires* records (locks them to this consumer for
``lock_duration_ms``) and each record is then acknowledged on its own: "accept" (done),
"release" (back to available, optionally not before ``delay_ms``) or "reject" (archived, and
written to ``dead_letter_topic``). The rules and the durable state are in
logq/groups/share_state.py and logq/groups/share_store.py; the guide is docs/queues.md.

- ``acknowledgement_mode="implicit"`` (Kafka's default): the next ``poll`` or ``commit``
  accepts every record delivered and not acknowledged. ``"explicit"``: every record of a poll
  must be acknowledged before the next poll (ShareAcknowledgementError otherwise, as Kafka's
  IllegalStateException).
- Acknowledgements are applied at the next ``poll``, ``commit`` or ``close`` (as Kafka sends
  them with the next fetch or commit); ``commit()`` also fdatasyncs the group's journals, so
  what it returns is durable. It returns the records whose acknowledgement came too late
  (their lock had expired, so another consumer may have them now).
- ``close()`` applies and commits acknowledgements made, then releases the records still
  acquired (their delivery counts are kept). A process killed with kill -9 gives its records
  back at once (its member file is unlocked), with the delivery counted.
- Waiting: inotify (logq/client/notify.py) on the partitions, the group's journals and member
  files (a killed consumer wakes the others), with the wait bounded by the next lock expiry
  or delayed record's time; no timer loop.
- ``redelivery_backoff_ms`` (0: none): a record whose lock expired or whose consumer died is
  not acquired again before this long ("fixed"), or ``redelivery_backoff_ms * 2 ** (count -
  1)`` ("exponential", capped at ``max_redelivery_backoff_ms``).
- ``priorities={"urgent": 10, "bulk": 1}``: ``priority_mode="strict"`` (default) fills a poll
  from the highest-weight topic first, a lower topic only gets what the higher ones did not
  fill; ``"weighted"`` orders the topics at each poll by a weighted random draw, so a topic of
  weight 10 is tried first about 10 times as often as one of weight 1 while both have records.
- One thread at a time (logq/client/consumer_access.py); ``wakeup()`` and ``close()`` may be
  called from any thread.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from logq.client.consumer_access import one_thread
from logq.client.consumer_config import int_at_least
from logq.client.consumer_logs import PartitionLogs
from logq.client.dead_letters import DeadLetterWriter
from logq.client.notify import Watcher
from logq.client.producer import Producer
from logq.client.serde import get_deserializer
from logq.client.share_config import (
    ACK_MODES,
    PRIORITY_MODES,
    RESETS,
    bounded,
    check_choice,
    check_clock,
    check_group,
    check_priorities,
    check_topics,
    make_policy,
    record_times,
)
from logq.codec.batch import BatchRecord
from logq.errors import ClientClosedError, ConfigError, DeserializationError, LogqError, ShareAcknowledgementError
from logq.groups.share_state import ACK_TYPES, Archived, Candidate, SharePartitionState
from logq.groups.share_store import ShareGroupStore, acquire_from_log
from logq.storage.topics import TopicRegistry, partition_path
from logq.types import Record, ShareRecord, TopicPartition

__all__ = ["ShareConsumer", "ShareRecord"]

log = logging.getLogger("logq.share")

Key = tuple[TopicPartition, int]
_READ_BYTES = 64 << 10  # one read of the log decodes the batches in about this many bytes
_PREFETCH_RECORDS = 4096  # decoded records kept per partition for the next polls
_MAX_LATE = 10_000  # late acknowledgements kept for commit() to return (the latest)
T = TypeVar("T")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ShareConsumer:
    def __init__(
        self,
        data_dir: str,
        topics: str | Iterable[str],
        *,
        group_id: str,
        acknowledgement_mode: str = "implicit",
        lock_duration_ms: int = 30_000,
        delivery_count_limit: int = 5,
        dead_letter_topic: str | None = None,
        dead_letter_copy_record: bool = True,
        max_in_flight: int = 2000,
        auto_offset_reset: str = "latest",
        priorities: dict[str, int] | None = None,
        priority_mode: str = "strict",
        record_ttl_ms: int | None = None,
        redelivery_backoff_ms: int = 0,
        redelivery_backoff: str = "fixed",
        max_redelivery_backoff_ms: int = 3_600_000,
        max_poll_records: int = 500,
        key_deserializer: Any = None,
        value_deserializer: Any = None,
        clock: Callable[[], int] | None = None,
        lock_timeout_ms: int = 10_000,
    ) -> None:
        self._closed = True  # until built
        if not isinstance(data_dir, (str, os.PathLike)):
            raise ConfigError(f"data_dir must be a path (str or os.PathLike), got {data_dir!r}")
        self.topics = check_topics(topics)
        self.group_id = check_group(group_id)
        self.acknowledgement_mode = check_choice("acknowledgement_mode", acknowledgement_mode, ACK_MODES)
        self.auto_offset_reset = check_choice("auto_offset_reset", auto_offset_reset, RESETS)
        self.priority_mode = check_choice("priority_mode", priority_mode, PRIORITY_MODES)
        self.priorities = check_priorities(priorities, self.topics)
        self.policy = make_policy(
            lock_duration_ms,
            delivery_count_limit,
            max_in_flight,
            (redelivery_backoff_ms, redelivery_backoff, max_redelivery_backoff_ms),
        )
        self.record_ttl_ms = None if record_ttl_ms is None else int_at_least("record_ttl_ms", record_ttl_ms, 1)
        if not isinstance(dead_letter_copy_record, bool):
            raise ConfigError(f"dead_letter_copy_record must be a bool, got {dead_letter_copy_record!r}")
        self.dead_letter_copy_record = dead_letter_copy_record
        self.max_poll_records = int_at_least("max_poll_records", max_poll_records, 1)
        int_at_least("lock_timeout_ms", lock_timeout_ms, 1)
        self._clock = check_clock(clock) or _wall_ms
        self._kdes = None if key_deserializer is None else get_deserializer(key_deserializer)
        self._vdes = None if value_deserializer is None else get_deserializer(value_deserializer)
        self.registry = TopicRegistry(os.fspath(data_dir))
        try:
            self.root = self.registry.root
            self._tps = [TopicPartition(t, p) for t in self.topics for p in range(self.registry.get(t).partitions)]
            self._dlq_topic = None if dead_letter_topic is None else check_topics(dead_letter_topic)[0]
            if self._dlq_topic is not None:
                self.registry.get(self._dlq_topic)  # UnknownTopicError now, not at the first archive
            self._store = ShareGroupStore(self.root, self.group_id, lock_timeout_ms=lock_timeout_ms)
        except BaseException:
            self.registry.close()
            raise
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._logs = PartitionLogs(self.registry, 64)
        self._dlq: DeadLetterWriter | None = None
        self._delivered: dict[Key, ShareRecord] = {}  # returned by poll, not acknowledged yet
        self._acks: dict[TopicPartition, list[tuple[ShareRecord, str, int]]] = {}  # (record, type, delay ms)
        self._late: list[ShareRecord] = []  # acknowledgements refused: the lock had expired
        self._dirty: set[TopicPartition] = set()  # journals written since the last commit
        self._next_due: dict[TopicPartition, int | None] = {}
        self._decoded: dict[TopicPartition, dict[int, BatchRecord]] = {}  # log records read, by offset
        self._rotate = 0
        self._rng = random.Random(self._store.member_id)
        self._watcher = Watcher()
        for tp in self._tps:
            self._watcher.watch(partition_path(self.root, tp.topic, tp.partition))
        self._watcher.watch(self._store.gdir)
        self._watcher.watch(f"{self._store.gdir}/members", closes=True)
        self._access = threading.RLock()
        self._owner = 0
        self._wakeup = False
        self._closing = False
        self._closed = False

    @property
    def member_id(self) -> str:
        assert self._store.member_id is not None
        return self._store.member_id

    # ------------------------------------------------------------------ polling

    @one_thread
    def poll(self, timeout: float | None = 1.0, max_records: int | None = None) -> list[ShareRecord]:
        """Acquire up to ``max_records`` records (default ``max_poll_records``), waiting up to
        ``timeout`` seconds (None: until records, ``wakeup()`` or ``close()``) for some."""
        self._check_open()
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout < float("inf")
        ):
            raise ConfigError(f"timeout={timeout!r} is invalid: None or a number of seconds >= 0")
        limit = self.max_poll_records if max_records is None else int_at_least("max_records", max_records, 1)
        self._settle_previous_poll()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._watcher.drain()
            if self._closing or self._wakeup:  # acquire nothing a closing consumer would release
                self._wakeup = False
                self._apply_acks(sync=False)
                return []
            # a partition's queued acknowledgements are applied in the same lock hold as its
            # acquisition (first, so a record released now may be acquired again); those of
            # partitions this poll did not reach, right after
            out = self._acquire(limit)
            self._apply_acks(sync=False)
            if out:
                return out
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return out
            self._watcher.wait(self._wait_s(left))

    def _wait_s(self, left: float | None) -> float | None:
        """Seconds to wait: until the poll's deadline or the next lock expiry or delayed record."""
        now = self._clock()
        dues = [d for d in self._next_due.values() if d is not None]
        due = None if not dues else max(0.0, (min(dues) - now) / 1000)
        if due is None:
            return left
        return due if left is None else min(left, due)

    def _settle_previous_poll(self) -> None:
        if not self._delivered:
            return
        if self.acknowledgement_mode == "explicit":
            n = len(self._delivered)
            raise ShareAcknowledgementError(
                f"{n} record(s) of the last poll are not acknowledged (acknowledgement_mode='explicit')",
                hint="acknowledge(record, 'accept'|'release'|'reject') each of them before polling again",
            )
        for rec in list(self._delivered.values()):
            self._queue_ack(rec, "accept", 0)

    def _order(self) -> list[TopicPartition]:
        """Partitions in the order this poll tries them (see the module docstring)."""
        n = len(self._tps)
        self._rotate = (self._rotate + 1) % max(n, 1)
        rotated = self._tps[self._rotate :] + self._tps[: self._rotate]
        if not self.priorities:
            return rotated
        if self.priority_mode == "strict":
            rank = {t: -w for t, w in self.priorities.items()}
        else:
            weights = dict(self.priorities)
            rank = {}
            while weights:
                t = self._rng.choices(list(weights), list(weights.values()))[0]
                rank[t] = len(rank)
                del weights[t]
        return sorted(rotated, key=lambda tp: rank[tp.topic])

    def _acquire(self, limit: int) -> list[ShareRecord]:
        out: list[ShareRecord] = []
        for tp in self._order():
            if len(out) >= limit:
                break
            got = self._acquire_from(tp, limit - len(out))
            try:
                out.extend(self._records(tp, got))
            except DeserializationError as e:
                # nothing of this poll is returned: the failing record is released (its delivery
                # counts, so one that never deserializes is archived at the limit), the others
                # are given back as never delivered
                self._release_now(tp, e.offset)
                self._give_back(out, [(tp, off) for off, _ in got if off != e.offset])
                raise
        for rec in out:
            self._delivered[(TopicPartition(rec.topic, rec.partition), rec.offset)] = rec
        return out

    def _release_now(self, tp: TopicPartition, offset: int | None) -> None:
        now, limit = self._clock(), self.policy.delivery_count_limit
        self._update(tp, lambda s: s.acknowledge(self.member_id, [offset or 0], "release", now_ms=now, limit=limit))

    def _give_back(self, built: list[ShareRecord], more: list[Key]) -> None:
        by_tp: dict[TopicPartition, list[int]] = {}
        for key in [(TopicPartition(r.topic, r.partition), r.offset) for r in built] + more:
            by_tp.setdefault(key[0], []).append(key[1])
        for tp, offs in by_tp.items():
            self._update(tp, functools.partial(self._give_back_in, offs))

    def _give_back_in(self, offsets: list[int], state: SharePartitionState) -> list[int]:
        return state.give_back(self.member_id, offsets)

    def _update(self, tp: TopicPartition, change: Callable[[SharePartitionState], T], sync: bool = False) -> T:
        """``change`` applied to ``tp``'s state under its flock (logq/groups/share_store.py)."""
        out = self._store.update(
            tp,
            change,
            start_offset=lambda: self._first_offset(tp),
            policy=self.policy,
            now_ms=self._clock(),
            on_archive=self._dead_letter,
            sync=sync,
        )
        self._dirty.add(tp)
        return out

    def _first_offset(self, tp: TopicPartition) -> int:
        """Where a share-partition without state starts (auto_offset_reset)."""
        lg = self._logs.get(tp)
        return lg.log_end_offset if self.auto_offset_reset == "latest" else lg.log_start_offset

    def _acquire_from(self, tp: TopicPartition, want: int) -> list[tuple[int, int]]:
        """Apply ``tp``'s queued acknowledgements, then acquire up to ``want`` of its records:
        (offset, delivery count) pairs; one lock hold."""
        lg = self._logs.get(tp)
        cache = self._decoded.setdefault(tp, {})
        policy, now = self.policy, self._clock()
        items = self._acks.get(tp, [])
        ack = self._ack_change(items) if items else None
        lost: list[int] = []

        def change(state: SharePartitionState) -> list[tuple[int, int]]:
            if ack is not None:
                lost.extend(ack(state))
            got = acquire_from_log(
                state,
                self.member_id,
                now,
                want,
                policy,
                lg.log_start_offset,
                lg.log_end_offset,
                lambda offset, count: self._candidates(lg, offset, count, cache),
            )
            self._next_due[tp] = state.next_deadline_ms(now)
            return got

        got = self._update(tp, change)
        if items:
            self._acked(tp, items, set(lost))
        return got

    def _candidates(self, lg: Any, offset: int, count: int, cache: dict[int, BatchRecord]) -> list[Candidate]:
        """The next ``count`` records of the log from ``offset``, with their delay and expiry."""
        out: list[Candidate] = []
        pos = offset
        while len(out) < count:
            if pos not in cache:
                self._read(lg, [pos], cache)
                if pos not in cache:
                    break  # the log ends here
            r = cache[pos]
            out.append(Candidate(pos, *record_times(r.headers, r.timestamp, self.record_ttl_ms)))
            pos += 1
        return out

    def _read(self, lg: Any, offsets: Iterable[int], cache: dict[int, BatchRecord]) -> None:
        """Decode the batches holding ``offsets`` into ``cache`` (which keeps the records decoded
        beyond them for the next polls: the log never changes what an offset holds)."""
        for off in sorted(offsets):
            if off not in cache:
                if len(cache) > _PREFETCH_RECORDS:
                    for k in [k for k in cache if k < off]:
                        del cache[k]
                    if len(cache) > _PREFETCH_RECORDS:
                        cache.clear()
                for r in lg.read(off, _READ_BYTES).records(lg.config.max_decompressed_bytes):
                    cache.setdefault(r.offset, r)

    def _records(self, tp: TopicPartition, got: list[tuple[int, int]]) -> list[ShareRecord]:
        cache = self._decoded.setdefault(tp, {})
        self._read(self._logs.get(tp), (o for o, _ in got), cache)
        out = []
        for off, count in got:
            r = cache[off]
            key, value = r.key, r.value
            what = "key"
            try:
                if self._kdes is not None:
                    key = self._kdes(key)
                what = "value"
                if self._vdes is not None:
                    value = self._vdes(value)
            except DeserializationError:
                raise
            except Exception as e:
                raise DeserializationError(
                    f"the {what} deserializer failed on {tp.topic}-{tp.partition}@{off}: {e!r}",
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=off,
                    hint="the records of this poll were released; the record is archived at the delivery limit",
                ) from e
            out.append(ShareRecord(tp.topic, tp.partition, off, r.timestamp, key, value, tuple(r.headers), count))
        return out

    def _dead_letter(self, tp: tuple[str, int], archived: list[Archived]) -> None:
        """Write the dead letters of records just archived (before the archive is journaled)."""
        if self._dlq_topic is None:
            for a in archived:
                log.info("share group %s: %s-%d@%d archived (%s)", self.group_id, tp[0], tp[1], a.offset, a.reason)
            return
        if self._dlq is None:
            # fsync="always": a dead letter is on disk before the archive it stands for can be
            # made durable by a commit, so a power cut never keeps the archive without it
            producer = Producer(self.root, fsync="always")
            self._dlq = DeadLetterWriter(producer, self._dlq_topic, self.group_id, self.dead_letter_copy_record)
        lg = self._logs.get(TopicPartition(*tp))
        cache = self._decoded.setdefault(TopicPartition(*tp), {})
        self._read(lg, (a.offset for a in archived), cache)
        for a in archived:
            r = cache[a.offset]
            rec = Record(tp[0], tp[1], r.offset, r.timestamp, r.key, r.value, tuple(r.headers))
            self._dlq.write(rec, a.reason, a.delivery_count)
        self._dlq.flush()

    # ------------------------------------------------------------------ acknowledging

    def _delivered_key(self, record: Any) -> Key:
        if not isinstance(record, ShareRecord):
            raise ShareAcknowledgementError(
                f"expected a ShareRecord returned by poll(), got {type(record).__name__}",
                hint="acknowledge the records this ShareConsumer's poll() returned",
            )
        key = (TopicPartition(record.topic, record.partition), record.offset)
        if self._delivered.get(key) != record:
            raise ShareAcknowledgementError(
                f"{record.topic}-{record.partition}@{record.offset} is not a record this consumer delivered "
                "and has not acknowledged yet",
                hint="acknowledge each record of the last poll once",
            )
        return key

    def _queue_ack(self, rec: ShareRecord, kind: str, delay_ms: int) -> None:
        key = (TopicPartition(rec.topic, rec.partition), rec.offset)
        del self._delivered[key]
        self._acks.setdefault(key[0], []).append((rec, kind, delay_ms))

    @one_thread
    def acknowledge(self, record: ShareRecord, type: str = "accept", delay_ms: int | None = None) -> None:
        """Acknowledge one record of the last poll: "accept", "release" (available again, not
        before ``delay_ms`` when given) or "reject" (archived, dead-lettered). Applied at the next
        poll, commit or close."""
        self._check_open()
        if type not in ACK_TYPES:
            raise ConfigError(f"type={type!r} is invalid: must be one of {', '.join(map(repr, ACK_TYPES))}")
        if delay_ms is not None:
            if type != "release":
                raise ConfigError(f"delay_ms applies to 'release' only, not {type!r}")
            bounded("delay_ms", delay_ms, 0, 366 * 86_400_000)
        self._delivered_key(record)
        self._queue_ack(record, type, delay_ms or 0)

    @one_thread
    def renew(self, record: ShareRecord) -> bool:
        """Extend the lock of a record of the last poll (not yet acknowledged) by
        ``lock_duration_ms`` from now; False when its lock had already expired (another
        consumer may have it: its work may be repeated)."""
        self._check_open()
        tp, off = self._delivered_key(record)
        now, lock_ms = self._clock(), self.policy.lock_ms
        lost = self._update(tp, lambda s: s.renew(self.member_id, [off], now_ms=now, lock_ms=lock_ms))
        return not lost

    def _apply_acks(self, sync: bool, quiet: bool = False) -> None:
        """Apply queued acknowledgements, one lock hold per partition; with ``sync``, fdatasync
        the journals written since the last commit. ``quiet`` (closing): a partition that fails
        is logged and the others go on."""
        for tp in sorted(set(self._acks) | (self._dirty if sync else set())):
            items = self._acks.get(tp, [])
            try:
                lost = set(self._ack_partition(tp, items, sync))
            except LogqError as e:
                if not quiet:
                    raise
                log.warning("share group %s: acknowledgements of %s-%d not applied: %s", self.group_id, *tp, e)
                lost = set()
            self._acked(tp, items, lost)
        if sync:
            self._dirty.clear()

    def _acked(self, tp: TopicPartition, items: list[tuple[ShareRecord, str, int]], lost: set[int]) -> None:
        """``tp``'s queued acknowledgements were applied; those refused (``lost``) are late."""
        self._acks.pop(tp, None)
        self._late.extend(rec for rec, _, _ in items if rec.offset in lost)
        del self._late[:-_MAX_LATE]

    def _ack_change(self, items: list[tuple[ShareRecord, str, int]]) -> Callable[[SharePartitionState], list[int]]:
        """The change applying ``items`` (acknowledgements of one partition): returns the
        offsets refused because this member no longer holds them."""
        now, limit = self._clock(), self.policy.delivery_count_limit
        groups: dict[tuple[str, int], list[int]] = {}
        for rec, kind, delay in items:
            groups.setdefault((kind, delay), []).append(rec.offset)

        def change(state: SharePartitionState) -> list[int]:
            lost: list[int] = []
            for (kind, delay), offs in groups.items():
                lost += state.acknowledge(self.member_id, offs, kind, now_ms=now, limit=limit, delay_ms=delay)
            return lost

        return change

    def _ack_partition(self, tp: TopicPartition, items: list[tuple[ShareRecord, str, int]], sync: bool) -> list[int]:
        return self._update(tp, self._ack_change(items), sync)

    @one_thread
    def commit(self) -> list[ShareRecord]:
        """Apply the acknowledgements made (implicit mode: accept every record delivered) and
        make them durable (fdatasync). Returns the records whose acknowledgement was refused
        since the last commit because their lock had expired (another consumer may have
        processed them too)."""
        self._check_open()
        if self.acknowledgement_mode == "implicit":
            for rec in list(self._delivered.values()):
                self._queue_ack(rec, "accept", 0)
        self._apply_acks(sync=True)
        late, self._late = self._late, []
        return late

    # ------------------------------------------------------------------ life

    def wakeup(self) -> None:
        """End the poll in progress (or the next one) now, from any thread: it returns []."""
        if not self._closed:
            self._wakeup = True
            self._watcher.wake()

    def _check_open(self) -> None:
        if self._closed or self._closing:
            raise ClientClosedError("share consumer")

    def close(self) -> None:
        """Apply and commit the acknowledgements made, release the records still acquired
        (available again, counts kept) and leave the group. Idempotent; from any thread."""
        if self._closed or self._closing:
            return
        self._closing = True
        self._watcher.wake()
        with self._access:
            try:
                for rec in list(self._delivered.values()):
                    self._queue_ack(rec, "release", 0)
                self._apply_acks(sync=True, quiet=True)
            finally:
                self._release_resources()

    def _release_resources(self) -> None:
        self._closed = True
        for closer in (self._store.close, self._watcher.close, self.registry.close):
            try:
                closer()
            except (LogqError, OSError) as e:
                log.warning("closing share consumer: %s", e)
        for tp in self._tps:
            self._logs.close(tp)
        if self._dlq is not None:
            self._dlq.producer.close()

    def __enter__(self) -> ShareConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        try:  # never closed: leave the group (records come back to others) without flushing
            self._closed = True
            self._store.close()
            self._watcher.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"member {self._store.member_id}"
        return f"ShareConsumer(group_id={self.group_id!r}, topics={self.topics!r}, {state})"

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer shares with the group's other members (all of its topics')."""
        return set(self._tps)
