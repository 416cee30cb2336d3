"""Hostile input: names, planted symlinks, absurd sizes, random bytes in every parser.

Each case must end in a clear logq error (or a correct result), write nothing outside the
data directory, and keep memory bounded.
"""

from __future__ import annotations

import os
import stat
import tracemalloc

import logq
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logq.codec.batch import decode_records, encode_values, validate_batch
from logq.errors import CorruptIndexError, CorruptMetadataError, CorruptRecordError, InvalidTopicError, LogqError
from logq.storage import meta as _meta
from logq.storage.index import OffsetIndex, TimeIndex
from logq.storage.topics import validate_topic

BAD_NAMES = [
    "",
    ".",
    "..",
    "../x",
    "a/b",
    "a\\b",
    "a\x00b",
    "ä",
    " ",
    "a" * 250,
    "a\nb",
    "/abs",
    "x/../../etc",
    "__logq_x",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_topic_names_outside_kafkas_rule_are_refused_with_invalid_topic_error(tmp_path, name):
    admin = logq.Admin(str(tmp_path / "data"))
    with pytest.raises(InvalidTopicError):
        admin.create_topic(name)
    assert os.listdir(tmp_path) == ["data"]


def test_topic_name_of_249_legal_characters_is_accepted(tmp_path):
    admin = logq.Admin(str(tmp_path))
    name = "a.b_c-D9" * 31 + "x"
    assert len(name) == 249
    admin.create_topic(name)
    assert admin.list_topics() == [name]


@pytest.mark.parametrize("bad", [None, 5, b"bytes", ["x"]])
def test_topic_names_that_are_not_strings_are_refused(bad):
    with pytest.raises(InvalidTopicError):
        validate_topic(bad)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=0, max_size=260))
def test_arbitrary_names_either_fail_cleanly_or_map_inside_the_data_directory(tmp_path, name):
    root = os.path.realpath(str(tmp_path))
    try:
        validate_topic(name)
    except InvalidTopicError:
        return
    path = os.path.realpath(os.path.join(root, f"{name}-0"))
    assert os.path.commonpath([root, path]) == root
    assert os.path.dirname(path) == root


@pytest.mark.parametrize("partitions", [0, -1, 10_001, 1.5, True, "3"])
def test_partition_counts_outside_the_limit_are_refused(tmp_path, partitions):
    with pytest.raises(InvalidTopicError):
        logq.Admin(str(tmp_path)).create_topic("t", partitions=partitions)


def test_a_symlink_planted_as_a_partition_directory_is_refused_and_nothing_is_written_outside(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    outside.mkdir()
    admin = logq.Admin(str(data))
    admin.create_topic("t", 1)
    os.rmdir(data / "t-0")
    os.symlink(outside, data / "t-0")
    with pytest.raises(LogqError):
        with logq.Producer(str(data)) as p:
            p.send("t", b"x").result(5)
    assert os.listdir(outside) == []


def test_data_directory_is_private_and_files_are_owner_only(tmp_path):
    data = tmp_path / "data"
    admin = logq.Admin(str(data))
    admin.create_topic("t", 1)
    with logq.Producer(str(data)) as p:
        p.send("t", b"x").result(5)
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    part = data / "t-0"
    assert stat.S_IMODE(os.stat(part).st_mode) == 0o700
    for name in os.listdir(part):
        assert stat.S_IMODE(os.stat(part / name).st_mode) & 0o077 == 0, name


def test_a_world_writable_data_directory_warns(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o777)
    with pytest.warns(UserWarning, match="world-writable"):
        logq.Admin(str(data))


def test_a_record_over_the_limit_is_refused_and_nothing_is_written(tmp_path):
    admin = logq.Admin(str(tmp_path))
    admin.create_topic("t", 1, max_batch_bytes=4096)
    with logq.Producer(str(tmp_path)) as p:
        with pytest.raises(logq.RecordTooLargeError):
            p.send("t", b"x" * 5000)
    assert admin.describe_topic("t").records == 0


def test_a_header_claiming_two_billion_records_is_refused_before_allocating():
    batch = bytearray(encode_values([b"v"] * 3, 1700000000000))
    batch[57:61] = (2**31 - 1).to_bytes(4, "big")
    from crc32c import crc32c

    batch[17:21] = crc32c(bytes(batch[21:])).to_bytes(4, "big")
    h = validate_batch(bytes(batch))
    tracemalloc.start()
    with pytest.raises(CorruptRecordError):
        decode_records(bytes(batch), h)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("cls, suffix", [(OffsetIndex, "index"), (TimeIndex, "timeindex")])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=400))
