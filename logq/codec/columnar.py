"""Columnar decoding: records as numpy arrays and Arrow-style binary columns, not objects.

:class:`RecordColumns` holds a run of records (of one or more partitions) column by column:

- ``offsets`` and ``timestamps``: int64 arrays; ``partitions``: int32; the topic of each record
  is ``topic_names[topic_codes[i]]`` (dictionary-encoded, int32 codes);
- keys and values, each Arrow's variable-size binary layout: ``key_offsets`` (int32, n + 1
  entries from 0), ``key_data`` (one ``bytes`` holding every non-null key back to back) and
  ``key_valid`` (bool; False is a null key); the same three for values. Record i's key is
  ``key_data[key_offsets[i]:key_offsets[i + 1]]`` when ``key_valid[i]``;
- ``headers``: None when no record has headers (the usual case, and then no object is built
  per record), else a list with one tuple of ``(str, bytes | None)`` pairs per record.

``len()`` is the record count, iteration yields ordinary :class:`logq.Record` objects (raw
bytes: no deserializer is applied), ``to_arrow()`` a pyarrow Table that shares the buffers
(headers are left out of it).

:func:`decode_columns` builds the columns of one batch. With the compiled codec
(logq/codec/columns.pyx, built next to logq/codec/compiled.pyx, and used whenever
``logq.codec.batch.IMPLEMENTATION`` is "compiled") the walk over the records creates no
Python object per record; the pure fallback decodes the records with ``decode_records`` and
turns them into the same columns (compressed batches always take that path, after
decompression). Both give identical columns and raise CorruptRecordError on the same input.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from logq.codec import batch
from logq.codec.batch import ATTR_CODEC_MASK, BATCH_OVERHEAD, BatchHeader, Buffer, decode_records
from logq.errors import CorruptRecordError
from logq.types import Record

__all__ = [
    "RecordColumns",
    "decode_columns",
    "columns_from_records",
    "compiled_columns",
    "builds_records_lazily",
    "OUT_OF_RANGE",
]

OUT_OF_RANGE = "record offset or timestamp does not fit an int64"
_INT32_MAX = (1 << 31) - 1

compiled_columns: ModuleType | None
try:
    from logq.codec import columns as compiled_columns
except ImportError:  # not built: the pure fallback is used
    compiled_columns = None


def _i64(raw: bytes, n: int) -> np.ndarray:
    return np.frombuffer(raw, np.int64, n) if n else np.empty(0, np.int64)


def _i32(raw: bytes, n: int) -> np.ndarray:
    return np.frombuffer(raw, np.int32, n)


def _bool(raw: bytes, n: int) -> np.ndarray:
    return np.frombuffer(raw, np.bool_, n) if n else np.empty(0, np.bool_)


class RecordColumns:
    """Records column by column (see the module docstring for the layout)."""

    __slots__ = (
        "offsets",
        "timestamps",
        "partitions",
        "topic_codes",
        "topic_names",
        "key_offsets",
        "key_data",
        "key_valid",
        "value_offsets",
        "value_data",
        "value_valid",
        "headers",
    )

    def __init__(
        self,
        offsets: np.ndarray,
        timestamps: np.ndarray,
        partitions: np.ndarray,
        topic_codes: np.ndarray,
        topic_names: tuple[str, ...],
        key_offsets: np.ndarray,
        key_data: bytes,
        key_valid: np.ndarray,
        value_offsets: np.ndarray,
        value_data: bytes,
        value_valid: np.ndarray,
        headers: list[tuple[tuple[str, bytes | None], ...]] | None = None,
    ) -> None:
        self.offsets = offsets
        self.timestamps = timestamps
        self.partitions = partitions
        self.topic_codes = topic_codes
        self.topic_names = topic_names
        self.key_offsets = key_offsets
        self.key_data = key_data
        self.key_valid = key_valid
        self.value_offsets = value_offsets
        self.value_data = value_data
        self.value_valid = value_valid
        self.headers = headers

    # ------------------------------------------------------------------ building
    @classmethod
    def empty(cls) -> RecordColumns:
        z64, z32, zb = np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.bool_)
        zo = np.zeros(1, np.int32)
        return cls(z64, z64, z32, z32, (), zo, b"", zb, zo, b"", zb)

    @classmethod
    def concat(cls, parts: Sequence[RecordColumns]) -> RecordColumns:
        """The records of ``parts``, one after the other (one part is returned as it is)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        names: dict[str, int] = {}
        codes = []
        for p in parts:
            remap = np.array([names.setdefault(t, len(names)) for t in p.topic_names], np.int32)
            codes.append(remap[p.topic_codes])
        headers: list[tuple[tuple[str, bytes | None], ...]] | None = None
        if any(p.headers is not None for p in parts):
            headers = []
            for p in parts:
                headers.extend(p.headers if p.headers is not None else [()] * len(p))
        return cls(
            np.concatenate([p.offsets for p in parts]),
            np.concatenate([p.timestamps for p in parts]),
            np.concatenate([p.partitions for p in parts]),
            np.concatenate(codes),
            tuple(names),
            _concat_offsets([p.key_offsets for p in parts]),
            b"".join([p.key_data for p in parts]),
            np.concatenate([p.key_valid for p in parts]),
            _concat_offsets([p.value_offsets for p in parts]),
            b"".join([p.value_data for p in parts]),
            np.concatenate([p.value_valid for p in parts]),
            headers,
        )

    def slice(self, start: int, stop: int) -> RecordColumns:
        """Records ``start`` to ``stop`` (0 <= start <= stop <= len) as columns of their own."""
        ko = self.key_offsets[start : stop + 1]
        vo = self.value_offsets[start : stop + 1]
        return RecordColumns(
            self.offsets[start:stop],
            self.timestamps[start:stop],
            self.partitions[start:stop],
            self.topic_codes[start:stop],
            self.topic_names,
            ko - ko[0],
            self.key_data[int(ko[0]) : int(ko[-1])],
            self.key_valid[start:stop],
            vo - vo[0],
            self.value_data[int(vo[0]) : int(vo[-1])],
            self.value_valid[start:stop],
            None if self.headers is None else self.headers[start:stop],
        )

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def nbytes(self) -> int:
        """Bytes of keys and values held."""
        return len(self.key_data) + len(self.value_data)

    def records(self, start: int = 0, stop: int | None = None) -> list[Record]:
        """Records ``start`` to ``stop`` (default: to the end) as ``logq.Record`` objects, built
        by the compiled codec when it is in use (the consumer's lazy path builds only the
        records a poll returns this way)."""
        n = len(self)
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            raise IndexError(f"records {start}..{stop} of {n}")
        mod = compiled_columns
        if mod is not None and builds_records_lazily():
            out: list[Record] = mod.build_records(self, start, stop, Record)
            return out
        return list(self._iter(start, stop))

    def __iter__(self) -> Iterator[Record]:
        return self._iter(0, len(self))

    def _iter(self, start: int, stop: int) -> Iterator[Record]:
        names = self.topic_names
        codes = self.topic_codes[start:stop].tolist()
        parts = self.partitions[start:stop].tolist()
        offs = self.offsets[start:stop].tolist()
        stamps = self.timestamps[start:stop].tolist()
        ko, kv, kd = self.key_offsets[start : stop + 1].tolist(), self.key_valid[start:stop].tolist(), self.key_data
        vo, vv, vd = (
            self.value_offsets[start : stop + 1].tolist(),
            self.value_valid[start:stop].tolist(),
            self.value_data,
        )
        headers = None if self.headers is None else self.headers[start:stop]
        for i in range(len(offs)):
            yield Record(
                names[codes[i]],
                parts[i],
                offs[i],
                stamps[i],
                kd[ko[i] : ko[i + 1]] if kv[i] else None,
                vd[vo[i] : vo[i + 1]] if vv[i] else None,
                () if headers is None else headers[i],
            )

    def __getitem__(self, i: int) -> Record:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("record index out of range")
        return next(self._iter(i, i + 1))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordColumns):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if not len(self):
            return "RecordColumns(0 records)"
        return (
            f"RecordColumns({len(self)} records, offsets {int(self.offsets[0])}..{int(self.offsets[-1])}, "
            f"topics {list(self.topic_names)}, {self.nbytes} bytes of keys and values)"
        )

    def to_arrow(self) -> Any:
        """A ``pyarrow.Table`` (topic, partition, offset, timestamp, key, value) over these buffers.

        offsets, timestamps, partitions, the key and value offsets and data are shared, not
        copied; a null mask is packed into Arrow's bitmap (n / 8 bytes) only when a key or
        value is null. ``timestamp`` is ``timestamp[ms]``, ``topic`` a dictionary column;
        headers are left out. Needs pyarrow (ImportError without it).
        """
        import pyarrow as pa

        n = len(self)

        def binary(offsets: np.ndarray, data: bytes, valid: np.ndarray) -> Any:
            nulls = n - int(np.count_nonzero(valid))
            bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
            buffers = [bitmap, pa.py_buffer(np.ascontiguousarray(offsets)), pa.py_buffer(data)]
            return pa.Array.from_buffers(pa.binary(), n, buffers, null_count=nulls)

        stamps = pa.Array.from_buffers(pa.timestamp("ms"), n, [None, pa.py_buffer(self.timestamps)])
        topics = pa.DictionaryArray.from_arrays(pa.array(self.topic_codes), pa.array(self.topic_names, pa.string()))
        return pa.table(
            {
                "topic": topics,
                "partition": pa.array(self.partitions),
                "offset": pa.array(self.offsets),
                "timestamp": stamps,
                "key": binary(self.key_offsets, self.key_data, self.key_valid),
                "value": binary(self.value_offsets, self.value_data, self.value_valid),
            }
        )


