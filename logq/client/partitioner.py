"""Choosing a partition for a record, the way Kafka's Java producer does.

- Keyed records: ``(murmur2(key) & 0x7fffffff) % num_partitions``, with Kafka's 32-bit
  MurmurHash2 (seed 0x9747b28c, m 0x5bd1e995, r 24, little-endian 4-byte blocks). Records
  keyed the same land on the same partition as with any Java-compatible client (kafka-python,
  aiokafka, librdkafka with ``partitioner=murmur2_random``). The mask is ``& 0x7fffffff``,
  not ``abs()``: the two differ for negative hashes.
- Null keys: :class:`StickyPartitioner` (KIP-794 "uniform sticky"): keep sending to one
  partition until at least ``batch_size`` bytes went to it, then move to another partition
  chosen at random. Batches fill up, and load still spreads evenly over time.
- A user's partitioner: a callable ``partitioner(key_bytes, all_partitions,
  available_partitions) -> int`` as kafka-python 1.x-2.x's ``partitioner`` setting took it
  (key after serialization, possibly None; both lists sorted; every partition is available
  in logq), or an object with kafka-python 3's ``partition(topic, key, serialized_key,
  value, serialized_value, cluster)`` method (a ``kafka.partitioner.Partitioner``), whose
  ``cluster`` answers ``topics()``, ``partitions_for_topic(topic)`` and
  ``available_partitions_for_topic(topic)``. :func:`call_partitioner` checks the result.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

from logq.errors import ConfigError, LogqError, SerializationError, UnknownPartitionError

__all__ = [
    "murmur2",
    "to_positive",
    "partition_for_key",
    "StickyPartitioner",
    "Partitioner",
    "KeyPlacements",
    "check_partitioner",
    "call_partitioner",
    "ClusterView",
]

Partitioner = Callable[[bytes | None, list[int], list[int]], int]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF

BytesLike = bytes | bytearray | memoryview


def murmur2(data: BytesLike) -> int:
    """Kafka's murmur2 of ``data`` as a signed 32-bit int (what Java's Utils.murmur2 returns)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SerializationError(
            f"murmur2 needs bytes, got {type(data).__name__}",
            hint="serialize the key to bytes first (key_serializer)",
        )
    buf = bytes(data)
    length = len(buf)
    h = (_SEED ^ length) & _MASK32
    full = length - (length & 3)
    for i in range(0, full, 4):
        k = int.from_bytes(buf[i : i + 4], "little")
        k = (k * _M) & _MASK32
        k ^= k >> 24
        k = (k * _M) & _MASK32
        h = (h * _M) & _MASK32
        h ^= k
    tail = length & 3
    if tail == 3:
        h ^= buf[full + 2] << 16
    if tail >= 2:
        h ^= buf[full + 1] << 8
    if tail >= 1:
        h ^= buf[full]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(value: int) -> int:
    """Kafka's Utils.toPositive: clear the sign bit (``& 0x7fffffff``), not ``abs()``."""
    return value & 0x7FFFFFFF


def _check_count(num_partitions: int) -> int:
    if isinstance(num_partitions, bool) or not isinstance(num_partitions, int) or num_partitions < 1:
        raise ConfigError(
            f"num_partitions must be an int >= 1, got {num_partitions!r}",
            hint="a topic has at least one partition",
        )
    return num_partitions


