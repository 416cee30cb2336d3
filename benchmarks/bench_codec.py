"""Codec layer: encoding, CRC validation and decoding of one RecordBatch v2 of 1,000 records."""

from __future__ import annotations

import pytest
from logq.cli.perf_workloads import T0_MS
from logq.codec.batch import decode_records, encode_batch, encode_values, validate_batch

from support import BATCH_RECORDS, batch, size, values

N = size(BATCH_RECORDS, 50)


@pytest.mark.parametrize("value_bytes", [100, 1024])
def test_encode_values(benchmark, value_bytes: int) -> None:
    """The send_batch fast path: one key, one timestamp, no headers."""
    vals = values(N, value_bytes)
    benchmark.extra_info.update(records=N, bytes=N * value_bytes)
    out = benchmark(encode_values, vals, T0_MS)
    assert validate_batch(out).records_count == N


def test_encode_batch_with_keys_and_headers(benchmark) -> None:
    """The general path used by Producer.send: key, value, one header, own timestamp each."""
    recs = [(b"key-%d" % i, v, (("trace", b"abc"),), T0_MS + i) for i, v in enumerate(values(N))]
    benchmark.extra_info.update(records=N, bytes=N * 100)
    out = benchmark(encode_batch, recs)
    assert validate_batch(out).records_count == N


@pytest.mark.parametrize("value_bytes", [100, 1024])
def test_validate_batch(benchmark, value_bytes: int) -> None:
    """Structure checks plus CRC-32C over the whole batch (every read and recovery does it)."""
    data = batch(N, value_bytes)
    benchmark.extra_info.update(records=N, bytes=len(data))
    h = benchmark(validate_batch, data)
    assert h.records_count == N


@pytest.mark.parametrize("value_bytes", [100, 1024])
def test_decode_records(benchmark, value_bytes: int) -> None:
    """Records of a validated batch as Record tuples (what a consumer pays per record)."""
    data = batch(N, value_bytes)
    h = validate_batch(data)
    benchmark.extra_info.update(records=N, bytes=N * value_bytes)
    recs = benchmark(decode_records, data, h)
    assert len(recs) == N and recs[-1].offset == N - 1
