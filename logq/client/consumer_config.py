"""Argument checks of the Consumer (logq/client/consumer.py).

Every argument is checked when the Consumer is built, before it touches the data directory,
so a mistake is a ConfigError (or InvalidTopicError) naming the argument and what it accepts,
never a failure later in a background poll. The helpers check arguments of the Consumer's
methods the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from logq.client.handles import check_max_open_partitions
from logq.errors import ConfigError, InvalidTopicError
from logq.storage.topics import validate_topic
from logq.types import TopicPartition

__all__ = ["RESETS", "as_tp", "check_consumer_args", "flag", "int_at_least", "iterable", "mapping"]

RESETS = ("earliest", "latest", "error")  # the auto_offset_reset policies


def as_tp(tp: Any) -> TopicPartition:
    """A (topic, partition) pair given by the caller as a TopicPartition; InvalidTopicError if it is not one."""
    try:
        topic, partition = tp
    except (TypeError, ValueError):
        raise InvalidTopicError(tp, "expected a (topic, partition) pair") from None
    validate_topic(topic)
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        raise InvalidTopicError(f"{topic}-{partition}", "the partition must be an int >= 0")
    return TopicPartition(topic, partition)


def iterable(items: Any, what: str) -> list[Any]:
    """``items`` as a list; ConfigError if it is a single str or bytes, or not iterable."""
    if isinstance(items, (str, bytes)):
        raise ConfigError(f"{what} must be an iterable of them, got the single {type(items).__name__} {items!r}")
    try:
        return list(items)
    except TypeError:
        raise ConfigError(f"{what} must be an iterable, got {type(items).__name__}") from None


def mapping(items: Any, what: str) -> Mapping[Any, Any]:
    """``items``, if it is a mapping; ConfigError otherwise."""
    if not isinstance(items, Mapping):
        raise ConfigError(f"{what} must be a dict {{TopicPartition: ...}}, got {type(items).__name__}")
    return items


def int_at_least(name: str, v: Any, lo: int) -> int:
    """``v``, if it is an int >= ``lo`` (not a bool); ConfigError naming ``name`` otherwise."""
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"{name}={v!r} is invalid: must be an int >= {lo}")
    return v


def flag(name: str, v: Any) -> bool:
    """``v``, if it is a bool; ConfigError naming ``name`` otherwise."""
    if not isinstance(v, bool):
        raise ConfigError(f"{name}={v!r} is invalid: must be True or False")
    return v


def check_consumer_args(
    data_dir: Any,
    topics: Sequence[Any],
    *,
    auto_offset_reset: Any,
    positive_ints: Mapping[str, Any],
    flags: Mapping[str, Any],
    callbacks: Mapping[str, Any],
    idents: Mapping[str, Any],
    consumer_timeout_ms: Any,
    max_open_partitions: Any,
) -> None:
    """Check the Consumer's arguments, in this order; raise at the first that is invalid.

    ``positive_ints`` (name -> value) must be ints >= 1, ``flags`` bools, ``callbacks`` None or
    callables, ``idents`` (group_id, member_id) None or str.
    """
    if not isinstance(data_dir, (str, os.PathLike)):
        raise ConfigError(f"data_dir={data_dir!r} is invalid: must be a path (str or os.PathLike)")
    if not isinstance(auto_offset_reset, str) or auto_offset_reset not in RESETS:
        raise ConfigError(f"auto_offset_reset={auto_offset_reset!r} is invalid: one of {', '.join(RESETS)}")
    for name, v in positive_ints.items():
        int_at_least(name, v, 1)
    for name, v in flags.items():
        flag(name, v)
    for name, fn in callbacks.items():
        if fn is not None and not callable(fn):
            raise ConfigError(f"{name}={fn!r} is invalid: must be None or a callable taking a set of partitions")
    for name, ident in idents.items():
        if ident is not None and not isinstance(ident, str):
            raise ConfigError(f"{name}={ident!r} is invalid: must be None or a str")
    for t in topics:
        if not isinstance(t, str):
            raise InvalidTopicError(t, "topics are passed as separate str arguments: Consumer(data_dir, 'a', 'b')")
    if consumer_timeout_ms is not None and (
        isinstance(consumer_timeout_ms, bool)
        or not isinstance(consumer_timeout_ms, (int, float))
        or not consumer_timeout_ms >= 0
    ):
        raise ConfigError(f"consumer_timeout_ms={consumer_timeout_ms!r} is invalid: must be None or a number >= 0")
    check_max_open_partitions(max_open_partitions)
