"""The consumer's read path: fetching whole batches from a partition log and decoding them lazily.

A Consumer (logq/client/consumer.py) decides which partitions a poll reads and in what order;
a Fetcher, which it holds, turns "up to N records of partition P from its position" into
records, reading and decoding no more than the poll returns:

- A fetch reads whole batches from the position: ``FIRST_FETCH_BYTES`` after a seek (or for a
  new partition), then, while polls continue where the last fetch ended, twice the last size,
  up to ``fetch_max_bytes`` (never less than the bytes the poll's record count needs, going by
  the size per record of the last batch decoded; one batch larger than the limit is still read
  whole).
- What a fetch brought stays buffered per partition, undecoded: a poll decodes batches one at
  a time, only as many as it needs. A batch only partly returned keeps its rest decoded (as
  columns when the compiled codec builds Records lazily: no Record object is built for a
  record until a poll returns it).
- A poll that used up its buffer reads on (a larger fetch) while it wants more, within its
  ``fetch_max_bytes`` budget, unless the last fetch reached the log end.
- ``poll_columns`` takes the same path, decoding batches into RecordColumns.
- A record a deserializer refuses raises DeserializationError (topic, partition, offset) once
  the records before it were returned; the position stays on it.
- ``stats`` counts fetches, bytes read, batches and records decoded and Records built (the
  Consumer's ``read_stats``).

The Fetcher shares the Consumer's positions (the next offset to read, per partition) and
advances them past what it returns. Opening logs, and moving a position that fell outside its
log, stay with the Consumer: it passes them in as ``open_log`` and ``out_of_range``.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import Any

from logq.client.serde import Deserializer
from logq.codec.batch import decode_records
from logq.codec.columnar import RecordColumns, builds_records_lazily, columns_from_records, decode_columns
from logq.errors import DeserializationError, LogqError, OffsetOutOfRangeError
from logq.storage.log import PartitionLog
from logq.storage.topics import TopicRegistry
from logq.types import Record, TopicPartition

__all__ = ["COLUMN_BYTES", "FIRST_FETCH_BYTES", "Buffered", "Fetcher"]

# The first fetch after a seek (or of a new partition) reads this much (at least one whole
# batch); each fetch that continues where the last one ended doubles it, up to fetch_max_bytes.
FIRST_FETCH_BYTES = 16 << 10
COLUMN_BYTES = 1 << 30  # a poll_columns stops adding partitions past this many key and value bytes

# What was fetched for a partition and not yet returned:
# (fetch result, next batch header index, its byte position, records decoded from the last batch, next of them)
Buffered = tuple[Any, int, int, Any, int]


class Fetcher:
    """Fetches and decodes records for a Consumer (see the module docstring)."""

    def __init__(
        self,
        registry: TopicRegistry,
        positions: dict[TopicPartition, int],
        *,
        fetch_max_bytes: int,
        key_deserializer: Deserializer | None,
        value_deserializer: Deserializer | None,
        open_log: Callable[[TopicPartition], PartitionLog | None],
        out_of_range: Callable[[TopicPartition, int, PartitionLog, OffsetOutOfRangeError], int],
    ) -> None:
        self.registry = registry
        self.positions = positions  # the Consumer's: the Fetcher advances them past what it returns
        self.fetch_max_bytes = fetch_max_bytes
        self.kdes = key_deserializer
        self.vdes = value_deserializer
        self.open_log = open_log  # None: nothing new to read (a closed log read to its end)
        self.out_of_range = out_of_range  # the position to move to when a fetch's offset left the log
        self.buffers: dict[TopicPartition, Buffered] = {}
        self.fetch_sizes: dict[TopicPartition, int] = {}  # bytes of the next fetch (grows while reading on)
        self.record_bytes: dict[TopicPartition, float] = {}  # bytes per record of the last batch decoded
        self.stats = {"fetches": 0, "bytes_read": 0, "batches_decoded": 0, "records_decoded": 0, "records_built": 0}
        self.rr = 0  # the partition a poll starts with turns round, so every partition gets read
        self.pending_error: DeserializationError | None = None  # raised by the next poll

    @property
    def deserializes(self) -> bool:
        """Whether a key or value deserializer is set (columns carry raw bytes only)."""
        return self.kdes is not None or self.vdes is not None

    def drop_buffer(self, tp: TopicPartition) -> None:
        """Forget what was fetched for ``tp``: the position moved, the next fetch starts small."""
        self.buffers.pop(tp, None)
        self.fetch_sizes.pop(tp, None)

    def forget(self, tp: TopicPartition) -> None:
        """Forget everything about ``tp`` (no longer read by the consumer)."""
        self.drop_buffer(tp)
        self.record_bytes.pop(tp, None)

    def raise_pending(self, paused: Container[TopicPartition]) -> None:
        """Raise the DeserializationError a poll held back (it returned the records before it
        first), if its partition is still on the bad record and not paused."""
        err = self.pending_error
        if err is not None and err.topic is not None and err.partition is not None:
            self.pending_error = None
            tp = TopicPartition(err.topic, err.partition)
            if self.positions.get(tp) == err.offset and tp not in paused:
                raise err

    def fetch(self, tps: Sequence[TopicPartition], limit: int) -> list[Record]:
        """Up to ``limit`` records of partitions ``tps``, starting with the next in turn."""
        out: list[Record] = []
        n = len(tps)
        start = self.rr % n
        self.rr += 1
        for i in range(n):
            tp = tps[(start + i) % n]
            try:
                got = self.take(tp, limit - len(out))
            except DeserializationError as e:
                if not out:
                    raise
                self.pending_error = e  # return what was read first; the next poll raises it
                break
            out.extend(got)
            if len(out) >= limit:
                break
        return out

    def fetch_columns(self, tps: Sequence[TopicPartition], limit: int) -> RecordColumns:
        """``fetch``, as columns (no deserializers here: poll_columns refuses them)."""
        parts: list[RecordColumns] = []
        got = nbytes = 0
        n = len(tps)
        start = self.rr % n
        self.rr += 1
        for i in range(n):
            cols = self.take_columns(tps[(start + i) % n], limit - got)
            parts.append(cols)
            got += len(cols)
            nbytes += cols.nbytes
            if got >= limit or nbytes >= COLUMN_BYTES:
                break
        return RecordColumns.concat(parts)

    def take(self, tp: TopicPartition, want: int) -> list[Record]:
        """Up to ``want`` records of one partition, decoding fetched batches one at a time.

        A fetch brings whole batches, sized to what the poll wants (see ``fetch_batches``);
        only as many batches are decoded as this poll needs, so a poll after a seek does not
        pay for a whole fetch, and the rest stays buffered, undecoded, for the next poll.
        """
        st = self.buffers.get(tp)
        if st is None:
            st = self.fetch_batches(tp, want)
            if st is None:
                return []
        res, hi, pos, recs, ri = st
        out: list[Record] = []
        budget = self.fetch_max_bytes - len(res.data)  # bytes this poll may still fetch
        while len(out) < want:
            if ri >= len(recs):
                if hi >= len(res.headers):
                    # this fetch is used up: read on (a larger fetch) while the poll wants more
                    st = self._read_on(tp, res, budget, want - len(out), bool(out))
                    if st is None:
                        break
                    res, hi, pos, recs, ri = st
                    budget -= len(res.data)
                    continue
                h = res.headers[hi]
                try:
                    recs, ri = self.decode(tp, res, h, pos, want - len(out)), 0
                except DeserializationError as e:
                    if self._return_good(tp, e, out, want):
                        return out
                    raise
                pos += h.size
                hi += 1
                continue
            k = min(len(recs) - ri, want - len(out))
            if isinstance(recs, RecordColumns):  # build only the records returned
                out.extend(recs.records(ri, ri + k))
                self.stats["records_built"] += k
            else:
                out.extend(recs if ri == 0 and k == len(recs) else recs[ri : ri + k])
            ri += k
        self._keep(tp, (res, hi, pos, recs, ri))
        if out:
            self.positions[tp] = out[-1].offset + 1
        return out

    def _read_on(self, tp: TopicPartition, res: Any, budget: int, want: int, have: bool) -> Buffered | None:
        """The next fetch of a partition whose fetched batches are used up, or None to stop.

        Not past the poll's byte ``budget``, nor when the last fetch reached the log end (a read
        there finds nothing but costs a catch-up: the wake-up path of a consumer that follows the
        end). A failing fetch raises only if the poll ``have`` nothing yet: otherwise what was read
        is returned and the next poll fetches again and raises.
        """
        if budget <= 0 or res.next_offset == res.log_end_offset:
            return None
        try:
            return self.fetch_batches(tp, want, res.next_offset)
        except LogqError:
            if not have:
                raise
            return None

    def _return_good(self, tp: TopicPartition, e: DeserializationError, out: list[Record], want: int) -> bool:
        """After a deserializer failed: add the records before the bad one to ``out``, leave the
        position on the bad one; whether there are records to return (else the error is raised)."""
        good = getattr(e, "_good", [])
        out.extend(good[: want - len(out)])
        self.buffers.pop(tp, None)
        if out:
            self.positions[tp] = out[-1].offset + 1
            return True
        return False

    def _keep(self, tp: TopicPartition, st: Buffered) -> None:
        """Buffer what a poll left of a fetch for the next poll (or nothing, if it used it all)."""
        res, hi, _pos, recs, ri = st
        if ri < len(recs) or hi < len(res.headers):
            self.buffers[tp] = st
        else:
            self.buffers.pop(tp, None)

    def take_columns(self, tp: TopicPartition, want: int) -> RecordColumns:
        """``take``, as columns: batches are decoded into columns, the rest kept for the next poll."""
        st = self.buffers.get(tp)
        if st is None:
            st = self.fetch_batches(tp, want)
            if st is None:
                return RecordColumns.empty()
        res, hi, pos, pending, ri = st
        parts: list[RecordColumns] = []
        got = 0
        budget = self.fetch_max_bytes - len(res.data)
        while got < want:
            if ri >= len(pending):
                if hi >= len(res.headers):
                    st = self._read_on(tp, res, budget, want - got, bool(got))
                    if st is None:
                        break
                    res, hi, pos, pending, ri = st
                    budget -= len(res.data)
                    continue
                h = res.headers[hi]
                pending, ri = self.decode_columns(tp, res, h, pos), 0
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
        self._keep(tp, (res, hi, pos, pending, ri))
        out = RecordColumns.concat(parts)
        if len(out):
            self.positions[tp] = int(out.offsets[-1]) + 1
        return out

    def fetch_batches(self, tp: TopicPartition, want: int, offset: int | None = None) -> Buffered | None:
        """Fetch from the position (or ``offset``): whole batches, about as many bytes as ``want``
        records need (see read_stats), never more than fetch_max_bytes unless one batch is larger."""
        lg = self.open_log(tp)
        if lg is None:
            return None
        pos = self.positions[tp] if offset is None else offset
        size = self.fetch_sizes.get(tp, FIRST_FETCH_BYTES)
        per_record = self.record_bytes.get(tp)
        if per_record is not None:
            size = max(size, int(want * per_record))
        size = min(size, self.fetch_max_bytes)
        try:
            res = lg.read(pos, size)
        except OffsetOutOfRangeError as e:
            self.positions[tp] = self.out_of_range(tp, pos, lg, e)
            return None
        self.stats["fetches"] += 1
        self.stats["bytes_read"] += res.bytes_read
        if not res.headers:
            return None
        self.fetch_sizes[tp] = min(self.fetch_max_bytes, 2 * size)  # reading on: the next fetch is larger
        return (res, 0, 0, [], 0)

    def decode_columns(self, tp: TopicPartition, res: Any, h: Any, pos: int) -> RecordColumns:
        """The records of batch ``h`` as columns."""
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

    def decode(self, tp: TopicPartition, res: Any, h: Any, pos: int, want: int) -> list[Record] | RecordColumns:
        """The records of batch ``h`` as Records, or, when the poll wants fewer than the batch
        holds and the compiled codec is in use, as columns from which only the records
        returned are built (no deserializer: they are applied to Records, record by record)."""
        if not self.deserializes and want < h.records_count and builds_records_lazily():
            return self.decode_columns(tp, res, h, pos)
        recs = decode_records(
            res.data,
            h,
            pos,
            max_decompressed_bytes=self.registry.get(tp.topic).config.max_decompressed_bytes,
            min_offset=res.offset,
            origin=(Record, tp.topic, tp.partition),
        )
        self._note_decoded(tp, h, len(recs))
        self.stats["records_built"] += len(recs)
        if not self.deserializes:
            return recs
        return self._deserialize(tp, recs)

    def _deserialize(self, tp: TopicPartition, recs: list[Record]) -> list[Record]:
        """``recs`` with keys and values deserialized; DeserializationError at the first failure,
        carrying the records before it (returned first)."""
        kd, vd = self.kdes, self.vdes
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
        st = self.stats
        st["batches_decoded"] += 1
        st["records_decoded"] += n
        if h.records_count:
            self.record_bytes[tp] = h.size / h.records_count
