"""Background flushing: fdatasync of a just-sealed segment, and the interval flusher.

With ``fsync="never"`` a roll hands the sealed segment to a :class:`SealedSegmentFlush`
thread: it fsyncs the segment's ``.log``, ``.index`` and ``.timeindex`` off the append
path, sets its ``synced`` event, and then calls back so the log can raise its recovery
point past the segment (a later crash then scans less). At most one runs at a time: the
next roll first waits for the previous one's ``synced`` (not for the thread: after syncing
it waits for the log's mutex, which the rolling thread holds). An error is handed to
``on_error`` (the log then fails: a failed fsync is never retried).

With ``fsync="interval"`` an :class:`IntervalFlusher` calls ``tick`` every period until
``tick`` returns False (the log closed or failed).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from logq.errors import LogqError
from logq.storage.segment import Segment

__all__ = ["SealedSegmentFlush", "IntervalFlusher", "FLUSH_WAIT_TIMEOUT_S"]

FLUSH_WAIT_TIMEOUT_S = 30.0  # longest a roll or close waits for the previous flush


class SealedSegmentFlush(threading.Thread):
    """One background fsync of a sealed segment's three files."""

    def __init__(
        self,
        seg: Segment,
        after_sync: Callable[[Segment], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        super().__init__(name="logq-flush", daemon=True)
        self.segment = seg
        self.synced = threading.Event()  # set once its fsyncs are done (or failed)
        self._after_sync = after_sync
        self._on_error = on_error

    def run(self) -> None:
        try:
            for p in (self.segment.log_path, self.segment.index.path, self.segment.timeindex.path):
                try:
                    fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue  # retention got there first, or the index was never written
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self.synced.set()
            self._after_sync(self.segment)
        except (OSError, LogqError) as e:
            self._on_error(e)
        finally:
            self.synced.set()

    def wait_synced(self) -> None:
        self.synced.wait(FLUSH_WAIT_TIMEOUT_S)


class IntervalFlusher(threading.Thread):
    """Calls ``tick`` every ``period_s`` seconds until it returns False."""

    def __init__(self, period_s: float, tick: Callable[[], bool]) -> None:
        super().__init__(name="logq-interval-flush", daemon=True)
        self._period_s = period_s
        self._tick = tick

    def run(self) -> None:
        while True:
            time.sleep(self._period_s)
            if not self._tick():
                return
