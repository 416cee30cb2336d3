"""Replay and columnar consumption (issue 11 parts 2 and 3), with the pure and the compiled codec.

- replay: ``replay_from(offset)`` then ``poll(max_records=1)`` (the first record), then
  ``poll(max_records=1000)`` (the next 1,000 records), at random offsets of a 1M-record log;
- consume: every record through ``poll`` + ``commit`` every 1,000 records, against
  ``poll_columns`` + ``commit`` (max_records 1,000 and 100,000), in the same run.

As a pytest-benchmark suite (``make bench``) each workload is one benchmark per codec. As a
script it prints the figures side by side (median of ``--runs``)::

    python benchmarks/bench_columns.py [--records 1000000] [--runs 3] [--replays 300]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from logq.client.admin import Admin
from logq.client.consumer import Consumer, TopicPartition
from logq.codec import batch
from logq.storage.log import PartitionLog
from logq.storage.topics import partition_path

from support import config, fill, size

RECORDS = size(1_000_000, 5_000)
TP = TopicPartition("bench", 0)
CODECS = [name for name, why_not in batch.implementations().items() if why_not is None]


def build(root: str, records: int) -> str:
    with Admin(root) as admin:
        admin.create_topic("bench", 1, retention_ms=-1)
    with PartitionLog(partition_path(root, "bench", 0), config()) as log:
        fill(log, records)
    return root


def consumer(root: str, group: str) -> Consumer:
    # a lone member: no start-up delay (it would seek before its group formed)
    return Consumer(
        root,
        "bench",
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        initial_rebalance_delay_ms=0,
    )


def replay_once(c: Consumer, offset: int) -> tuple[int, int]:
    """(ns to the first record after replay_from(offset), ns for the next 1,000 records)."""
    clock = time.perf_counter_ns
    t0 = clock()
    c.replay_from(offset=offset)
    first = c.poll(1.0, max_records=1)
    t1 = clock()
    rest = c.poll(1.0, max_records=1000)
    t2 = clock()
    assert first[0].offset == offset and rest[0].offset == offset + 1 and len(rest) == 1000
    return t1 - t0, t2 - t1


def consume(c: Consumer, records: int, columns: bool, max_records: int) -> int:
    """Every record from offset 0, committing after each poll; returns the count."""
    c.seek(TP, 0)
    n = 0
    while n < records:
        got = c.poll_columns(1.0, max_records=max_records) if columns else c.poll(1.0, max_records=max_records)
        if not len(got):
            break
        n += len(got)
        c.commit()
    return n


@pytest.fixture(params=CODECS)
def codec(request: pytest.FixtureRequest) -> Iterator[str]:
    previous = batch.use_implementation(request.param)
    yield request.param
    batch.use_implementation(previous)


@pytest.fixture(scope="module")
def log_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build(str(tmp_path_factory.mktemp("columns") / "data"), RECORDS)


def test_replay_first_record_and_next_thousand(benchmark, codec: str, log_root: str) -> None:
    """replay_from(random offset) + poll(max_records=1) + poll(max_records=1000)."""
    rng = random.Random(3)
    with consumer(log_root, "replay-" + codec) as c:
        benchmark.extra_info.update(records=1001, codec=codec)
        benchmark.pedantic(lambda: replay_once(c, rng.randrange(0, RECORDS - 1001)), rounds=size(200, 3))


@pytest.mark.parametrize("columns", [False, True], ids=["poll", "poll_columns"])
def test_consume_with_commits(benchmark, codec: str, log_root: str, columns: bool) -> None:
    """Every record through poll (or poll_columns) + commit every 1,000 records."""
    with consumer(log_root, f"consume-{codec}-{columns}") as c:
        benchmark.extra_info.update(records=RECORDS, bytes=RECORDS * 100, codec=codec)
        assert benchmark.pedantic(lambda: consume(c, RECORDS, columns, 1000), rounds=size(3, 1)) == RECORDS


def measure(root: str, records: int, runs: int, replays: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name in CODECS:
        previous = batch.use_implementation(name)
        try:
            rng = random.Random(1)
            row: dict[str, list[float]] = {}
            with consumer(root, "measure-" + name) as c:
                replay_once(c, 0)  # warm: the log and its indexes open
                firsts, nexts = [], []
                for _ in range(replays):
                    a, b = replay_once(c, rng.randrange(0, records - 1001))
                    firsts.append(a / 1e3)
                    nexts.append(b / 1e3)
                row["replay first record (us, median)"] = [statistics.median(firsts)]
                row["replay next 1,000 records (us, median)"] = [statistics.median(nexts)]
                for label, columns, mr in [
                    ("poll + commit/1,000 (records/s)", False, 1000),
                    ("poll_columns(1,000) + commit (records/s)", True, 1000),
                    ("poll_columns(100,000) + commit (records/s)", True, 100_000),
                ]:
                    for _ in range(runs):
                        t0 = time.perf_counter()
                        n = consume(c, records, columns, mr)
                        row.setdefault(label, []).append(n / (time.perf_counter() - t0))
            out[name] = {k: statistics.median(v) for k, v in row.items()}
        finally:
            batch.use_implementation(previous)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--replays", type=int, default=300)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="logq-bench-columns-")
    try:
        root = build(str(Path(tmp) / "data"), args.records)
        res = measure(root, args.records, args.runs, args.replays)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    names = list(res)
    print(f"{args.records:,} records of 100 B in batches of 1,000; codecs: {', '.join(names)}")
    print(f"{'workload':<45}" + "".join(f"{n:>14}" for n in names))
    for label in res[names[0]]:
        print(f"{label:<45}" + "".join(f"{res[n][label]:>14,.1f}" for n in names))


if __name__ == "__main__":
    main()