def partition_for_key(key: BytesLike, num_partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a non-null ``key``."""
    n = _check_count(num_partitions)
    return to_positive(murmur2(key)) % n


class KeyPlacements:
    """:func:`partition_for_key`, memoised: hashing in Python costs microseconds per key.

    At most ``entries`` (key, partition count) pairs are kept; past that the memo starts over.
    """

    def __init__(self, entries: int = 65536) -> None:
        self.entries = entries
        self._memo: dict[tuple[bytes, int], int] = {}

    def partition(self, key: bytes, num_partitions: int) -> int:
        ck = (key, num_partitions)
        p = self._memo.get(ck)
        if p is None:
            if len(self._memo) >= self.entries:
                self._memo.clear()
            p = self._memo[ck] = partition_for_key(key, num_partitions)
        return p


class StickyPartitioner:
    """Partition choice for records with and without keys (KIP-794 uniform sticky).

    Keyed records always go to :func:`partition_for_key`. Records without a key stick to
    the current partition; after at least ``batch_size`` bytes went to it, the next record
    goes to another partition picked uniformly at random (never the same one when there
    are two or more). Safe to share between threads.
    """

    def __init__(self, batch_size: int = 16384, *, rng: random.Random | None = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._current: int | None = None
        self._num_partitions = 0
        self._produced = 0

    def partition(self, key: BytesLike | None, num_partitions: int, size: int = 0) -> int:
        """The partition for one record of ``size`` bytes; null-key bytes are counted."""
        if isinstance(size, bool) or not isinstance(size, int):
            raise ConfigError(f"size must be an int (bytes), got {size!r}")
        if key is not None:
            return partition_for_key(key, num_partitions)
        n = _check_count(num_partitions)
        with self._lock:
            if self._current is None or n != self._num_partitions or self._current >= n:
                self._current = self._rng.randrange(n)
                self._num_partitions = n
                self._produced = 0
            elif self._produced >= self.batch_size:
                self._current = self._pick_other(n, self._current)
                self._produced = 0
            chosen = self._current
            self._produced += max(0, size)
            return chosen

    def _pick_other(self, n: int, current: int) -> int:
        if n == 1:
            return 0
        other = self._rng.randrange(n - 1)
        return other + 1 if other >= current else other

    @property
    def current(self) -> int | None:
        """The partition null-key records currently stick to (None before the first one)."""
        return self._current


def check_partitioner(partitioner: object) -> Any:
    """``partitioner`` if it is None, callable or has a ``partition`` method (kafka-python 3's
    Partitioner), else ConfigError (at Producer construction)."""
    has_method = callable(getattr(partitioner, "partition", None)) and not isinstance(partitioner, (str, bytes))
    if partitioner is not None and not callable(partitioner) and not has_method:
        raise ConfigError(
            f"partitioner={partitioner!r} is invalid: must be a callable "
            "partitioner(key_bytes, all_partitions, available_partitions) -> int, an object with "
            "kafka-python's partition(topic, key, serialized_key, value, serialized_value, cluster), or None"
        )
    return partitioner


class ClusterView:
    """The ``cluster`` a kafka-python Partitioner reads: one topic and its partition count."""

    __slots__ = ("topic", "num_partitions")

    def __init__(self, topic: str, num_partitions: int) -> None:
        self.topic = topic
        self.num_partitions = num_partitions

    def topics(self) -> set[str]:
        return {self.topic}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.num_partitions)) if topic == self.topic else None

    available_partitions_for_topic = partitions_for_topic


def call_partitioner(
    partitioner: Any, topic: str, key: bytes | None, num_partitions: int, given: tuple[Any, Any, Any] = (None,) * 3
) -> int:
    """The partition ``partitioner`` picks for ``key`` among ``num_partitions``, checked.

    ``given`` is (key, value, serialized value) as passed to send, for kafka-python 3's
    Partitioner objects. Its own exception is wrapped in ConfigError (``__cause__``); a
    result that is not an int in [0, num_partitions) raises UnknownPartitionError naming it.
    """
    every = list(range(num_partitions))
    method = None if callable(partitioner) else getattr(partitioner, "partition", None)
    try:
        if method is not None:
            p: Any = method(topic, given[0], key, given[1], given[2], ClusterView(topic, num_partitions))
        else:
            p = partitioner(key, every, list(every))
    except LogqError:
        raise
    except Exception as e:
        raise ConfigError(
            f"the partitioner {partitioner!r} failed for topic {topic!r}: {e!r}",
            hint="it is called as partitioner(key_bytes, all_partitions, available_partitions)",
        ) from e
    if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < num_partitions:
        err = UnknownPartitionError(topic, p, num_partitions)
        err.hint = f"the partitioner {partitioner!r} returned {p!r}; it must return one of all_partitions"
        raise err
    return p
