"""Retention and purges: moving the log start offset and deleting whole oldest segments.

Kafka's rules, segment by segment from the oldest: a segment goes
when the next segment starts at or below the log start offset (a purge moved it), when its
largest timestamp is older than ``retention_ms``, or when the partition would still hold at
least ``retention_bytes`` without it. The first segment that no rule removes stops the walk.
When the walk reaches a non-empty active segment that the rules remove too (an idle topic
whose data all expired), a new empty segment is rolled first, as Kafka does, so the log
always keeps one segment and its end offset.

Retention runs when a segment rolls, on demand (``PartitionLog.enforce_retention``,
``Admin.enforce_retention``) and every ``retention_check_interval_ms`` while a writer has
the partition open (:class:`RetentionScheduler`: one daemon thread per process for all open
writers, Kafka's ``log.retention.check.interval.ms``).

Order on disk (crash-safe for readers and other writers): the new log start offset is
written to ``logq.state`` first, then the segment files are unlinked. A crash in between
leaves segments below the recorded start, which the next open deletes. Processes that
still hold an unlinked segment open keep reading it safely; they catch up with the new start
on their next operation.

The caller holds the partition's op lock and has caught up with other writers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable

from logq.config import LogConfig
from logq.storage import files as _fs
from logq.storage.segment import Segment
from logq.storage.segments import SegmentList
from logq.storage.state import PartitionState

__all__ = ["apply_retention", "move_log_start", "RetentionScheduler", "scheduler"]

_log = logging.getLogger("logq.retention")


def apply_retention(
    segments: SegmentList,
    state: PartitionState,
    config: LogConfig,
    now_ms: float | None,
    largest_timestamp: Callable[[Segment], int],
    roll: Callable[[], None] | None = None,
) -> int:
    """Delete the oldest segments past retention; return how many went.

    ``largest_timestamp`` must come from a checked (or rebuilt) time index: a bad index
    must never drive retention. ``roll`` seals the active segment and starts an empty one;
    without it the active segment is never removed.
    """
    now = time.time() * 1000 if now_ms is None else now_ms
    total = sum(s.size for s in segments)
    n = 0
    for i in range(len(segments)):
        seg = segments[i]
        if i == len(segments) - 1:
            if roll is None or seg.size == 0 or not _expired(seg, total, config, now, largest_timestamp):
                break
            roll()  # the walk reached the active segment and it goes too: keep an empty one
        elif segments[i + 1].base_offset <= state.log_start_offset:
            pass
        elif config.retention_ms >= 0 and now - largest_timestamp(seg) > config.retention_ms:
            pass
        elif config.retention_bytes >= 0 and total - seg.size >= config.retention_bytes:
            pass
        else:
            break
        total -= seg.size
        n += 1
    if n:
        state.log_start_offset = max(state.log_start_offset, segments[n].base_offset)
        state.write()
        _fs.crash_point("retention-after-state")
        segments.delete_front(n)
    return n


def _expired(
    seg: Segment, total: int, config: LogConfig, now: float, largest_timestamp: Callable[[Segment], int]
) -> bool:
    if config.retention_ms >= 0 and now - largest_timestamp(seg) > config.retention_ms:
        return True
    return config.retention_bytes >= 0 and total - seg.size >= config.retention_bytes


def move_log_start(segments: SegmentList, state: PartitionState, offset: int) -> int:
    """A purge: raise the log start to ``offset`` (never lower it); delete the segments
    wholly below it; return how many went."""
    state.log_start_offset = max(state.log_start_offset, offset)
    state.write()
    n = segments.count_below(state.log_start_offset)
    if n:
        segments.delete_front(n)
    return n


class RetentionScheduler:
    """One daemon thread per process that calls ``check()`` on every registered writer each
    ``interval_s`` (Kafka's retention check). A log is held weakly; ``check`` returning False
    (the log closed or failed) unregisters it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[int, tuple[weakref.ref, float, float]] = {}  # id -> (log, due, period)
        self._thread: threading.Thread | None = None

    def add(self, log: object, interval_s: float) -> None:
        with self._cond:
            self._due[id(log)] = (weakref.ref(log), time.monotonic() + interval_s, interval_s)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="logq-retention", daemon=True)
                self._thread.start()
            self._cond.notify()

    def remove(self, log: object) -> None:
        with self._cond:
            self._due.pop(id(log), None)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                ready = [(k, ref) for k, (ref, due, _) in self._due.items() if due <= now]
                if not ready:
                    nxt = min((due for _, due, _ in self._due.values()), default=now + 3600)
                    self._cond.wait(max(0.0, nxt - now))
                    continue
                for k, _ in ready:
                    ref, _, period = self._due[k]
                    self._due[k] = (ref, now + period, period)
            for k, ref in ready:
                log = ref()
                keep = log is not None and self._check(log)
                if not keep:
                    with self._cond:
                        entry = self._due.get(k)
                        if entry is not None and entry[0] is ref:
                            del self._due[k]

    @staticmethod
    def _check(log: object) -> bool:
        try:
            return bool(log.scheduled_retention())  # type: ignore[attr-defined]
        except Exception as e:  # a failed pass is logged; the next one tries again
            _log.warning("logq: scheduled retention of %s failed: %s", getattr(log, "path", log), e)
            return True


_scheduler: RetentionScheduler | None = None
_scheduler_lock = threading.Lock()


def scheduler() -> RetentionScheduler:
    """This process's retention scheduler (a fork child starts its own)."""
    global _scheduler
    with _scheduler_lock:
        if _scheduler is None:
            _scheduler = RetentionScheduler()
        return _scheduler


def _after_fork() -> None:
    global _scheduler, _scheduler_lock
    _scheduler, _scheduler_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
