"""Columnar consumption (issue 11 part 3): ``Consumer.poll_columns`` and
``PartitionLog.read_columns`` return a RecordColumns holding exactly the records ``poll``
and ``read`` return; positions and commits behave as with ``poll``; ``to_arrow`` shares the
buffers. Each test runs with the pure and the compiled codec.
"""

from __future__ import annotations

import numpy as np
import pytest
from logq import Admin, ConfigError, Consumer, Producer, Record, RecordColumns, TopicPartition
from logq.storage.log import PartitionLog
from logq.storage.topics import partition_path

PARTITIONS = 3
PER_PARTITION = 2_500


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two topics: "t" (3 partitions of 2,500 records in batches of up to 250, null and empty
    keys and values, some headers) and "u" (one small partition)."""
    root = str(tmp_path_factory.mktemp("columns") / "data")
    with Admin(root) as admin:
        admin.create_topic("t", PARTITIONS, retention_ms=-1)
        admin.create_topic("u", 1, retention_ms=-1)
    for p in range(PARTITIONS):
        with PartitionLog(partition_path(root, "t", p)) as log:
            for first in range(0, PER_PARTITION, 250):
                recs = []
                for n in range(first, first + 250):
                    key = None if n % 4 == 0 else (b"" if n % 4 == 1 else b"key-%d-%d" % (p, n))
                    value = None if n % 97 == 0 else b"v%d" % n * (n % 5)
                    headers = [("n", b"%d" % n), ("x", None)] if n % 50 == 3 else None
                    recs.append((key, value, headers, 1_700_000_000_000 + n))
                log.append(recs)
    with Producer(root, linger_ms=0) as prod:
        for i in range(10):
            prod.send("u", b"u%d" % i, key=b"k").result(10)
    return root


def by_partition(records: list[Record]) -> dict[tuple[str, int], list[Record]]:
    out: dict[tuple[str, int], list[Record]] = {}
    for r in records:
        out.setdefault((r.topic, r.partition), []).append(r)
    return out


def drain_records(c: Consumer, total: int, n: int) -> list[Record]:
    out: list[Record] = []
    while len(out) < total:
        got = c.poll(1.0, max_records=n)
        assert got
        out.extend(got)
    return out


def drain_columns(c: Consumer, total: int, n: int) -> list[RecordColumns]:
    out: list[RecordColumns] = []
    got = 0
    while got < total:
        cols = c.poll_columns(1.0, max_records=n)
        assert len(cols) and len(cols) <= n
        out.append(cols)
        got += len(cols)
    return out


@pytest.mark.parametrize("n", [1, 333, 5000])
def test_poll_columns_returns_what_poll_returns(codec: str, root: str, n: int) -> None:
    total = PARTITIONS * PER_PARTITION + 10
    with Consumer(root, "t", "u", auto_offset_reset="earliest") as a:
        want = drain_records(a, total, 5000)
    with Consumer(root, "t", "u", auto_offset_reset="earliest") as b:
        parts = drain_columns(b, total, n) if n > 1 else drain_columns(b, 50, n)
        got = [r for cols in parts for r in cols]
        if n == 1:
            assert all(len(c) == 1 for c in parts)
        for cols in parts:
            assert all(isinstance(r, Record) for r in cols)
            assert cols.offsets.dtype == np.int64 and cols.timestamps.dtype == np.int64
            assert cols.partitions.dtype == np.int32
            assert cols.key_offsets.dtype == np.int32 and len(cols.key_offsets) == len(cols) + 1
    # the same records, per partition in offset order (partitions interleave as poll's do)
    mine, theirs = by_partition(got), by_partition(want)
    for tp, recs in mine.items():
        assert recs == theirs[tp][: len(recs)]
    if n > 1:
        assert mine == theirs


def test_positions_and_commits_follow_poll_columns(codec: str, root: str) -> None:
    tp = TopicPartition("t", 1)
    with Consumer(root, group_id="g-" + codec, auto_offset_reset="earliest", enable_auto_commit=False) as c:
        c.assign([tp])
        cols = c.poll_columns(1.0, max_records=700)
        assert cols.offsets.tolist() == list(range(700))
        assert c.position(tp) == 700
        c.commit()
        assert c.committed(tp) == 700
        # poll and poll_columns mix: each picks up where the other stopped (the rest of a
        # batch one of them decoded included)
        assert [r.offset for r in c.poll(1.0, max_records=30)] == list(range(700, 730))
        assert c.poll_columns(1.0, max_records=20).offsets.tolist() == list(range(730, 750))
        assert [r.offset for r in c.poll(1.0, max_records=10)] == list(range(750, 760))
        c.seek(tp, 2_000)
        assert c.poll_columns(1.0, max_records=5).offsets.tolist() == list(range(2_000, 2_005))
        c.commit()
    with Consumer(root, group_id="g-" + codec, auto_offset_reset="earliest", enable_auto_commit=False) as c:
        c.assign([tp])
        assert c.poll_columns(1.0, max_records=1).offsets.tolist() == [2_005]


def test_poll_columns_after_a_seek_reads_little(codec: str, root: str) -> None:
    tp = TopicPartition("t", 0)
    with Consumer(root, auto_offset_reset="earliest") as c:
        c.assign([tp])
        c.seek(tp, 1_234)
        cols = c.poll_columns(1.0, max_records=1)
        assert cols.offsets.tolist() == [1_234]
        st = c.read_stats()
        assert st["batches_decoded"] == 1 and st["bytes_read"] < c.fetch_max_bytes // 8


def test_an_empty_poll_gives_empty_columns(codec: str, root: str) -> None:
    with Consumer(root, "u") as c:  # auto_offset_reset="latest": nothing new
        cols = c.poll_columns(0)
        assert len(cols) == 0 and list(cols) == [] and cols.key_offsets.tolist() == [0]


def test_deserializers_refuse_poll_columns(root: str) -> None:
    with Consumer(root, "u", value_deserializer="str") as c, pytest.raises(ConfigError, match="deserializer"):
        c.poll_columns(0)


def test_read_columns_matches_read(codec: str, root: str) -> None:
    with PartitionLog(partition_path(root, "t", 2), readonly=True) as log:
        for offset, max_bytes, max_records in [(0, 1 << 20, None), (777, 4096, None), (10, 1 << 20, 3)]:
            want = log.read(offset, max_bytes).records(origin=(Record, "t", 2))
            got = log.read_columns(offset, max_bytes, max_records=max_records)
            assert list(got) == want[:max_records]


def test_to_arrow_shares_the_buffers(codec: str, root: str) -> None:
    pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install pyarrow)")
    with Consumer(root, "t", "u", auto_offset_reset="earliest") as c:
        cols = c.poll_columns(1.0, max_records=600)
    table = cols.to_arrow()
    assert table.num_rows == len(cols)
    assert table.column_names == ["topic", "partition", "offset", "timestamp", "key", "value"]
    rows = table.to_pylist()
    for row, r in zip(rows, cols):
        assert (row["topic"], row["partition"], row["offset"], row["key"], row["value"]) == (
            r.topic,
            r.partition,
            r.offset,
            r.key,
            r.value,
        )
        assert int(row["timestamp"].timestamp() * 1000) == r.timestamp
    value = table.column("value").chunk(0)
    assert value.null_count == int((~cols.value_valid).sum()) > 0
    assert value.buffers()[2].address == pa.py_buffer(cols.value_data).address  # no copy of the data
    assert value.buffers()[1].address == cols.value_offsets.ctypes.data
    assert table.column("offset").chunk(0).buffers()[1].address == cols.offsets.ctypes.data
