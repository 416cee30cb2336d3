"""Idempotent producers: producer ids, and per-partition deduplication of retried batches.

Kafka's rules, for one partition and one producer id (every RecordBatch v2 header carries
``producerId:int64 producerEpoch:int16 baseSequence:int32``; the last sequence of a batch is
``baseSequence + lastOffsetDelta``, wrapping at 2**31):

* the broker remembers the sequence ranges and offsets of the producer's last 5 batches
  (``MAX_REMEMBERED_BATCHES``); a batch whose range equals one of them is a retry: it is
  answered with the offsets it got the first time and not appended again;
* otherwise its base sequence must follow the last remembered one; a gap or an older
  sequence is OUT_OF_ORDER_SEQUENCE_NUMBER (45);
* a batch with an older epoch than the one seen is fenced: INVALID_PRODUCER_EPOCH (47); a
  newer epoch starts over (its sequence must be 0);
* a producer id this partition has no state for is accepted at any sequence (its state may
  predate the log tail the broker rebuilt it from).

The state survives a restart the way Kafka rebuilds it: ``PartitionProducers.observe`` is
fed the batch headers of the log tail when the partition is opened.

Producer ids come from ``ProducerIds``: blocks of ``ID_BLOCK`` ids, each block's end written
(CRC-checked, fsynced) before any id of it is handed out, so no id repeats across restarts.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from logq.storage import meta as _meta
from logq.storage.files import make_dir
from logq.storage.topics import META_DIR

__all__ = ["MAX_REMEMBERED_BATCHES", "ID_BLOCK", "Verdict", "PartitionProducers", "ProducerIds"]

MAX_REMEMBERED_BATCHES = 5
ID_BLOCK = 1000
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
_SEQ_MOD = 1 << 31


@dataclass(frozen=True)
class _Sent:
    first_seq: int
    last_seq: int
    base_offset: int
    log_append_time: int = -1


@dataclass
class _Producer:
    epoch: int
    batches: deque[_Sent] = field(default_factory=lambda: deque(maxlen=MAX_REMEMBERED_BATCHES))


@dataclass(frozen=True)
class Verdict:
    """What to do with a batch: append it (``error == 0`` and ``duplicate_of is None``),
    answer with the offset of its first copy (``duplicate_of``), or refuse it (``error``)."""

    error: int = 0
    duplicate_of: int | None = None


APPEND = Verdict()


def last_sequence(base_sequence: int, last_offset_delta: int) -> int:
    return (base_sequence + last_offset_delta) % _SEQ_MOD


class PartitionProducers:
    """The idempotence state of one partition: producer id -> epoch and last batches."""

    def __init__(self) -> None:
        self._producers: dict[int, _Producer] = {}

    def __len__(self) -> int:
        return len(self._producers)

    def check(self, producer_id: int, epoch: int, base_seq: int, last_offset_delta: int) -> Verdict:
        """The verdict for a batch (producer id < 0: not idempotent, always appended)."""
        if producer_id < 0:
            return APPEND
        p = self._producers.get(producer_id)
        if p is None:
            return APPEND
        if epoch < p.epoch:
            return Verdict(INVALID_PRODUCER_EPOCH)
        if epoch > p.epoch:
            return APPEND if base_seq == 0 else Verdict(OUT_OF_ORDER_SEQUENCE_NUMBER)
        last = last_sequence(base_seq, last_offset_delta)
        for sent in p.batches:
            if sent.first_seq == base_seq and sent.last_seq == last:
                return Verdict(duplicate_of=sent.base_offset)
        if not p.batches or base_seq == (p.batches[-1].last_seq + 1) % _SEQ_MOD:
            return APPEND
        return Verdict(OUT_OF_ORDER_SEQUENCE_NUMBER)

    def observe(self, producer_id: int, epoch: int, base_seq: int, last_offset_delta: int, base_offset: int) -> None:
        """Remember an appended batch (also used to rebuild the state from the log)."""
        if producer_id < 0 or base_seq < 0:
            return
        p = self._producers.get(producer_id)
        if p is None or epoch > p.epoch:
            p = self._producers[producer_id] = _Producer(epoch)
        elif epoch < p.epoch:
            return
        p.batches.append(_Sent(base_seq, last_sequence(base_seq, last_offset_delta), base_offset))

    def observe_header(self, h: Any) -> None:
        """``observe`` for a codec BatchHeader read from the log."""
        self.observe(h.producer_id, h.producer_epoch, h.base_sequence, h.last_offset_delta, h.base_offset)


class ProducerIds:
    """Hands out producer ids unique across restarts of the server on one data directory."""

    def __init__(self, root: str) -> None:
        folder = os.path.join(root, META_DIR, "server")
        make_dir(os.path.dirname(folder))
        make_dir(folder)  # 0700 (0750 when the data directory is group-shared), as logq's own
        self.path = os.path.join(folder, "producer_ids")
        got = _meta.read_meta(self.path).value
        start = got.get("next_block", 0) if isinstance(got, dict) else 0
        self._next = int(start) if isinstance(start, int) and start >= 0 else 0
        self._end = self._next  # nothing reserved yet

    def next_id(self) -> int:
        """A fresh producer id (reserving, durably, a new block when the last one is used up)."""
        if self._next >= self._end:
            self._end = self._next + ID_BLOCK
            _meta.write_meta(self.path, {"next_block": self._end})
        pid = self._next
        self._next += 1
        return pid