def builds_records_lazily() -> bool:
    """Whether decode_columns and RecordColumns.records are compiled in this process (then a
    batch decoded into columns costs no object per record until its records are built)."""
    return compiled_columns is not None and batch.IMPLEMENTATION == "compiled"


def _concat_offsets(parts: list[np.ndarray]) -> np.ndarray:
    ends = [int(p[-1]) for p in parts]
    total = sum(ends)
    if total > _INT32_MAX:
        raise OverflowError(f"{total} bytes of keys or values do not fit one int32-offset column")
    out = np.empty(sum(len(p) - 1 for p in parts) + 1, np.int32)
    out[0] = 0
    at = base = 0
    for p, end in zip(parts, ends):
        k = len(p) - 1
        np.add(p[1:], base, out=out[at + 1 : at + 1 + k])
        at += k
        base += end
    return out


def columns_from_records(
    records: Sequence[Any], topic: str | None = None, partition: int | None = None
) -> RecordColumns:
    """Columns of records with ``offset``, ``timestamp``, ``key``, ``value`` and ``headers``
    fields (the codec's BatchRecord, or a consumer Record); their topic and partition are
    ``topic`` and ``partition`` when given, else the records' own. Keys and values must be
    bytes-like or None. The pure fallback of :func:`decode_columns`."""
    n = len(records)
    try:
        offsets = np.array([r.offset for r in records], np.int64).reshape(n)
        stamps = np.array([r.timestamp for r in records], np.int64).reshape(n)
    except OverflowError:
        raise CorruptRecordError(OUT_OF_RANGE) from None
    if topic is None or partition is None:
        names: dict[str, int] = {}
        codes = np.array([names.setdefault(r.topic, len(names)) for r in records], np.int32).reshape(n)
        topic_names = tuple(names)
        parts = np.array([r.partition for r in records], np.int32).reshape(n)
    else:
        codes, topic_names = np.zeros(n, np.int32), (topic,)
        parts = np.full(n, partition, np.int32)
    keys = [r.key for r in records]
    values = [r.value for r in records]
    headers = [r.headers for r in records]
    return RecordColumns(
        offsets,
        stamps,
        parts,
        codes,
        topic_names,
        *_binary(keys),
        *_binary(values),
        headers if any(headers) else None,
    )


