"""Redrive: move a share group's dead letters back to their source topics (`logq share redrive`).

For each partition of the dead-letter topic, from the *redrive position* to the log end as it
was when the redrive began, every dead letter whose ``__dlq.errors.group`` is the group is
sent again to ``__dlq.errors.topic``: to its original partition when the topic still has it
(else placed by key as a new record), with the original key, value and headers minus the
``__dlq.*`` ones (and minus ``logq.expire_at_ms`` for a letter archived as ``expired``, which
would otherwise expire again at once). A letter written with ``copy_record=False`` has no
copy: the original is read from its source partition. A letter whose source is gone (its
record deleted by retention, for a letter without a copy; its topic deleted) is counted in
``RedriveReport.missing`` and skipped. Other groups' letters and records that are
not dead letters are skipped.

The redrive position is a committed offset of the consumer group named by
:func:`redrive_group` (``__redrive.<dead-letter topic>.<group>.<8 hex digits>``, shown by
``logq groups list``; ``logq seek`` moves it while no redrive runs). The rule that makes a
redrive safe to interrupt: records are sent and flushed (fdatasynced: the producer uses
``fsync="always"``) *before* the position passing them is committed (fdatasynced too), every
``chunk_records`` letters. A redrive killed at any point loses no dead letter, and redrives
again at most the letters of its last chunk (those sent before the kill but not yet passed
by the position). Redrives of one topic and group run one at a time (a flock on
``redrive.lock`` in the position group's directory: a second one waits up to
``lock_timeout_ms``, then raises LockTimeoutError); dead letters themselves are never
deleted (the dead-letter topic's retention does that).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from logq.client.consumer import Consumer
from logq.client.consumer_config import int_at_least
from logq.client.dead_letters import DLQ_PREFIX, DeadLetter, dead_letter_topics, parse_dead_letter
from logq.client.producer import Producer
from logq.client.share_config import EXPIRE_AT_HEADER
from logq.errors import ConfigError, InvalidTopicError, UnknownTopicError
from logq.groups.files import GroupLock, check_name, group_dir
from logq.groups.offsets import OffsetStore
from logq.storage.topics import TopicRegistry, validate_topic
from logq.types import TopicPartition

__all__ = ["RedriveReport", "redrive", "redrive_group", "redrive_positions", "count_dead_letters"]

CHUNK_RECORDS = 500  # letters sent and flushed between two commits of the position
_NAME_MAX = 249


def redrive_group(dead_letter_topic: str, group: str) -> str:
    """The consumer group whose committed offsets are the redrive positions of ``group``'s
    letters in ``dead_letter_topic`` (readable, unique per pair: it ends with a hash of both)."""
    validate_topic(dead_letter_topic)
    check_name("group id", group)
    digest = hashlib.blake2b(f"{dead_letter_topic}\n{group}".encode(), digest_size=4).hexdigest()
    readable = f"__redrive.{dead_letter_topic}.{group}"[: _NAME_MAX - 9]
    return f"{readable}.{digest}"


@dataclass
class RedriveReport:
    """What one redrive of one dead-letter topic did (or, with ``dry_run``, would do)."""

    dead_letter_topic: str
    group: str
    dry_run: bool
    redriven: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)  # redriven letters per source topic
    skipped: int = 0  # other groups' letters and records that are not dead letters
    missing: list[DeadLetter] = field(default_factory=list)  # source topic gone, or no copy and record gone
    letters: list[DeadLetter] = field(default_factory=list)  # the letters redriven (dry run: would be)
    positions: dict[int, int] = field(default_factory=dict)  # partition -> redrive position after


def _positions(root: str, rgroup: str) -> dict[tuple[str, int], int]:
    gdir = group_dir(root, rgroup)
    if not os.path.isdir(gdir):
        return {}
    store = OffsetStore(gdir, readonly=True)
    try:
        return store.all()
    finally:
        store.close()


def redrive_positions(root: str, dead_letter_topic: str, group: str) -> dict[int, int]:
    """Partition -> redrive position (partitions never redriven are absent)."""
    rgroup = redrive_group(dead_letter_topic, group)
    return {p: off for (t, p), off in _positions(root, rgroup).items() if t == dead_letter_topic}


def _chosen_topics(root: str, group: str, dead_letter_topic: str | None) -> list[str]:
    check_name("group id", group)
    if dead_letter_topic is not None:
        return [validate_topic(dead_letter_topic)]
    found = dead_letter_topics(root, group)
    if not found:
        raise ConfigError(
            f"share group {group!r} has no dead-letter topic on record",
            hint="pass the topic (--dead-letter-topic T); it is recorded when a consumer of the group first dead-letters",
        )
    return found


def _resent_headers(letter: DeadLetter, headers: Any) -> list[tuple[str, bytes | None]]:
    out = [(k, v) for k, v in headers if not k.startswith(DLQ_PREFIX)]
    if letter.reason == "expired":
        out = [(k, v) for k, v in out if k != EXPIRE_AT_HEADER]
    return out


class _Run:
    """One redrive of one dead-letter topic (see the module docstring)."""

    def __init__(self, root: str, topic: str, group: str, limit: int | None, dry_run: bool) -> None:
        self.root, self.topic, self.group, self.limit = root, topic, group, limit
        self.report = RedriveReport(topic, group, dry_run)
        self.registry = TopicRegistry(root)
        self.partitions = self.registry.get(topic).partitions
        self.rgroup = redrive_group(topic, group)
        self.reader = Consumer(root, auto_offset_reset="earliest")
        self.source = Consumer(root, auto_offset_reset="earliest")
        self.producer: Producer | None = None if dry_run else Producer(root, fsync="always")

    def close(self) -> None:
        for c in (self.reader, self.source, self.producer, self.registry):
            if c is not None:
                c.close()

    def full(self) -> bool:
        return self.limit is not None and self.report.redriven >= self.limit

    def partition(self, p: int, start: int, store: OffsetStore | None) -> None:
        """Redrive the letters of partition ``p`` from ``start`` to its end at the call."""
        tp = TopicPartition(self.topic, p)
        self.reader.assign([tp])
        end = self.reader.end_offsets([tp])[tp]
        pos = max(start, self.reader.beginning_offsets([tp])[tp])
        self.reader.seek(tp, pos)
        while pos < end and not self.full():
            done = pos
            for rec in self.reader.poll(timeout=1.0, max_records=min(CHUNK_RECORDS, end - pos)):
                if rec.offset >= end or self.full():
                    break
                self.one(rec)
                done = rec.offset + 1
            if done == pos:
                break  # nothing more readable (deleted meanwhile)
            pos = done
            self.commit(p, pos, store)
        self.report.positions[p] = pos

    def one(self, rec: Any) -> None:
        letter = parse_dead_letter(rec)
        if letter is None or letter.group != self.group:
            self.report.skipped += 1
            return
        count = self.source_partitions(letter.source_topic)
        original = rec if letter.copied or count is None else self.original(letter)
        if original is None or count is None:
            self.report.missing.append(letter)
            return
        if self.producer is not None:
            part = letter.source_partition if letter.source_partition < count else None
            hdrs = _resent_headers(letter, original.headers)
            self.producer.send(letter.source_topic, original.value, key=original.key, headers=hdrs, partition=part)
        self.report.redriven += 1
        self.report.by_topic[letter.source_topic] += 1
        self.report.letters.append(letter)

    def source_partitions(self, topic: str) -> int | None:
        """Partitions of the source topic now; None when it no longer exists (or is no name)."""
        try:
            return self.registry.get(topic, fresh=True).partitions
        except (UnknownTopicError, InvalidTopicError):
            return None

    def original(self, letter: DeadLetter) -> Any:
        """The source record of a letter without a copy; None when it is no longer there."""
        tp = TopicPartition(letter.source_topic, letter.source_partition)
        try:
            self.source.assign([tp])
            self.source.seek(tp, letter.source_offset)
            got = self.source.poll(timeout=0, max_records=1)
        except (ConfigError, UnknownTopicError, InvalidTopicError):
            return None
        return got[0] if got and got[0].offset == letter.source_offset else None

    def commit(self, p: int, pos: int, store: OffsetStore | None) -> None:
        if store is None or self.producer is None:
            return
        self.producer.flush()  # the records are in their logs, fdatasynced, before the position passes them
        store.commit({(self.topic, p): pos}, sync=True)


def redrive(
    root: str | os.PathLike[str],
    group: str,
    dead_letter_topic: str | None = None,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    lock_timeout_ms: int = 10_000,
) -> list[RedriveReport]:
    """Redrive ``group``'s dead letters from ``dead_letter_topic`` (default: every dead-letter
    topic the group's consumers recorded), at most ``limit`` letters in all; ``dry_run``
    reports the letters it would redrive and changes nothing. One report per topic."""
    if not isinstance(root, (str, os.PathLike)):
        raise ConfigError(f"data_dir must be a path (str or os.PathLike), got {root!r}")
    root = os.fspath(root)
    if limit is not None:
        int_at_least("limit", limit, 1)
    if not isinstance(dry_run, bool):
        raise ConfigError(f"dry_run must be a bool, got {dry_run!r}")
    reports = []
    left = limit
    for topic in _chosen_topics(root, group, dead_letter_topic):
        report = _redrive_topic(root, topic, group, left, dry_run, lock_timeout_ms)
        reports.append(report)
        if left is not None:
            left -= report.redriven
            if left <= 0:
                break
    return reports


def _redrive_topic(
    root: str, topic: str, group: str, limit: int | None, dry_run: bool, lock_timeout_ms: int
) -> RedriveReport:
    run = _Run(root, topic, group, limit, dry_run)
    try:
        rgroup_dir = group_dir(root, run.rgroup)
        if dry_run:
            start = redrive_positions(root, topic, group)
            for p in range(run.partitions):
                run.partition(p, start.get(p, 0), None)
            return run.report
        store = OffsetStore(rgroup_dir)
        lock = GroupLock(os.path.join(rgroup_dir, "redrive.lock"), lock_timeout_ms)
        try:
            with lock.hold():
                start = redrive_positions(root, topic, group)  # read under the lock: a run before us counts
                for p in range(run.partitions):
                    run.partition(p, start.get(p, 0), store)
        finally:
            lock.close()
            store.close()
        return run.report
    finally:
        run.close()


def count_dead_letters(root: str, dead_letter_topic: str, group: str) -> tuple[int, int]:
    """(letters of ``group`` in the topic, of them at or after the redrive position): reads
    the whole topic's headers."""
    run = _Run(root, dead_letter_topic, group, None, True)
    total = pending = 0
    start = redrive_positions(root, dead_letter_topic, group)
    try:
        for p in range(run.partitions):
            tp = TopicPartition(dead_letter_topic, p)
            run.reader.assign([tp])
            end = run.reader.end_offsets([tp])[tp]
            pos = run.reader.beginning_offsets([tp])[tp]
            run.reader.seek(tp, pos)
            while pos < end:
                recs = [r for r in run.reader.poll(timeout=1.0, max_records=CHUNK_RECORDS) if r.offset < end]
                if not recs:
                    break  # deleted meanwhile
                for r in recs:
                    letter = parse_dead_letter(r)
                    if letter is not None and letter.group == group:
                        total += 1
                        pending += r.offset >= start.get(p, 0)
                pos = recs[-1].offset + 1
    finally:
        run.close()
    return total, pending
