"""Share-group administration (`logq share ...`), over logq/groups/share_store.py's functions.

- :func:`describe_share_group`: the store's description (per share-partition start offset,
  in-flight counts by state, delivery-count histogram, oldest acquired record, totals) plus
  the group's dead-letter topics and, per topic, how many of its letters there are and how
  many are past the redrive position (:func:`logq.client.redrive.count_dead_letters`).
- :func:`plan_share_reset` / :func:`reset_share_offsets`: kafka-share-groups
  ``--reset-offsets``: start share-partitions over at the log start, the log end or an offset
  (in-flight state dropped), refused while the group has live members, as Kafka does.
- :func:`redrive` (re-exported from logq/client/redrive.py) and :func:`delete_share_group`
  (from the store: refused while the group has live members; its redrive positions stay, so
  its letters already redriven are not redriven again).

The :class:`logq.Admin` methods of the same names call these.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from logq.client.dead_letters import dead_letter_topics
from logq.client.redrive import RedriveReport, count_dead_letters, redrive
from logq.errors import ConfigError, GroupNotEmptyError, OffsetOutOfRangeError, UnknownGroupError
from logq.groups.files import check_name, live_member_ids
from logq.groups.share_store import (
    ShareGroupInfo,
    delete_share_group,
    list_share_groups,
    reset_share_start,
    share_group_dir,
)
from logq.groups.share_store import describe_share_group as _store_describe
from logq.storage.log import PartitionLog
from logq.storage.topics import TopicRegistry, partition_path, validate_topic

__all__ = [
    "DeadLetterCount",
    "ShareGroupDescription",
    "ShareResetRow",
    "delete_share_group",
    "describe_share_group",
    "list_share_groups",
    "plan_share_reset",
    "redrive",
    "RedriveReport",
    "reset_share_offsets",
]


@dataclass(frozen=True)
class DeadLetterCount:
    topic: str
    letters: int  # the group's letters in the topic
    pending: int  # of them, at or after the redrive position (not redriven yet)


@dataclass(frozen=True)
class ShareGroupDescription:
    info: ShareGroupInfo  # members and share-partitions (logq/groups/share_store.py)
    dead_letters: list[DeadLetterCount] = field(default_factory=list)


def describe_share_group(
    root: str, group: str, *, now_ms: int | None = None, dead_letters: bool = True
) -> ShareGroupDescription:
    """Describe ``group`` (UnknownGroupError if it has no state); ``dead_letters=False`` skips
    reading its dead-letter topics (which reads every letter's headers)."""
    info = _store_describe(root, group, now_ms=now_ms)
    counts = []
    if dead_letters:
        registry = TopicRegistry(root)
        try:
            known = set(registry.names())
        finally:
            registry.close()
        for topic in dead_letter_topics(root, group):
            if topic in known:
                counts.append(DeadLetterCount(topic, *count_dead_letters(root, topic, group)))
    return ShareGroupDescription(info, counts)


@dataclass(frozen=True)
class ShareResetRow:
    topic: str
    partition: int
    start_offset: int | None  # the share-partition's start offset now (None: no state yet)
    new_offset: int


def _log_offsets(registry: TopicRegistry, topic: str, p: int) -> tuple[int, int]:
    meta = registry.get(topic)
    lg = PartitionLog(partition_path(registry.root, topic, p), meta.config, readonly=True, create=False)
    try:
        return lg.log_start_offset, lg.log_end_offset
    finally:
        lg.close()


def _current_starts(root: str, group: str) -> dict[tuple[str, int], int]:
    if not os.path.isdir(share_group_dir(root, group)):
        return {}
    try:
        info = _store_describe(root, group)
    except UnknownGroupError:
        return {}
    return {(p.topic, p.partition): p.start_offset for p in info.partitions}


def plan_share_reset(
    root: str, group: str, topic: str, to: Any, partitions: list[int] | None = None
) -> list[ShareResetRow]:
    """Where each share-partition of ``topic`` (or of ``partitions``) would start after a reset
    ``to`` "earliest" (log start), "latest" (log end) or an int offset (within [log start,
    log end], OffsetOutOfRangeError otherwise). Changes nothing."""
    check_name("group id", group)
    validate_topic(topic)
    if to not in ("earliest", "latest") and (isinstance(to, bool) or not isinstance(to, int) or to < 0):
        raise ConfigError(f"to={to!r} is invalid: 'earliest', 'latest' or an int offset >= 0")
    registry = TopicRegistry(root)
    try:
        count = registry.get(topic).partitions
        chosen = list(range(count)) if partitions is None else list(partitions)
        for p in chosen:
            if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < count:
                raise ConfigError(f"partition {p!r} is invalid: topic {topic!r} has partitions 0-{count - 1}")
        starts = _current_starts(root, group)
        rows = []
        for p in sorted(set(chosen)):
            first, end = _log_offsets(registry, topic, p)
            new = first if to == "earliest" else end if to == "latest" else to
            if not first <= new <= end:
                raise OffsetOutOfRangeError(new, first, end, f"{topic}-{p}")
            rows.append(ShareResetRow(topic, p, starts.get((topic, p)), new))
        return rows
    finally:
        registry.close()


def reset_share_offsets(
    root: str, group: str, topic: str, to: Any, partitions: list[int] | None = None
) -> list[ShareResetRow]:
    """Apply :func:`plan_share_reset`'s plan: each share-partition starts over at its new offset
    (in-flight records dropped: records before it are not delivered again, records from it on
    are delivered as new). GroupNotEmptyError while the group has live members."""
    live = live_member_ids(share_group_dir(root, check_name("group id", group)))
    if live:
        raise GroupNotEmptyError(group, len(live), hint="close the group's ShareConsumers first, as Kafka requires")
    rows = plan_share_reset(root, group, topic, to, partitions)
    for row in rows:
        reset_share_start(root, group, [(row.topic, row.partition)], row.new_offset)
    return rows
