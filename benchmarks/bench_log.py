"""Partition-log layer: append_values, sequential fetches, seeks by offset and by timestamp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from logq.cli.perf_workloads import T0_MS
from logq.storage.log import PartitionLog

from support import BATCH_RECORDS, config, fill, size, values

SEEK_SIZES = size([100_000, 1_000_000], [2_000])
LOOKUPS = size(200, 5)


@pytest.mark.parametrize("fsync", ["never", "always"])
def test_append_values(benchmark, tmp_path: Path, fsync: str) -> None:
    """One batch of 1,000 x 100 B per call (fsync=always adds an fdatasync per call)."""
    log = PartitionLog(str(tmp_path / "t-0"), config(fsync=fsync))
    vals = values()
    benchmark.extra_info.update(records=BATCH_RECORDS, bytes=BATCH_RECORDS * 100)
    benchmark.pedantic(
        log.append_values, args=(vals,), kwargs={"timestamp_ms": T0_MS}, rounds=size(300, 2), warmup_rounds=size(5, 0)
    )
    log.close()


@pytest.fixture(scope="module", params=SEEK_SIZES, ids=lambda n: f"{n}rec")
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    n = request.param
    path = str(tmp_path_factory.mktemp("log") / "t-0")
    with PartitionLog(path, config()) as w:
        fill(w, n)
    reader = PartitionLog(path, config(), readonly=True)
    yield n, reader
    reader.close()


def test_read_sequential_1mib(benchmark, built: tuple) -> None:
    """Fetch ~1 MiB from a random offset and decode its records (the consumer's read path)."""
    n, log = built
    starts = iter(np.random.default_rng(0).integers(0, n, 100_000).tolist())

    def fetch() -> int:
        return len(log.read(next(starts)).records())

    benchmark.extra_info.update(records=len(log.read(0).records()))  # per fetch, about
    assert benchmark(fetch) > 0


def test_seek_by_offset(benchmark, built: tuple) -> None:
    """read(offset, 1): the CRC-checked batch holding a random offset; grows with log size?"""
    n, log = built
    targets = np.random.default_rng(1).integers(0, n, LOOKUPS).tolist()
    benchmark.extra_info.update(records=LOOKUPS, log_records=n)
    benchmark(lambda: [log.read(t, 1) for t in targets])


def test_seek_by_timestamp(benchmark, built: tuple) -> None:
    """offset_for_timestamp of a random time (each batch has its own timestamp)."""
    n, log = built
    targets = np.random.default_rng(2).integers(T0_MS, T0_MS + n // BATCH_RECORDS, LOOKUPS).tolist()
    benchmark.extra_info.update(records=LOOKUPS, log_records=n)
    found = benchmark(lambda: [log.offset_for_timestamp(t) for t in targets])
    assert None not in found