def test_random_bytes_as_an_index_file_load_or_raise_corrupt_index_error(tmp_path, cls, suffix, data):
    path = tmp_path / f"00000000000000000000.{suffix}"
    path.write_bytes(data)
    idx = cls(str(path), 0, 1000)
    try:
        idx.load()
        idx.check(1 << 40)
    except CorruptIndexError:
        return
    assert np.all(np.diff(idx.keys()) > 0)  # whatever loads without error is strictly ordered


@settings(max_examples=1000, deadline=None)
@given(data=st.binary(min_size=0, max_size=300))
def test_random_bytes_as_a_metadata_file_decode_or_raise_corrupt_metadata_error(data):
    try:
        _meta.decode_meta(data)
    except CorruptMetadataError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    obj=st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=20), max_size=5),
    flip=st.integers(min_value=0),
)
def test_any_single_bit_flip_in_a_metadata_file_is_detected(obj, flip):
    good = _meta.encode_meta(obj)
    bad = bytearray(good)
    bit = flip % (len(bad) * 8)
    bad[bit // 8] ^= 1 << (bit % 8)
    try:
        got = _meta.decode_meta(bytes(bad))
    except CorruptMetadataError:
        return
    # The only flips that can decode are in the header's hex digits' case or spacing-free
    # no-ops; the value must then still be exactly the original.
    assert got == obj


def test_a_batch_from_outside_with_wrong_record_offset_deltas_is_refused(tmp_path):
    from logq.codec.batch import encode_batch

    log = logq.PartitionLog(str(tmp_path / "t-0"))
    good = encode_batch([(None, b"a", None, 1), (None, b"b", None, 1)])
    # Swap the records' offset deltas (0 <-> 1) and fix the CRC: a well-formed but lying batch.
    bad = bytearray(good)
    i0 = 61 + 3  # length, attributes, timestampDelta, then offsetDelta of record 0
    j = good.index(b"\x00\x02\x01\x02b") + 1  # offsetDelta of record 1 (zigzag 1 = 0x02)
    bad[i0], bad[j] = bad[j], bad[i0]
    from crc32c import crc32c

    bad[17:21] = crc32c(bytes(bad[21:])).to_bytes(4, "big")
    with pytest.raises(CorruptRecordError, match="offset deltas"):
        log.append_batch(bytes(bad))
    assert log.log_end_offset == 0
    assert log.append_batch(good).base_offset == 0
    log.close()


def test_negative_record_offset_delta_is_rejected_not_silently_skipped():
    """Regression: a record whose offset delta went negative was skipped as 'below the fetch
    offset' instead of being reported, so a damaged batch returned fewer records."""
    from crc32c import crc32c

    good = bytearray(encode_values([b"a", b"bc"], 1700000000000))
    i = good.index(b"\x00\x00\x02\x01\x04bc") + 2  # record 1's offsetDelta (zigzag 1)
    good[i] = 0x03  # zigzag -2
    good[17:21] = crc32c(bytes(good[21:])).to_bytes(4, "big")
    h = validate_batch(bytes(good))
    with pytest.raises(CorruptRecordError, match="offset delta"):
        decode_records(bytes(good), h)
    with pytest.raises(CorruptRecordError, match="offset delta"):
        decode_records(bytes(good), h, min_offset=0)
