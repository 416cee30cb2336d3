"""Segment layer: appending a batch, reading at a position, finding an offset, scanning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from logq.codec.batch import stamp_base_offset, validate_batch
from logq.storage.segment import Segment

from support import BATCH_RECORDS, batch, size

BATCHES = size(600, 10)  # ~64 MiB of 100-byte values
KW = dict(index_interval_bytes=4096, segment_index_bytes=10 << 20, max_batch_bytes=1_048_588)


def _append(seg: Segment, data: bytes) -> None:
    buf = bytearray(data)
    stamp_base_offset(buf, seg.next_offset)
    seg.append(bytes(buf), validate_batch(buf))


@pytest.fixture(scope="module")
def full_segment(tmp_path_factory: pytest.TempPathFactory) -> Segment:
    seg = Segment(str(tmp_path_factory.mktemp("segment")), 0, **KW)
    seg.open(True)
    data = batch()
    for _ in range(BATCHES):
        _append(seg, data)
    seg.indexes_loaded = True
    return seg


def test_append_batch(benchmark, tmp_path: Path) -> None:
    """One pwrite of a 1,000-record batch plus index bookkeeping (no fsync)."""
    seg = Segment(str(tmp_path), 0, **KW)
    seg.open(True)
    data = batch()
    benchmark.extra_info.update(records=BATCH_RECORDS, bytes=len(data))
    benchmark.pedantic(_append, args=(seg, data), rounds=size(300, 2), iterations=1)
    seg.close_files()


def test_read_1mib(benchmark, full_segment: Segment) -> None:
    positions = np.random.default_rng(0).integers(0, max(1, full_segment.size - (1 << 20)), 64).tolist()
    it = iter(positions * 100_000)
    benchmark.extra_info.update(bytes=1 << 20)
    benchmark(lambda: full_segment.read(next(it), 1 << 20))


def test_find_position(benchmark, full_segment: Segment) -> None:
    """Index lookup plus a short header scan: where a fetch of a random offset starts."""
    n = size(1000, 20)
    targets = np.random.default_rng(0).integers(0, full_segment.next_offset, n).tolist()
    benchmark.extra_info.update(records=n)
    benchmark(lambda: [full_segment.find_position(t) for t in targets])


def test_scan_validate(benchmark, full_segment: Segment) -> None:
    """Validate every batch (structure, CRC, contiguous offsets): the core of recovery."""
    benchmark.extra_info.update(records=full_segment.next_offset, bytes=full_segment.size)
    res = benchmark(full_segment.scan, 0)
    assert res.error is None and res.next_offset == full_segment.next_offset
