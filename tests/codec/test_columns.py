"""Columnar decoding (logq/codec/columnar.py, compiled twin logq/codec/columns.pyx).

The whole file runs with the pure and the compiled codec (tests/codec/conftest.py). The
columns of a batch must hold exactly what ``decode_records`` returns; side by side, the
pure and the compiled implementation must give identical columns (same dtypes, same bytes)
or the same error (reason and position) on hostile input.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from logq import RecordColumns
from logq.codec import batch
from logq.codec.batch import BATCH_OVERHEAD, Compression, decode_records, encode_batch, validate_batch
from logq.codec.columnar import OUT_OF_RANGE, columns_from_records, compiled_columns, decode_columns
from logq.errors import CorruptRecordError
from logq.types import Record

from tests.codec.test_codec_fuzz import FUZZ, T, mutated

WHY_NOT_COMPILED = batch.implementations()["compiled"] or (
    None if compiled_columns is not None else "logq.codec.columns is not built"
)
needs_compiled = pytest.mark.skipif(WHY_NOT_COMPILED is not None, reason=str(WHY_NOT_COMPILED))

records = st.lists(
    st.tuples(
        st.one_of(st.none(), st.binary(max_size=30)),
        st.one_of(st.none(), st.binary(max_size=300)),
        st.one_of(st.none(), st.lists(st.tuples(st.text(max_size=4), st.one_of(st.none(), st.binary(max_size=6))))),
        st.integers(min_value=0, max_value=2**45),
    ),
    min_size=1,
    max_size=30,
)


def arrays(c: RecordColumns) -> tuple[Any, ...]:
    """Every column with its dtype, comparable with ==."""
    out: list[Any] = []
    for name in RecordColumns.__slots__:
        v = getattr(c, name)
        out.append((v.dtype.str, v.tolist()) if isinstance(v, np.ndarray) else v)
    return tuple(out)


def outcome(name: str, buf: bytes, min_offset: int = 0) -> tuple[Any, ...]:
    previous = batch.use_implementation(name)
    try:
        h = batch.read_header(buf)
        return ("ok", arrays(decode_columns(buf, h, topic="t", partition=4, min_offset=min_offset)))
    except CorruptRecordError as e:
        return ("corrupt", e.reason, e.position)
    finally:
        batch.use_implementation(previous)


def check_layout(c: RecordColumns) -> None:
    n = len(c)
    assert c.offsets.dtype == np.int64 and c.timestamps.dtype == np.int64 and c.offsets.shape == (n,)
    assert c.partitions.dtype == np.int32 and c.topic_codes.dtype == np.int32
    for offs, data, valid in ((c.key_offsets, c.key_data, c.key_valid), (c.value_offsets, c.value_data, c.value_valid)):
        assert offs.dtype == np.int32 and offs.shape == (n + 1,) and offs[0] == 0 and offs[-1] == len(data)
        assert valid.dtype == np.bool_ and valid.shape == (n,)
        assert isinstance(data, bytes)


@given(records, st.integers(min_value=0, max_value=40), st.sampled_from([Compression.NONE, Compression.GZIP]))
@settings(FUZZ, max_examples=300)
def test_columns_hold_what_decode_records_returns(recs: list, skip: int, compression: Compression) -> None:
    buf = encode_batch(recs, 1000, compression=compression)
    h = validate_batch(buf)
    cols = decode_columns(buf, h, topic="t", partition=4, min_offset=1000 + skip)
    check_layout(cols)
    want = [Record("t", 4, *r) for r in decode_records(buf, h, min_offset=1000 + skip)]
    assert list(cols) == want
    assert len(cols) == len(want)
    assert (cols.headers is None) == (not any(r.headers for r in want))


@needs_compiled
@given(records, st.integers(min_value=0, max_value=40))
@settings(FUZZ, max_examples=300)
def test_pure_and_compiled_give_identical_columns(recs: list, skip: int) -> None:
    buf = encode_batch(recs, 1000)
    got = outcome("pure", buf, 1000 + skip)
    assert got[0] == "ok"
    assert outcome("compiled", buf, 1000 + skip) == got


@needs_compiled
@given(mutated())
@settings(FUZZ, max_examples=1000)
def test_mutated_batches_give_the_same_columns_or_the_same_error(buf: bytes) -> None:
    if len(buf) < BATCH_OVERHEAD:
        return
    h = batch.read_header(buf)
    if h.size > len(buf) or h.size < BATCH_OVERHEAD or h.attributes & 0x07:
        return  # decode_columns takes batches validate_batch accepted; compressed ones go one way
    assert outcome("compiled", buf) == outcome("pure", buf)
    assert outcome("compiled", buf, h.base_offset + 2) == outcome("pure", buf, h.base_offset + 2)


@needs_compiled
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=8), st.booleans())
@settings(FUZZ, max_examples=600)
def test_random_record_bytes_give_the_same_outcome(data: bytes, count: int, log_append: bool) -> None:
    head = bytearray(encode_batch([(None, b"x", None, T)])[:BATCH_OVERHEAD])
    struct.pack_into(">i", head, 57, count)
    struct.pack_into(">i", head, 23, max(count - 1, 0))
    struct.pack_into(">h", head, 21, 0x08 if log_append else 0)
    buf = head + data
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    assert outcome("compiled", bytes(buf)) == outcome("pure", bytes(buf))


def test_a_timestamp_past_int64_is_a_corrupt_record() -> None:
    buf = bytearray(encode_batch([(None, b"a", None, T), (None, b"b", None, T + 10)]))
    struct.pack_into(">q", buf, 27, 2**63 - 5)  # baseTimestamp: T + 10 - T lands past int64
    h = batch.read_header(bytes(buf))
    with pytest.raises(CorruptRecordError) as e:
        decode_columns(bytes(buf), h, 0)
    assert e.value.reason == OUT_OF_RANGE
    # below min_offset the record is checked but not kept: no error
    assert len(decode_columns(bytes(buf), h, 0, min_offset=2)) == 0


def test_null_keys_and_values_are_masked_not_empty() -> None:
    buf = encode_batch([(None, b"", None, T), (b"", None, None, T), (b"k", b"v", [("h", None)], T)])
    cols = decode_columns(buf, validate_batch(buf), topic="x", partition=0)
    assert cols.key_valid.tolist() == [False, True, True]
    assert cols.value_valid.tolist() == [True, False, True]
    assert cols.key_offsets.tolist() == [0, 0, 0, 1] and cols.key_data == b"k"
    assert cols.headers == [(), (), (("h", None),)]
    assert [(r.key, r.value) for r in cols] == [(None, b""), (b"", None), (b"k", b"v")]


def test_slice_and_concat_give_the_same_records() -> None:
    recs = [(b"k%d" % i if i % 2 else None, b"v" * i, [("i", b"%d" % i)] if i == 7 else None, T + i) for i in range(20)]
    a = encode_batch(recs, 0)
    b = encode_batch(recs, 20)
    ca = decode_columns(a, validate_batch(a), topic="a", partition=0)
    cb = decode_columns(b, validate_batch(b), topic="b", partition=1)
    both = RecordColumns.concat([ca.slice(0, 5), ca.slice(5, 20), cb])
    check_layout(both)
    assert list(both) == list(ca) + list(cb)
    assert both.topic_names == ("a", "b")
    assert both[-1] == list(cb)[-1] and both[3] == list(ca)[3]
    assert columns_from_records(list(both)) == both
    assert len(RecordColumns.concat([])) == 0 and list(RecordColumns.empty()) == []


def test_records_builds_what_iteration_gives() -> None:
    recs = [
        (b"k%d" % i if i % 3 else None, None if i == 4 else b"v" * i, [("i", b"%d" % i)] if i % 6 == 1 else None, T + i)
        for i in range(30)
    ]
    a, b = encode_batch(recs, 0), encode_batch(recs[:7], 30)
    cols = RecordColumns.concat(
        [
            decode_columns(a, validate_batch(a), topic="a", partition=2).slice(2, 30),
            decode_columns(b, validate_batch(b), topic="b", partition=5),
        ]
    )
    everything = list(cols)
    assert all(type(r) is Record for r in cols.records())
    assert cols.records() == everything
    assert cols.records(3, 17) == everything[3:17] and cols.records(5, 5) == []
    assert cols.records(len(cols) - 1) == everything[-1:]
    with pytest.raises(IndexError):
        cols.records(3, 2)
    with pytest.raises(IndexError):
        cols.records(0, len(cols) + 1)
