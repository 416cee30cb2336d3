"""Offset commits: the OffsetStore write (A/B copies), with and without fdatasync."""

from __future__ import annotations

from pathlib import Path

import pytest
from logq.groups.offsets import OffsetStore

from support import size


@pytest.mark.parametrize("partitions", [1, 100])
@pytest.mark.parametrize("sync", [False, True], ids=["nosync", "sync"])
def test_commit(benchmark, tmp_path: Path, partitions: int, sync: bool) -> None:
    store = OffsetStore(str(tmp_path / "group"))
    offsets = iter(range(1, 10_000_000))

    def commit() -> None:
        off = next(offsets)
        store.commit({("bench", p): off for p in range(partitions)}, sync=sync)

    benchmark.extra_info.update(records=partitions)
    benchmark.pedantic(commit, rounds=size(300 if not sync else 100, 2), warmup_rounds=size(5, 0))
    assert store.committed("bench", 0) is not None
    store.close()
