"""Index layer: lookups in the sparse offset and time indexes, appends, and loading a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from logq.cli.perf_workloads import T0_MS
from logq.storage.index import OffsetIndex, TimeIndex

from support import size

ENTRIES = size(100_000, 500)  # a 400 MiB segment: an entry per 4 KiB (index_interval_bytes)
STEP_RECORDS, STEP_BYTES = 40, 4200  # ~40 records of 100 B per entry
LOOKUPS = size(1000, 20)
MAX = 10 << 20


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    d = tmp_path_factory.mktemp("index")
    off = OffsetIndex(str(d / "0.index"), 0, MAX // 8)
    tim = TimeIndex(str(d / "0.timeindex"), 0, MAX // 12)
    for i in range(1, ENTRIES + 1):
        off.append(i * STEP_RECORDS - 1, i * STEP_BYTES)
        tim.maybe_append(T0_MS + i, i * STEP_RECORDS - 1)
    off.close()
    tim.close()
    return off, tim


def test_offset_index_lookup(benchmark, indexes: tuple) -> None:
    off, _ = indexes
    targets = np.random.default_rng(0).integers(0, ENTRIES * STEP_RECORDS, LOOKUPS).tolist()
    benchmark.extra_info.update(records=LOOKUPS)
    benchmark(lambda: [off.lookup(t) for t in targets])


def test_time_index_lookup(benchmark, indexes: tuple) -> None:
    _, tim = indexes
    targets = np.random.default_rng(0).integers(T0_MS, T0_MS + ENTRIES, LOOKUPS).tolist()
    benchmark.extra_info.update(records=LOOKUPS)
    benchmark(lambda: [tim.lookup(t) for t in targets])


def test_offset_index_append(benchmark, tmp_path: Path) -> None:
    """1,000 entries appended to a fresh file (one pwrite each, as the writer does)."""
    n = size(1000, 20)
    counter = iter(range(1_000_000))

    def setup() -> tuple:
        idx = OffsetIndex(str(tmp_path / f"{next(counter)}.index"), 0, MAX // 8)
        return (idx,), {}

    def run(idx: OffsetIndex) -> None:
        for i in range(1, n + 1):
            idx.append(i * STEP_RECORDS - 1, i * STEP_BYTES)
        idx.close()

    benchmark.extra_info.update(records=n)
    benchmark.pedantic(run, setup=setup, rounds=size(20, 1))


def test_offset_index_load(benchmark, indexes: tuple) -> None:
    """Loading (and checking) a segment's whole offset index, as the first read of it does."""
    off, _ = indexes
    path = off.path

    def load() -> OffsetIndex:
        idx = OffsetIndex(path, 0, MAX // 8)
        idx.load()
        idx.check(ENTRIES * STEP_BYTES + 1)
        return idx

    benchmark.extra_info.update(records=ENTRIES, bytes=ENTRIES * 8)
    assert benchmark(load).entries == ENTRIES
