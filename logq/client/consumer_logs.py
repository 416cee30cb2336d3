"""The partition logs a Consumer reads: opened on demand, at most ``max_open_partitions`` at once.

- Logs are opened read-only when first read and kept in least-recently-used order; past
  ``max_open_partitions`` the least recently used is closed ("parked"). A parked log keeps what
  tells, by one stat, that it has nothing new: its end offset, its active segment file and that
  file's size, and the name the next segment would have (a roll starts it at the end). A poll
  reopens a parked log only when its position is not its end or a stat says it grew.
- Topic incarnations (logq/client/handles.py): the first log of a topic opened pins the
  incarnation the consumer's positions refer to. ``changed`` tells a topic deleted (or deleted
  and created again) since; ``stamp`` keeps commits of a deleted incarnation from being stored
  for a new one, and names the incarnation the rest were read from.
- Where a position lands in its log (Kafka's ``auto_offset_reset``): ``reset_position`` starts
  a partition without a committed offset; ``clamp_position`` moves an offset below the log
  start (retention deleted it) to the start and one past the end to the end, with a warning;
  ``reset_past_end`` moves a position a fetch found past the end. Policy "error" raises
  NoOffsetForPartitionError instead.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict

from logq.client.handles import Incarnation
from logq.errors import LogqError, NoOffsetForPartitionError, TopicDeletedError
from logq.storage.log import PartitionLog
from logq.storage.segment import LOG_SUFFIX, segment_name
from logq.storage.topics import TopicRegistry, partition_path, validate_partition
from logq.types import OffsetAndTimestamp, TopicPartition

__all__ = ["PartitionLogs", "clamp_position", "close_quietly", "reset_past_end", "reset_position"]

log = logging.getLogger("logq.consumer")


def close_quietly(lg: PartitionLog) -> None:
    """Close a log opened for reading; a failure is only logged."""
    try:
        lg.close()
    except (LogqError, OSError) as e:  # a reader writes nothing: nothing is lost
        log.debug("closing %s: %s", lg.path, e)


class PartitionLogs:
    """The open (and parked) partition logs of one consumer, and the topic incarnations they belong to."""

    def __init__(self, registry: TopicRegistry, max_open_partitions: int) -> None:
        self.registry = registry
        self.root = registry.root
        self.max_open_partitions = max_open_partitions
        self.logs: OrderedDict[TopicPartition, PartitionLog] = OrderedDict()  # least recently used first
        # a closed log read to its end: (end offset, active segment file, its size, next segment file)
        self.parked: dict[TopicPartition, tuple[int, str | None, int, str]] = {}
        self.incarnations: dict[str, Incarnation] = {}  # topic -> the incarnation positions refer to

    def get(self, tp: TopicPartition) -> PartitionLog:
        """The log of ``tp``, opened if need be (parking the least recently used past the limit)."""
        lg = self.logs.get(tp)
        if lg is not None:
            self.logs.move_to_end(tp)
            return lg
        inc = self.incarnation(tp.topic)
        try:
            lg = PartitionLog(
                partition_path(self.root, tp.topic, tp.partition), self.registry.get(tp.topic).config, readonly=True
            )
        except (LogqError, OSError):
            now = inc.current_id()
            if now != inc.topic_id:  # deleted under us: say so, not "no such file"
                raise TopicDeletedError(tp.topic, inc.topic_id, now, partition=tp.partition) from None
            raise
        self.logs[tp] = lg
        self.parked.pop(tp, None)
        while len(self.logs) > self.max_open_partitions:
            old_tp, old = self.logs.popitem(last=False)
            self._park(old_tp, old)
        return lg

    def readable(self, tp: TopicPartition, position: int) -> PartitionLog | None:
        """The log of ``tp`` to fetch from at ``position``; None when it is parked, read to its end
        and nothing was appended since (one stat tells)."""
        if tp not in self.logs and self.nothing_new(tp, position):
            return None
        return self.get(tp)

    def _park(self, tp: TopicPartition, lg: PartitionLog) -> None:
        """Close the log of ``tp``; remember enough to tell, by one stat, that it has nothing new."""
        try:
            if lg.num_segments:
                seg = lg.active
                end, path, size = seg.next_offset, seg.log_path, seg.size
            else:
                end, path, size = lg.log_start_offset, None, 0
            self.parked[tp] = (end, path, size, os.path.join(lg.path, segment_name(end) + LOG_SUFFIX))
        except (LogqError, OSError):
            pass
        close_quietly(lg)

    def nothing_new(self, tp: TopicPartition, position: int) -> bool:
        """Whether parked partition ``tp`` is read to its end (``position``) and nothing was appended since."""
        park = self.parked.get(tp)
        if park is None or park[0] != position:
            return False
        end, path, size, next_path = park
        try:
            if path is not None and os.stat(path).st_size != size:
                return False
        except OSError:
            return False
        return not os.path.exists(next_path)  # a roll starts the segment at the end

    def close(self, tp: TopicPartition) -> None:
        """Close the log of ``tp`` (open or parked) and forget it."""
        self.parked.pop(tp, None)
        lg = self.logs.pop(tp, None)
        if lg is not None:
            close_quietly(lg)

    def incarnation(self, topic: str) -> Incarnation:
        """The incarnation of ``topic`` the consumer's positions refer to (the current one at first use)."""
        inc = self.incarnations.get(topic)
        if inc is None:
            meta = self.registry.get(topic, fresh=True)
            inc = self.incarnations[topic] = Incarnation(self.root, topic, meta.topic_id)
        return inc

    def changed(self, topic: str) -> tuple[Incarnation, str | None] | None:
        """(the incarnation read, the current topic id or None if deleted) when ``topic`` was deleted
        or created again since positions were taken; None when it was not (or is not read)."""
        inc = self.incarnations.get(topic)
        if inc is None:
            return None
        now = inc.current_id()
        return None if now == inc.topic_id else (inc, now)

    def stamp(self, items: dict[TopicPartition, int]) -> tuple[dict[TopicPartition, int], dict[str, str | None]]:
        """The offsets of ``items`` that may be committed, and the topic ids to commit them under.

        Offsets read from an incarnation deleted since are dropped (with a warning): they are never
        stored for a new topic of the same name.
        """
        ids: dict[str, str | None] = {}
        for topic in {tp.topic for tp in items}:
            inc = self.incarnations.get(topic)
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
        return items, ids

    def offset_for_time(self, tp: TopicPartition, ms: int) -> OffsetAndTimestamp | None:
        """The first offset of ``tp`` whose timestamp >= ``ms`` (Kafka's rule), else None."""
        lg = self.logs.get(tp)
        if lg is None:
            meta = self.registry.get(tp.topic)
            validate_partition(tp.topic, tp.partition, meta.partitions)
            lg = PartitionLog(partition_path(self.root, tp.topic, tp.partition), meta.config, readonly=True)
        off = lg.offset_for_timestamp(ms)
        if off is None:
            found = None
        else:
            rec = lg.read_records(off, 1)
            found = OffsetAndTimestamp(off, rec[0].timestamp if rec else -1)
        if tp not in self.logs:
            close_quietly(lg)
        return found


def reset_position(tp: TopicPartition, lg: PartitionLog, policy: str, why: str) -> int:
    """Where a partition without a usable offset starts under ``auto_offset_reset`` ``policy``."""
    if policy == "error":
        raise NoOffsetForPartitionError(tp.topic, tp.partition, why)
    return lg.log_start_offset if policy == "earliest" else lg.log_end_offset


def clamp_position(tp: TopicPartition, offset: int, lg: PartitionLog, policy: str) -> int:
    """``offset``, moved into the log (to its start or its end) if it left it."""
    start, end = lg.log_start_offset, lg.log_end_offset
    if offset < start:
        if policy == "error":
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


def reset_past_end(tp: TopicPartition, pos: int, end: int, policy: str) -> int:
    """Where a position a fetch found past the log end ``end`` moves (the end, unless ``policy`` is "error")."""
    if policy == "error":
        raise NoOffsetForPartitionError(tp.topic, tp.partition, f"offset {pos} is past the log end {end}")
    log.warning("%s-%d: position %d is past the log end %d; moving to the end", tp.topic, tp.partition, pos, end)
    return end
