"""Positions: where a Consumer reads each partition next, and the calls that move them.

A position is the next offset to read. A partition starts at its committed offset (moved into
the log if retention deleted it or it is past the end) or, without one, where
``auto_offset_reset`` says (logq/client/consumer_logs.py). ``seek``, ``seek_to_beginning``,
``seek_to_end`` and ``replay_from`` (to an offset or a time) move positions and drop what was
fetched ahead (the next fetch starts small again, logq/client/fetcher.py); ``pause`` keeps a
partition's position but polls skip it; ``lag`` is the distance to the log end.

``ConsumerPositions`` is a part of ``Consumer`` (logq/client/consumer.py), which builds the
state it declares.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from typing import Any

from logq.client.consumer_access import one_thread
from logq.client.consumer_config import as_tp, int_at_least, iterable, mapping
from logq.client.consumer_logs import PartitionLogs, clamp_position, reset_past_end, reset_position
from logq.client.fetcher import Fetcher
from logq.client.notify import Watcher
from logq.client.timestamps import to_millis
from logq.errors import ClientClosedError, ConfigError, OffsetOutOfRangeError
from logq.groups.offsets import OffsetStore
from logq.storage.log import PartitionLog
from logq.storage.topics import partition_path
from logq.types import OffsetAndTimestamp, TopicPartition

__all__ = ["ConsumerPositions", "Timestamp"]

Timestamp = int | _dt.datetime


class ConsumerPositions:
    """The Consumer's positions and the calls that read and move them."""

    root: str
    auto_offset_reset: str
    _closed: bool
    _positions: dict[TopicPartition, int]
    _paused: set[TopicPartition]
    _fetcher: Fetcher
    _logs: PartitionLogs
    _watcher: Watcher
    _store: OffsetStore | None

    def _init_positions(self, tps: Sequence[TopicPartition]) -> None:
        for tp in tps:
            self._watcher.watch(partition_path(self.root, tp.topic, tp.partition))
            committed = self._store.committed(tp.topic, tp.partition) if self._store else None
            lg = self._log(tp)
            if committed is None:
                self._positions[tp] = self._reset(tp, "no committed offset")
            else:
                self._positions[tp] = self._clamp(tp, committed, lg)
            self._fetcher.drop_buffer(tp)

    def _reset(self, tp: TopicPartition, why: str) -> int:
        return reset_position(tp, self._log(tp), self.auto_offset_reset, why)

    def _clamp(self, tp: TopicPartition, offset: int, lg: PartitionLog) -> int:
        return clamp_position(tp, offset, lg, self.auto_offset_reset)

    def _tp(self, tp: Any) -> TopicPartition:
        tp = as_tp(tp)
        if tp not in self._positions:
            raise ConfigError(f"{tp.topic}-{tp.partition} is not assigned to this consumer")
        return tp

    @one_thread
    def position(self, tp: Any) -> int:
        return self._positions[self._tp(tp)]

    @one_thread
    def seek(self, tp: Any, offset: int) -> None:
        tp = self._tp(tp)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ConfigError(f"offset must be an int >= 0, got {offset!r}")
        self._positions[tp] = offset
        self._fetcher.drop_buffer(tp)

    def read_stats(self) -> dict[str, int]:
        """What polls read so far: ``fetches`` (reads of a partition log), ``bytes_read`` (bytes
        those reads took from segment files), ``batches_decoded``, ``records_decoded`` (records
        parsed out of them, into Records or columns) and ``records_built`` (Record objects built).

        A poll reads and decodes only what it returns, plus the rest of the last batch it
        needed (with the compiled codec that rest is kept as columns: no Record is built for
        it until a poll returns it). A fetch after a seek reads ``FIRST_FETCH_BYTES`` (at least
        one batch) and each fetch that continues the last one doubles, up to ``fetch_max_bytes``."""
        return dict(self._fetcher.stats)

    @one_thread
    def seek_to_beginning(self, *tps: Any) -> None:
        for tp in tps or tuple(self._positions):
            lg = self._log(self._tp(tp))
            lg.refresh()  # another process may have moved its start (retention, delete_records)
            self.seek(tp, lg.log_start_offset)

    @one_thread
    def seek_to_end(self, *tps: Any) -> None:
        for tp in tps or tuple(self._positions):
            self.seek(tp, self._log(self._tp(tp)).log_end_offset)

    @one_thread
    def offsets_for_times(self, timestamps: dict[Any, Timestamp]) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """Per partition, the first offset whose timestamp >= T (Kafka's rule), else None.

        T is int milliseconds since the epoch or an aware datetime (see logq/client/timestamps.py).
        """
        self._check_open()
        wanted = {as_tp(tp): to_millis(ts) for tp, ts in mapping(timestamps, "timestamps").items()}
        out: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for tp, ms in wanted.items():
            out[tp] = self._logs.offset_for_time(tp, ms)
        return out

    @one_thread
    def replay_from(
        self, *, offset: int | None = None, timestamp: Timestamp | None = None, partitions: Iterable[Any] | None = None
    ) -> dict[TopicPartition, int]:
        """Seek the given (default: all assigned) partitions to an offset or a time.

        ``timestamp`` is int milliseconds since the epoch or an aware datetime; a partition
        with no record at or after it moves to its end. ``offset`` is clamped to each
        partition's [log start, log end]: replaying from 3 a partition that holds 1 record
        reads what is written there next, and one whose start moved past 3 reads from its start.
        """
        self._check_open()
        if (offset is None) == (timestamp is None):
            raise ConfigError("replay_from needs exactly one of offset= or timestamp=")
        if offset is not None:
            int_at_least("offset", offset, 0)
        ms = None if timestamp is None else to_millis(timestamp)
        tps = (
            [self._tp(tp) for tp in iterable(partitions, "partitions")]
            if partitions is not None
            else list(self._positions)
        )
        out = {}
        for tp in tps:
            if ms is None:
                lg = self._log(tp)
                lg.refresh()  # another process may have moved its start or end
                want = offset or 0  # offset is set: exactly one of the two is, checked above
                target = min(max(want, lg.log_start_offset), lg.log_end_offset)
            else:
                found = self.offsets_for_times({tp: ms})[tp]
                target = found.offset if found else self._log(tp).log_end_offset
            self.seek(tp, target)
            out[tp] = target
        return out

    @one_thread
    def pause(self, *tps: Any) -> None:
        self._paused.update(self._tp(tp) for tp in tps)

    @one_thread
    def resume(self, *tps: Any) -> None:
        self._paused.difference_update(as_tp(tp) for tp in tps)

    @one_thread
    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    @one_thread
    def lag(self) -> dict[TopicPartition, int]:
        return {tp: self._log(tp).log_end_offset - pos for tp, pos in self._positions.items()}

    def _readable_log(self, tp: TopicPartition) -> PartitionLog | None:
        return self._logs.readable(tp, self._positions[tp])

    def _out_of_range(self, tp: TopicPartition, pos: int, lg: PartitionLog, e: OffsetOutOfRangeError) -> int:
        """Where to move the position ``pos`` of ``tp`` that a fetch found outside its log."""
        if pos < e.log_start:
            return clamp_position(tp, pos, lg, self.auto_offset_reset)
        return reset_past_end(tp, pos, e.log_end, self.auto_offset_reset)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("consumer")

    def _log(self, tp: TopicPartition) -> PartitionLog:
        return self._logs.get(tp)
