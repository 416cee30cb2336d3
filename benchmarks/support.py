"""Shared sizes and builders of the benchmark suites (see conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

from logq.cli.perf_workloads import T0_MS, make_payloads
from logq.codec.batch import encode_values
from logq.config import LogConfig
from logq.storage.log import PartitionLog

T = TypeVar("T")
TINY = os.environ.get("LOGQ_BENCH_SCALE", "") == "tiny"
VALUE_BYTES = 100
BATCH_RECORDS = 1000


def size(full: T, tiny: T) -> T:
    """The realistic size, or a small one under LOGQ_BENCH_SCALE=tiny."""
    return tiny if TINY else full


def values(n: int = BATCH_RECORDS, value_bytes: int = VALUE_BYTES) -> list[bytes]:
    pool = make_payloads(value_bytes)
    return [pool[i % len(pool)] for i in range(n)]


def batch(n: int = BATCH_RECORDS, value_bytes: int = VALUE_BYTES, ts: int = T0_MS) -> bytes:
    """One encoded v2 batch of ``n`` values (base offset 0)."""
    return encode_values(values(n, value_bytes), ts)


def config(**overrides: object) -> LogConfig:
    base = {"retention_ms": -1}  # benchmark logs use old timestamps: never expire them
    base.update(overrides)
    return LogConfig(**base)  # type: ignore[arg-type]


def fill(log: PartitionLog, records: int, vals: Sequence[bytes] = ()) -> None:
    """Append ``records`` values in batches of 1,000; batch k has timestamp T0_MS + k."""
    vals = list(vals) or values()
    k = 0
    for first in range(0, records, len(vals)):
        n = min(len(vals), records - first)
        log.append_values(vals[:n], timestamp_ms=T0_MS + k)
        k += 1
