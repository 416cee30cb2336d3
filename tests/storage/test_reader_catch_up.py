"""What a reader's catch-up looks at while it follows a growing log (counted, never timed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from logq.config import LogConfig
from logq.storage.log import PartitionLog

CFG = LogConfig(index_interval_bytes=64)


def _count_stats(monkeypatch: pytest.MonkeyPatch, suffixes: tuple[str, ...]) -> list[str]:
    seen: list[str] = []
    real = os.stat

    def stat(path: Any, *a: Any, **kw: Any) -> Any:
        if str(path).endswith(suffixes):
            seen.append(str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(os, "stat", stat)
    return seen


def test_a_reader_following_the_end_does_not_reload_indexes_until_it_seeks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "t-0")
    writer = PartitionLog(path, CFG)
    reader = PartitionLog(path, CFG, readonly=True)
    writer.append_values([b"first"], timestamp_ms=0)
    assert reader.read(0).next_offset == 1
    reader.offset_for_timestamp(0)  # loads the indexes once
    stats = _count_stats(monkeypatch, (".index", ".timeindex"))
    pos = 1
    for i in range(50):
        writer.append_values([b"%03d" % i] * 5, timestamp_ms=1000 + i)
        res = reader.read(pos)
        assert res.headers and res.headers[0].base_offset == pos
        pos = res.next_offset
    assert stats == []  # following the end reads by cursor: no index file looked at
    assert writer.active.index.entries > 10
    # A seek uses the index, reloaded first: the same entries as the writer's.
    assert reader.read(127).headers[0].last_offset >= 127
    assert stats  # reloaded on this use
    assert reader.active.index.entries == writer.active.index.entries
    assert reader.active.timeindex.entries == writer.active.timeindex.entries
    assert reader.offset_for_timestamp(1040) == 1 + 40 * 5
    reader.close()
    writer.close()


def test_a_writer_adopts_another_writers_index_entries_at_once(tmp_path: Path) -> None:
    """Writers add entries by the interval rule, so they reload others' entries before appending."""
    path = str(tmp_path / "t-0")
    a = PartitionLog(path, CFG)
    b = PartitionLog(path, CFG)
    for i in range(21):
        (a if i % 2 else b).append_values([b"%03d" % i] * 5)
    reader = PartitionLog(path, CFG, readonly=True)
    reader.read(50)  # loads and checks the index files
    assert reader.report.indexes_rebuilt == 0
    assert b.active.index.entries == reader.active.index.entries > 10
    assert (b.active.index.keys() == reader.active.index.keys()).all()
    for lg in (reader, a, b):
        lg.close()
