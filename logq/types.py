"""The value types every layer shares: a topic-partition, a consumed record, an offset with its time.

They live below the layers (codec, storage, groups, client) so that each layer names the same
thing with the same type; ``logq/__init__.py`` re-exports them.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class TopicPartition(NamedTuple):
    """One partition of one topic, as Kafka's clients name it."""

    topic: str
    partition: int


class Record(NamedTuple):
    """A consumed record: where it is (topic, partition, offset), when, and its deserialized key and value.

    ``headers`` is a tuple of ``(str, bytes | None)`` pairs in the order they were sent; keys may repeat.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Any
    value: Any
    headers: tuple[tuple[str, bytes | None], ...]


class OffsetAndTimestamp(NamedTuple):
    """The answer of ``offsets_for_times``: the first offset at or after a time, and that record's time."""

    offset: int
    timestamp: int


class ShareRecord(NamedTuple):
    """A record delivered by a ShareConsumer: ``Record``'s fields, then ``delivery_count``, the
    number of times it was acquired (1 the first time; a redelivery after a release, an expired
    lock or a crashed consumer counts up)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Any
    value: Any
    headers: tuple[tuple[str, bytes | None], ...]
    delivery_count: int
