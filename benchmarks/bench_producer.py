"""Producer layer: send (batched by size and linger), send_batch, and a lone send."""

from __future__ import annotations

from pathlib import Path

import pytest
from logq.client.admin import Admin
from logq.client.producer import Producer

from support import BATCH_RECORDS, size, values

N = size(BATCH_RECORDS, 50)


def _producer(root: Path, **kw: object) -> Producer:
    with Admin(str(root)) as admin:
        admin.create_topic("bench", 1, retention_ms=-1)
    return Producer(str(root), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("value_bytes", [100, 1024])
def test_send_batch(benchmark, tmp_path: Path, value_bytes: int) -> None:
    """send_batch of 1,000 values: written synchronously, in batches of ~512 KiB."""
    p = _producer(tmp_path)
    vals = values(N, value_bytes)
    benchmark.extra_info.update(records=N, bytes=N * value_bytes)
    benchmark.pedantic(p.send_batch, args=("bench", vals), rounds=size(300, 2), warmup_rounds=size(5, 0))
    p.close()


def test_send_1000_then_flush(benchmark, tmp_path: Path) -> None:
    """1,000 sends of 100 B (batch_size 16 KiB, linger 5 ms), then flush()."""
    p = _producer(tmp_path)
    vals = values(N)

    def run() -> None:
        send = p.send
        for v in vals:
            send("bench", v)
        p.flush()

    benchmark.extra_info.update(records=N, bytes=N * 100)
    benchmark.pedantic(run, rounds=size(100, 2), warmup_rounds=size(3, 0))
    p.close()


def test_send_one_linger_0(benchmark, tmp_path: Path) -> None:
    """A lone record with linger_ms=0: encoded and appended before send() returns."""
    p = _producer(tmp_path, linger_ms=0)
    v = values(1)[0]
    benchmark.extra_info.update(records=1, bytes=100)
    benchmark.pedantic(p.send, args=("bench", v), rounds=size(2000, 2), warmup_rounds=size(20, 0))
    p.close()
