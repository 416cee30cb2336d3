"""Consumer layer: draining a backlog with poll(), and picking up one fresh record."""

from __future__ import annotations

from pathlib import Path

import pytest
from logq.client.admin import Admin
from logq.client.consumer import Consumer, TopicPartition
from logq.client.producer import Producer
from logq.storage.log import PartitionLog
from logq.storage.topics import partition_path

from support import config, fill, size, values

BACKLOG = size(100_000, 2_000)


@pytest.fixture(scope="module")
def backlog(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("consumer"))
    with Admin(root) as admin:
        admin.create_topic("bench", 1, retention_ms=-1)
    with PartitionLog(partition_path(root, "bench", 0), config()) as log:
        fill(log, BACKLOG)
    return root


@pytest.mark.parametrize("max_poll_records", [500, 10_000])
def test_drain_backlog(benchmark, backlog: str, max_poll_records: int) -> None:
    """Every record of the backlog through poll() (100 B values, batches of 1,000)."""
    c = Consumer(backlog, "bench", auto_offset_reset="earliest", max_poll_records=max_poll_records)
    tp = TopicPartition("bench", 0)

    def drain() -> int:
        c.seek(tp, 0)
        n = 0
        while n < BACKLOG:
            got = c.poll(timeout=1.0)
            if not got:
                break
            n += len(got)
        return n

    benchmark.extra_info.update(records=BACKLOG, bytes=BACKLOG * 100)
    assert benchmark.pedantic(drain, rounds=size(5, 1)) == BACKLOG
    c.close()


def test_poll_one_fresh_record(benchmark, tmp_path: Path) -> None:
    """Send one record (linger 0), then poll it: the in-process half of end-to-end latency."""
    with Admin(str(tmp_path)) as admin:
        admin.create_topic("bench", 1, retention_ms=-1)
    p = Producer(str(tmp_path), linger_ms=0)
    c = Consumer(str(tmp_path), "bench", auto_offset_reset="earliest")
    v = values(1)[0]

    def one() -> int:
        p.send("bench", v)
        return len(c.poll(timeout=1.0))

    benchmark.extra_info.update(records=1)
    assert benchmark.pedantic(one, rounds=size(2000, 2), warmup_rounds=size(20, 0)) == 1
    c.close()
    p.close()