def _binary(items: list[Any]) -> tuple[np.ndarray, bytes, np.ndarray]:
    n = len(items)
    valid = np.array([x is not None for x in items], np.bool_).reshape(n)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum([0 if x is None else len(x) for x in items], out=offsets[1:])
    if offsets[-1] > _INT32_MAX:
        raise OverflowError(f"{int(offsets[-1])} bytes do not fit one int32-offset column")
    return offsets.astype(np.int32), b"".join([bytes(x) for x in items if x]), valid


def decode_columns(
    buf: Buffer,
    header: BatchHeader,
    pos: int = 0,
    *,
    topic: str = "",
    partition: int = 0,
    max_decompressed_bytes: int = batch.DEFAULT_MAX_DECOMPRESSED_BYTES,
    min_offset: int = 0,
) -> RecordColumns:
    """The records of the batch at ``pos`` (checked by ``validate_batch``) from ``min_offset``
    on, as columns labelled ``topic`` and ``partition``; the same checks and errors as
    ``decode_records``."""
    mod = compiled_columns
    if mod is None or batch.IMPLEMENTATION != "compiled" or header.attributes & ATTR_CODEC_MASK:
        recs = decode_records(buf, header, pos, max_decompressed_bytes=max_decompressed_bytes, min_offset=min_offset)
        try:
            return columns_from_records(recs, topic, partition)
        except CorruptRecordError as e:
            raise CorruptRecordError(e.reason, position=pos) from None
    data = memoryview(buf)[pos + BATCH_OVERHEAD : pos + header.size]
    try:
        n, offs, stamps, ko, kd, kv, vo, vd, vv, headers = mod.decode_columns(data, header, min_offset)
    except CorruptRecordError as e:
        raise CorruptRecordError(e.reason, position=pos) from None
    except (IndexError, UnicodeDecodeError) as e:
        raise CorruptRecordError(f"malformed record: {e}", position=pos) from None
    return RecordColumns(
        _i64(offs, n),
        _i64(stamps, n),
        np.full(n, partition, np.int32),
        np.zeros(n, np.int32),
        (topic,),
        _i32(ko, n + 1),
        kd,
        _bool(kv, n),
        _i32(vo, n + 1),
        vd,
        _bool(vv, n),
        headers,
    )
