"""Kafka's default partitioner: murmur2 for keys (reference table), uniform sticky for null keys."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from logq.client.partitioner import StickyPartitioner, murmur2, partition_for_key, to_positive
from logq.errors import ConfigError, SerializationError

# kafka-facts.md section 6: key, signed murmur2, masked, partition of 12, partition of 3
VECTORS = [
    (b"21", -973932308, 1173551340, 0, 0),
    (b"foobar", -790332482, 1357151166, 6, 0),
    (b"abc", 479470107, 479470107, 3, 0),
    (b"a-little-bit-long-string", -985981536, 1161502112, 8, 2),
    (b"key-0", 29210041, 29210041, 1, 1),
    (b"hello", 2132663229, 2132663229, 9, 0),
    (b"user-42", 1459644460, 1459644460, 4, 1),
    (b"", 275646681, 275646681, 9, 0),
]


@pytest.mark.parametrize("key,signed,masked,of12,of3", VECTORS, ids=[v[0].decode() or "empty" for v in VECTORS])
def test_murmur2_matches_kafka_reference_vectors(key: bytes, signed: int, masked: int, of12: int, of3: int) -> None:
    assert murmur2(key) == signed
    assert to_positive(murmur2(key)) == masked
    assert partition_for_key(key, 12) == of12
    assert partition_for_key(key, 3) == of3


def test_mask_is_sign_bit_clear_not_abs() -> None:
    h = murmur2(b"21")
    assert h < 0
    assert to_positive(h) == h & 0x7FFFFFFF != abs(h)


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=1000))
def test_partition_is_in_range_and_deterministic(key: bytes, n: int) -> None:
    p = partition_for_key(key, n)
    assert 0 <= p < n
    assert p == partition_for_key(bytearray(key), n) == partition_for_key(memoryview(key), n)
    assert -(2**31) <= murmur2(key) < 2**31


@pytest.mark.parametrize("n", [0, -1, 1.5, True, None])
def test_bad_partition_count_is_a_config_error(n: object) -> None:
    with pytest.raises(ConfigError):
        partition_for_key(b"k", n)  # type: ignore[arg-type]


def test_non_bytes_key_is_a_serialization_error_naming_the_type() -> None:
    with pytest.raises(SerializationError, match="str"):
        partition_for_key("text", 3)  # type: ignore[arg-type]


def test_keyed_records_ignore_stickiness() -> None:
    sp = StickyPartitioner(batch_size=10, rng=random.Random(1))
    assert {sp.partition(b"foobar", 12, 1000) for _ in range(20)} == {6}


def test_null_keys_stick_until_batch_size_bytes_then_move_to_another_partition() -> None:
    sp = StickyPartitioner(batch_size=100, rng=random.Random(7))
    first = sp.partition(None, 6, 40)
    assert sp.partition(None, 6, 40) == first  # 80 bytes so far
    assert sp.partition(None, 6, 40) == first  # 120 bytes after this one: >= batch_size
    moved = sp.partition(None, 6, 40)
    assert moved != first
    assert sp.current == moved


def test_null_keys_spread_evenly_over_time() -> None:
    sp = StickyPartitioner(batch_size=1000, rng=random.Random(3))
    counts = Counter(sp.partition(None, 4, 100) for _ in range(40_000))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 0.8 * 10_000  # 400 batches spread over 4 partitions


def test_single_partition_and_changed_partition_count() -> None:
    sp = StickyPartitioner(batch_size=1, rng=random.Random(5))
    assert [sp.partition(None, 1, 10) for _ in range(5)] == [0] * 5
    assert 0 <= sp.partition(None, 3, 10) < 3  # the topic grew: choose again in range


def test_bad_batch_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        StickyPartitioner(batch_size=0)
