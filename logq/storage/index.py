"""Sparse offset and time indexes of one segment, in Kafka's file formats.

``<base>.index`` holds 8-byte entries::

    int32 BE  relative offset   (offset - segment base offset) of the LAST record of a batch
    int32 BE  position          byte position in the .log where that batch STARTS

``<base>.timeindex`` holds 12-byte entries::

    int64 BE  timestamp         largest timestamp seen in the segment so far
    int32 BE  relative offset   last offset of the batch that holds that timestamp

Both are sparse: an entry is added before an append once more than ``index_interval_bytes``
were written since the last one (the first batch of a segment never gets one), and a time
entry only when its timestamp is strictly greater than the previous one. Both files are
exactly ``entries * entry_size`` long: logq appends entries with ``pwrite`` instead of
preallocating, so there is no zero tail to trim and nothing ever shrinks under a reader.

Indexes are a cache of the log. They are validated when loaded (size a multiple of the
entry size, offsets strictly increasing, positions increasing and inside the log, times
increasing) and rebuilt from the log when in doubt; a rebuilt file replaces the old one by
rename, so a reader holding the old file keeps a consistent (if stale) copy.

In memory an index is a pair of native int64 numpy arrays (the file's big-endian columns,
read through ``numpy.memmap`` and converted once) searched with ``numpy.searchsorted``.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from logq.errors import CorruptIndexError, storage_error
from logq.storage import files as _fs

__all__ = ["OffsetIndex", "TimeIndex", "OFFSET_ENTRY", "TIME_ENTRY", "OFFSET_ENTRY_BYTES", "TIME_ENTRY_BYTES"]

# The entry layouts above, for code that reads entries one at a time (logq dump); the
# numpy dtypes below are the same layouts for whole files.
OFFSET_ENTRY = struct.Struct(">ii")  # relative offset, position
TIME_ENTRY = struct.Struct(">qi")  # timestamp, relative offset
OFFSET_ENTRY_BYTES = OFFSET_ENTRY.size
TIME_ENTRY_BYTES = TIME_ENTRY.size
_OFFSET_DTYPE = np.dtype([("rel", ">i4"), ("pos", ">i4")])
_TIME_DTYPE = np.dtype([("ts", ">i8"), ("rel", ">i4")])
assert _OFFSET_DTYPE.itemsize == OFFSET_ENTRY_BYTES and _TIME_DTYPE.itemsize == TIME_ENTRY_BYTES
_INITIAL_CAPACITY_ENTRIES = 256


class _Index:
    """Shared machinery: two growable native columns mirrored in an append-only file."""

    entry_bytes: int
    dtype: np.dtype

    def __init__(self, path: str, base_offset: int, max_entries: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max_entries
        self._a = np.empty(_INITIAL_CAPACITY_ENTRIES, dtype=np.int64)  # key column
        self._b = np.empty(_INITIAL_CAPACITY_ENTRIES, dtype=np.int64)  # value column
        self.entries = 0
        self.persist = True  # False for readers: entries rebuilt in memory, never written
        self._fd: int | None = None

    # -- loading -----------------------------------------------------------------
    def load(self) -> None:
        """Read the file (missing = empty). Raise CorruptIndexError if it is malformed."""
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            self._set(np.empty(0, np.int64), np.empty(0, np.int64))
            return
        if size % self.entry_bytes:
            raise CorruptIndexError(self.path, f"size {size} is not a multiple of {self.entry_bytes}")
        n = size // self.entry_bytes
        if n > self.max_entries:
            raise CorruptIndexError(self.path, f"{n} entries exceed the maximum {self.max_entries}")
        if n == 0:
            self._set(np.empty(0, np.int64), np.empty(0, np.int64))
            return
        try:
            m = np.memmap(self.path, dtype=self.dtype, mode="r", shape=(n,))
        except OSError as e:  # EMFILE (mapping duplicates the descriptor), EACCES: a logq error
            raise storage_error("map index", self.path, e) from None
        a, b = self._columns(m)
        del m
        self._set(a.astype(np.int64), b.astype(np.int64))

    def _set(self, a: np.ndarray, b: np.ndarray) -> None:
        cap = max(_INITIAL_CAPACITY_ENTRIES, len(a) * 2)
        self._a = np.empty(cap, dtype=np.int64)
        self._b = np.empty(cap, dtype=np.int64)
        self._a[: len(a)] = a
        self._b[: len(b)] = b
        self.entries = len(a)

    def reload_if_changed(self) -> None:
        """Pick up entries another writer appended, or a file another writer replaced."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        replaced = self._fd is not None and os.fstat(self._fd).st_ino != st.st_ino
        n = st.st_size // self.entry_bytes
        if replaced or n < self.entries or st.st_size % self.entry_bytes:
            self.close()
            self.load()
        elif n > self.entries:
            self._load_tail(n)

    def _load_tail(self, n: int) -> None:
        """Append entries [self.entries, n) read from the file: an index only grows."""
        start = self.entries * self.entry_bytes
        try:
            with open(self.path, "rb") as f:
                f.seek(start)
                raw = f.read((n - self.entries) * self.entry_bytes)
        except OSError as e:
            raise storage_error("read index", self.path, e) from None
        new = np.frombuffer(raw, dtype=self.dtype, count=len(raw) // self.entry_bytes)
        a, b = self._columns(new)
        a, b = a.astype(np.int64), b.astype(np.int64)
        if self.entries and len(a) and a[0] <= self._a[self.entries - 1]:
            self.close()
            self.load()  # not a continuation: reload it whole (load() validates the size)
            return
        while self.entries + len(a) > len(self._a):
            self._a = np.concatenate([self._a, np.empty_like(self._a)])
            self._b = np.concatenate([self._b, np.empty_like(self._b)])
        self._a[self.entries : self.entries + len(a)] = a
        self._b[self.entries : self.entries + len(b)] = b
        self.entries += len(a)

    def _columns(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    # -- writing -----------------------------------------------------------------
    def _push(self, a: int, b: int, raw: bytes) -> None:
        if self.entries >= self.max_entries:
            raise CorruptIndexError(self.path, "index is full; the segment should have rolled")
        if self.entries == len(self._a):
            self._a = np.concatenate([self._a, np.empty_like(self._a)])
            self._b = np.concatenate([self._b, np.empty_like(self._b)])
        if self.persist:
            if self._fd is None:
                self._fd = _fs.open_file(self.path, os.O_WRONLY | os.O_CREAT)
            _fs.pwrite_all(self._fd, raw, self.entries * self.entry_bytes, self.path)
        self._a[self.entries] = a
        self._b[self.entries] = b
        self.entries += 1

    def write_all(self) -> None:
        """Replace the file with the in-memory entries (after a rebuild), atomically."""
        self.close()
        arr = np.empty(self.entries, dtype=self.dtype)
        self._fill(arr)
        _fs.atomic_write(self.path, arr.tobytes())

    def _fill(self, arr: np.ndarray) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        self.entries = 0

    def fsync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def is_full(self) -> bool:
        return self.entries >= self.max_entries

    def keys(self) -> np.ndarray:
        return self._a[: self.entries]

    def values(self) -> np.ndarray:
        return self._b[: self.entries]


class OffsetIndex(_Index):
    entry_bytes = OFFSET_ENTRY_BYTES
    dtype = _OFFSET_DTYPE

    def _columns(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return m["rel"], m["pos"]

    def _fill(self, arr: np.ndarray) -> None:
        arr["rel"] = self.keys()
        arr["pos"] = self.values()

    def append(self, offset: int, position: int) -> None:
        rel = offset - self.base_offset
        # Invariant on write: strictly increasing offsets and positions, relative fits int32.
        assert 0 <= rel < 2**31 and 0 <= position < 2**31, (offset, position)
        if self.entries:
            assert rel > self._a[self.entries - 1] and position > self._b[self.entries - 1]
        self._push(rel, position, rel.to_bytes(4, "big") + position.to_bytes(4, "big"))

    def last_position(self) -> int:
        return int(self._b[self.entries - 1]) if self.entries else 0

    def lookup(self, offset: int) -> tuple[int, int]:
        """Greatest entry with offset <= target as (absolute offset, position); else (base, 0)."""
        i = int(np.searchsorted(self.keys(), offset - self.base_offset, side="right")) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + int(self._a[i]), int(self._b[i])

    def truncate_to_offset(self, offset: int) -> None:
        """Drop entries whose offset >= ``offset`` (in memory)."""
        self.entries = int(np.searchsorted(self.keys(), offset - self.base_offset, side="left"))

    def check(self, log_size: int) -> None:
        """Sanity check against the log's size; CorruptIndexError if it fails."""
        rel, pos = self.keys(), self.values()
        if self.entries == 0:
            return
        if rel[0] <= 0 or pos[0] <= 0:
            raise CorruptIndexError(self.path, "first entry at relative offset or position 0")
        if self.entries > 1 and (np.any(np.diff(rel) <= 0) or np.any(np.diff(pos) <= 0)):
            raise CorruptIndexError(self.path, "entries are not strictly increasing")
        if pos[-1] >= log_size:
            raise CorruptIndexError(self.path, f"entry points at {int(pos[-1])}, past the log end {log_size}")


class TimeIndex(_Index):
    entry_bytes = TIME_ENTRY_BYTES
    dtype = _TIME_DTYPE

    def _columns(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return m["ts"], m["rel"]

    def _fill(self, arr: np.ndarray) -> None:
        arr["ts"] = self.keys()
        arr["rel"] = self.values()

    @property
    def is_full(self) -> bool:
        # One slot stays free so that sealing can always write the final entry.
        return self.entries >= self.max_entries - 1

    def last_entry(self) -> tuple[int, int]:
        """(timestamp, absolute offset) of the last entry, or (-1, base offset) when empty."""
        if not self.entries:
            return -1, self.base_offset
        return int(self._a[self.entries - 1]), self.base_offset + int(self._b[self.entries - 1])

    def maybe_append(self, timestamp: int, offset: int, final: bool = False) -> None:
        """Add (timestamp, offset) if the timestamp is strictly greater than the last one."""
        if timestamp <= (self._a[self.entries - 1] if self.entries else -1):  # Kafka: empty = (-1, base)
            return
        if not final and self.is_full:
            return
        rel = offset - self.base_offset
        assert 0 <= rel < 2**31, offset
        if self.entries:
            assert rel >= self._b[self.entries - 1], "time index offsets must not go back"
        self._push(timestamp, rel, timestamp.to_bytes(8, "big", signed=True) + rel.to_bytes(4, "big"))

    def lookup(self, timestamp: int) -> tuple[int, int]:
        """Greatest entry with timestamp <= target as (timestamp, offset); else (-1, base)."""
        i = int(np.searchsorted(self.keys(), timestamp, side="right")) - 1
        if i < 0:
            return -1, self.base_offset
        return int(self._a[i]), self.base_offset + int(self._b[i])

    def truncate_to_offset(self, offset: int) -> None:
        rel = offset - self.base_offset
        keep = int(np.searchsorted(self.values(), rel, side="left"))
        self.entries = keep

    def check(self, next_offset: int) -> None:
        ts, rel = self.keys(), self.values()
        if self.entries > 1 and (np.any(np.diff(ts) <= 0) or np.any(np.diff(rel) < 0)):
            raise CorruptIndexError(self.path, "timestamps or offsets are not increasing")
        if self.entries and (rel[0] < 0 or self.base_offset + rel[-1] >= next_offset):
            raise CorruptIndexError(self.path, "an entry's offset lies outside the segment")
