"""Dead letters of share groups, in KIP-1191's shape: writing them, and reading them back.

A record a share group archives (rejected, at its delivery limit, expired) is written to the
group's dead-letter topic with headers naming where it came from, every value ASCII text:

=================================  ==========================================================
header                             value
=================================  ==========================================================
``__dlq.errors.topic``             the source topic (KIP-1191)
``__dlq.errors.partition``         the source partition, decimal (KIP-1191)
``__dlq.errors.offset``            the record's offset in it, decimal (KIP-1191)
``__dlq.errors.group``             the share group (KIP-1191)
``__dlq.errors.reason``            ``rejected``, ``delivery_limit`` or ``expired`` (logq)
``__dlq.errors.delivery_count``    how many times it was acquired, decimal (logq)
=================================  ==========================================================

With ``copy_record=True`` (logq's default; Kafka's ``errors.deadletterqueue.copy.record.enable``
defaults to false) the dead letter also carries the original key, value and headers (the
original's headers first, then the six above; any ``__dlq.*`` header the original had is
dropped, so a dead letter names one source). With ``copy_record=False`` it has no key, no
value and only the six headers: redrive then reads the original from its source partition
(logq/client/redrive.py).

The ShareConsumer writes and flushes the dead letters of an archive *before* it journals the
archive: a crash in between writes a dead letter twice, never loses one.

Each writer records its topic in ``<data>/__logq/share_groups/<group>/dead_letter_topics``
(one topic name a line), so ``logq share describe`` and ``logq share redrive`` find a group's
dead-letter topics without being told.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from logq.client.producer import Producer
from logq.client.records import header_text
from logq.errors import ConfigError, LogqError, storage_error
from logq.groups.files import check_name
from logq.groups.share_store import share_group_dir
from logq.storage import files as fs
from logq.storage.topics import validate_topic
from logq.types import Record

__all__ = [
    "DLQ_PREFIX",
    "REASONS",
    "DeadLetter",
    "DeadLetterWriter",
    "dead_letter_headers",
    "dead_letter_topics",
    "parse_dead_letter",
    "record_dead_letter_topic",
]

DLQ_PREFIX = "__dlq."
TOPIC_H = "__dlq.errors.topic"
PARTITION_H = "__dlq.errors.partition"
OFFSET_H = "__dlq.errors.offset"
GROUP_H = "__dlq.errors.group"
REASON_H = "__dlq.errors.reason"
COUNT_H = "__dlq.errors.delivery_count"
REASONS = ("rejected", "delivery_limit", "expired")  # the archive reasons of share_state
TOPICS_FILE = "dead_letter_topics"


def dead_letter_headers(
    topic: str, partition: int, offset: int, group: str, reason: str, delivery_count: int
) -> list[tuple[str, bytes]]:
    """The six headers of a dead letter (the table in the module docstring), in that order."""
    return [
        (TOPIC_H, topic.encode()),
        (PARTITION_H, str(partition).encode()),
        (OFFSET_H, str(offset).encode()),
        (GROUP_H, group.encode()),
        (REASON_H, reason.encode()),
        (COUNT_H, str(delivery_count).encode()),
    ]


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter read back: where it is, where it came from, and why."""

    topic: str  # the dead-letter topic
    partition: int
    offset: int
    source_topic: str
    source_partition: int
    source_offset: int
    group: str
    reason: str
    delivery_count: int
    copied: bool  # carries the original key, value and headers (copy_record=True)


def _decimal(headers: Any, name: str) -> int | None:
    s = header_text(headers, name)
    return int(s) if s is not None and s.isdigit() and len(s) <= 19 else None


def parse_dead_letter(record: Any) -> DeadLetter | None:
    """The dead letter ``record`` (a Record or ShareRecord of a dead-letter topic) is; None when
    it lacks a readable ``__dlq.errors.topic``/``partition``/``offset``/``group``."""
    h = record.headers
    topic, group = header_text(h, TOPIC_H), header_text(h, GROUP_H)
    partition, offset = _decimal(h, PARTITION_H), _decimal(h, OFFSET_H)
    if topic is None or group is None or partition is None or offset is None:
        return None
    own = [k for k, _ in h if not k.startswith(DLQ_PREFIX)]
    copied = record.key is not None or record.value is not None or bool(own)
    return DeadLetter(
        record.topic,
        record.partition,
        record.offset,
        topic,
        partition,
        offset,
        group,
        header_text(h, REASON_H) or "",
        _decimal(h, COUNT_H) or 0,
        copied,
    )


def record_dead_letter_topic(root: str, group: str, topic: str) -> None:
    """Add ``topic`` to the group's ``dead_letter_topics`` file unless it is there (appends
    one line; a line written twice by two processes at once is read once)."""
    path = os.path.join(share_group_dir(root, group), TOPICS_FILE)
    if topic in dead_letter_topics(root, group):
        return
    missing, d = [], os.path.dirname(path)
    while not os.path.isdir(d):
        missing.append(d)
        d = os.path.dirname(d)
    for d in reversed(missing):
        fs.make_dir(d)
    fd = fs.open_file(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, f"{topic}\n".encode())
    except OSError as e:
        raise storage_error("write", path, e) from None
    finally:
        os.close(fd)


def dead_letter_topics(root: str, group: str) -> list[str]:
    """The dead-letter topics the group's consumers wrote to (in the order first used)."""
    path = os.path.join(share_group_dir(root, group), TOPICS_FILE)
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise storage_error("read", path, e) from None
    out: list[str] = []
    for line in lines:
        if line and line not in out:
            try:
                out.append(validate_topic(line))
            except LogqError:
                continue  # a torn line: its writer wrote it whole again, or never used it
    return out


class DeadLetterWriter:
    """Queues dead letters on ``producer`` to ``topic``; ``flush()`` makes them durable (as the
    producer's ``flush``: in the log, fdatasynced when the producer or topic says so)."""

    def __init__(self, producer: Producer, topic: str, group: str, copy_record: bool = True) -> None:
        if not isinstance(producer, Producer):
            raise ConfigError(f"producer must be a logq.Producer, got {producer!r}")
        if not isinstance(copy_record, bool):
            raise ConfigError(f"copy_record must be a bool, got {copy_record!r}")
        self.producer = producer
        self.topic = validate_topic(topic)
        self.group = check_name("group id", group)
        self.copy_record = copy_record
        producer.registry.get(self.topic)  # UnknownTopicError now, not at the first dead letter
        record_dead_letter_topic(producer.root, self.group, self.topic)

    def write(self, record: Record, reason: str, delivery_count: int) -> None:
        """Queue the dead letter of ``record`` (a Record or ShareRecord of the source topic)."""
        if reason not in REASONS:
            raise ConfigError(f"reason={reason!r} is invalid: must be one of {', '.join(map(repr, REASONS))}")
        if isinstance(delivery_count, bool) or not isinstance(delivery_count, int) or delivery_count < 0:
            raise ConfigError(f"delivery_count={delivery_count!r} is invalid: must be an int >= 0")
        headers = dead_letter_headers(record.topic, record.partition, record.offset, self.group, reason, delivery_count)
        if self.copy_record:
            original = [(k, v) for k, v in record.headers if not k.startswith(DLQ_PREFIX)]
            self.producer.send(self.topic, record.value, key=record.key, headers=original + headers)
        else:
            self.producer.send(self.topic, None, key=None, headers=headers)

    def flush(self) -> None:
        self.producer.flush()
