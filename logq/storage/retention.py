"""Retention and purges: moving the log start offset and deleting whole oldest segments.

Kafka's rules, segment by segment from the oldest, never the active one: a segment goes
when the next segment starts at or below the log start offset (a purge moved it), when its
largest timestamp is older than ``retention_ms``, or when the partition would still hold at
least ``retention_bytes`` without it. The first segment that no rule removes stops the walk.

Order on disk (crash-safe for readers and other writers): the new log start offset is
written to ``logq.state`` first, then the segment files are unlinked. A crash in between
leaves segments below the recorded start, which the next open deletes. Processes that
still map an unlinked segment keep reading it safely; they catch up with the new start
on their next operation.

The caller holds the partition's op lock and has caught up with other writers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from logq.config import LogConfig
from logq.storage import files as _fs
from logq.storage.segment import Segment
from logq.storage.segments import SegmentList
from logq.storage.state import PartitionState

__all__ = ["apply_retention", "move_log_start"]


def apply_retention(
    segments: SegmentList,
    state: PartitionState,
    config: LogConfig,
    now_ms: float | None,
    largest_timestamp: Callable[[Segment], int],
) -> int:
    """Delete the oldest segments past retention; return how many went.

    ``largest_timestamp`` must come from a checked (or rebuilt) time index: a bad index
    must never drive retention.
    """
    now = time.time() * 1000 if now_ms is None else now_ms
    total = sum(s.size for s in segments)
    n = 0
    for i in range(len(segments) - 1):
        seg = segments[i]
        if segments[i + 1].base_offset <= state.log_start_offset:
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


def move_log_start(segments: SegmentList, state: PartitionState, offset: int) -> int:
    """A purge: raise the log start to ``offset`` (never lower it); delete the segments
    wholly below it; return how many went."""
    state.log_start_offset = max(state.log_start_offset, offset)
    state.write()
    n = segments.count_below(state.log_start_offset)
    if n:
        segments.delete_front(n)
    return n
