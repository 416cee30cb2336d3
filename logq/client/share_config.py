"""Argument checks and record-header rules of the ShareConsumer (logq/client/share_consumer.py).

Bounds (an embedded queue allows more than Kafka's group configs, whose ranges are given):

- ``lock_duration_ms``: 1 ms to 1 hour (Kafka: 15,000-60,000, default 30,000). Short locks are
  for tests; a lock shorter than the work redelivers records that are still being processed.
- ``delivery_count_limit``: 1-1,000 (Kafka: 2-10, default 5).
- ``max_in_flight``: 1-100,000 (Kafka's group.share.partition.max.record.locks: 100-10,000,
  default 2,000).

Headers a producer writes (docs/queues.md): ``logq.deliver_at_ms`` (not acquired before this
epoch millisecond) and ``logq.expire_at_ms`` (archived as "expired" instead of delivered after
it), both ASCII decimal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from logq.client.consumer_config import int_at_least
from logq.errors import ConfigError
from logq.groups.files import check_name
from logq.groups.share_state import backoff_fn
from logq.groups.share_store import SharePolicy
from logq.storage.topics import validate_topic

DELIVER_AT_HEADER = "logq.deliver_at_ms"
EXPIRE_AT_HEADER = "logq.expire_at_ms"
ACK_MODES = ("implicit", "explicit")
RESETS = ("latest", "earliest")
PRIORITY_MODES = ("strict", "weighted")
BACKOFF_MODES = ("fixed", "exponential")
MAX_LOCK_MS = 3_600_000
MAX_BACKOFF_MS = 366 * 86_400_000


def bounded(name: str, v: Any, lo: int, hi: int) -> int:
    int_at_least(name, v, lo)
    if v > hi:
        raise ConfigError(f"{name}={v!r} is invalid: must be at most {hi}")
    return int(v)


def check_topics(topics: Any) -> list[str]:
    if isinstance(topics, str):
        topics = [topics]
    if isinstance(topics, bytes) or not hasattr(topics, "__iter__"):
        raise ConfigError(f"topics must be a topic name or a list of them, got {topics!r}")
    out = [validate_topic(t) for t in topics]
    if not out:
        raise ConfigError("a ShareConsumer needs at least one topic")
    if len(set(out)) != len(out):
        raise ConfigError(f"topics {out!r} name a topic twice")
    return out


def check_choice(name: str, v: Any, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise ConfigError(f"{name}={v!r} is invalid: must be one of {', '.join(map(repr, choices))}")
    return str(v)


def check_priorities(priorities: Any, topics: list[str]) -> dict[str, int]:
    if priorities is None:
        return {}
    if not isinstance(priorities, Mapping):
        raise ConfigError(f"priorities must be a mapping of topic to a weight >= 1, got {priorities!r}")
    out = {}
    for t, w in priorities.items():
        if t not in topics:
            raise ConfigError(f"priorities names {t!r}, which is not one of the topics {topics!r}")
        out[t] = int_at_least(f"priorities[{t!r}]", w, 1)
    return {t: out.get(t, 1) for t in topics}


def check_clock(clock: Any) -> Callable[[], int] | None:
    if clock is not None and not callable(clock):
        raise ConfigError(f"clock must be a callable returning epoch milliseconds, got {clock!r}")
    return clock


def check_group(group_id: Any) -> str:
    if group_id is None:
        raise ConfigError("a ShareConsumer needs group_id=...", hint="share groups are named like consumer groups")
    return check_name("group id", group_id)


def make_policy(lock_ms: Any, limit: Any, max_in_flight: Any, backoff: tuple[Any, Any, Any]) -> SharePolicy:
    """The checked SharePolicy of a ShareConsumer's settings (bounds in the module docstring);
    ``backoff`` is (redelivery_backoff_ms, redelivery_backoff, max_redelivery_backoff_ms)."""
    base_ms, mode, max_ms = backoff
    return SharePolicy(
        bounded("lock_duration_ms", lock_ms, 1, MAX_LOCK_MS),
        bounded("delivery_count_limit", limit, 1, 1000),
        bounded("max_in_flight", max_in_flight, 1, 100_000),
        backoff_fn(
            bounded("redelivery_backoff_ms", base_ms, 0, MAX_BACKOFF_MS),
            check_choice("redelivery_backoff", mode, BACKOFF_MODES),
            bounded("max_redelivery_backoff_ms", max_ms, 1, MAX_BACKOFF_MS),
        ),
    )


def header_ms(headers: Any, name: str) -> int:
    """The int value of header ``name`` (ASCII decimal epoch ms); 0 when absent or unreadable."""
    for k, v in headers or ():
        if k == name and v:
            try:
                return max(0, int(v))
            except ValueError:
                return 0
    return 0


def record_times(headers: Any, timestamp: int, record_ttl_ms: int | None) -> tuple[int, int]:
    """(available_at_ms, expire_at_ms) of a record: its delay header, and the earlier of its
    expiry header and ``timestamp + record_ttl_ms`` (0: never)."""
    expire = header_ms(headers, EXPIRE_AT_HEADER)
    if record_ttl_ms is not None:
        ttl_at = timestamp + record_ttl_ms
        expire = min(expire, ttl_at) if expire else ttl_at
    return header_ms(headers, DELIVER_AT_HEADER), expire
