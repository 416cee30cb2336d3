"""Codec layer: encoding, CRC validation and decoding of one RecordBatch v2 of 1,000 records.

Every benchmark runs with the pure-Python codec and with the compiled one (the ``codec``
parameter; the compiled half skips with the reason when the extension is not built).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from logq.cli.perf_workloads import T0_MS
from logq.codec import batch as codec
from logq.codec.batch import decode_records, encode_batch, encode_values, validate_batch, walk_records
from logq.types import Record

from support import BATCH_RECORDS, batch, size, values

N = size(BATCH_RECORDS, 50)


@pytest.fixture(autouse=True, params=["pure", "compiled"])
def codec_implementation(request: pytest.FixtureRequest, benchmark) -> Iterator[str]:
    why_not = codec.implementations()[request.param]
    if why_not is not None:
        pytest.skip(why_not)
    previous = codec.use_implementation(request.param)
    benchmark.extra_info["codec"] = request.param
    yield request.param
    codec.use_implementation(previous)


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


def test_decode_records_as_consumer_records(benchmark) -> None:
    """What Consumer.poll pays: Records built straight from the batch, origin=(Record, topic, partition)."""
    data = batch(N, 100)
    h = validate_batch(data)
    benchmark.extra_info.update(records=N, bytes=N * 100)
    recs = benchmark(decode_records, data, h, origin=(Record, "t", 0))
    assert len(recs) == N and recs[-1].topic == "t"


def test_walk_records(benchmark) -> None:
    """Checking every record of a batch from outside without building any (a server's produce path)."""
    data = batch(N, 100)
    h = validate_batch(data)
    benchmark.extra_info.update(records=N, bytes=N * 100)
    assert benchmark(walk_records, data, h) == N
