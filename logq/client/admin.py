"""Topic and group administration: what kafka-topics and kafka-consumer-groups do.

``Admin`` is the library face of every ``logq`` admin command: topics (create, describe,
delete, purge), offsets (by time, committed, reset), groups (list, describe, the
must-be-empty rule of a reset), share groups (client/share_admin.py) and repair. It opens partitions through ``PartitionLog``
and groups through their files; the CLI only parses, calls one method and prints.

Repair is two-step on purpose: damage below a partition's recovery point (bytes that were
durable once) is never cut silently. :meth:`Admin.repair_partition` reports it, and cuts
the partition at the first bad batch only when asked with ``execute=True``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from logq.client import share_admin
from logq.config import LogConfig
from logq.errors import GroupNotEmptyError, OffsetOutOfRangeError, UnknownGroupError, storage_error
from logq.groups.files import GroupLock
from logq.groups.member import describe_group as _describe_group
from logq.groups.member import group_dir, list_groups, live_member_ids
from logq.groups.offsets import OffsetStore, recorded_topic_ids
from logq.storage import files as _fs
from logq.storage.log import PartitionLog
from logq.storage.topics import (
    META_DIR,
    TopicMeta,
    TopicRegistry,
    TopicRepair,
    partition_path,
    shared_read_of,
    validate_partition,
)

__all__ = [
    "Admin",
    "PartitionInfo",
    "TopicDescription",
    "GroupPartitionInfo",
    "GroupInfo",
    "GroupMemberInfo",
    "RepairReport",
    "TopicRepair",
]


LOCK_TIMEOUT_MS = 10_000  # how long delete_group waits for the group's lock


class PartitionInfo(NamedTuple):
    partition: int
    log_start_offset: int
    log_end_offset: int
    size_bytes: int
    segments: int


class TopicDescription(NamedTuple):
    name: str
    partitions: list[PartitionInfo]
    config: dict[str, Any]  # the full effective config, overrides applied
    topic_id: str = ""  # this incarnation of the name (Kafka's TopicId)

    @property
    def size_bytes(self) -> int:
        return sum(p.size_bytes for p in self.partitions)

    @property
    def records(self) -> int:
        return sum(p.log_end_offset - p.log_start_offset for p in self.partitions)


class GroupPartitionInfo(NamedTuple):
    topic: str
    partition: int
    committed: int | None
    log_end_offset: int
    lag: int | None
    consumer_id: str | None


class GroupMemberInfo(NamedTuple):
    """One live member of a group, as ``kafka-consumer-groups --describe --members`` shows it."""

    member_id: str
    pid: int | None  # the process it lives in (every member is on this host); logq serve's for a network one
    assignment: tuple[tuple[str, int], ...]  # the (topic, partition) pairs assigned to it
    client_id: str | None = None  # a network member's client id (Kafka's CLIENT-ID); None for an embedded one
    host: str | None = None  # a network member's address as logq serve saw it; None for an embedded one


class GroupInfo(NamedTuple):
    group: str
    state: str  # Dead, Empty, Stable, Rebalancing
    generation: int
    members: list[str]  # live member ids
    partitions: list[GroupPartitionInfo]
    problems: tuple[str, ...]
    member_details: tuple[GroupMemberInfo, ...] = ()  # the live members, with pid and assignment
    # embedded members: logq's one assignor (logq/groups/assignor.py, Kafka's cooperative-sticky
    # rules); members of a group logq serve coordinates: the protocol it chose (range, roundrobin...)
    assignor: str = "sticky"


class RepairReport(NamedTuple):
    """What :meth:`Admin.repair_partition` found in one partition, and what it cut."""

    topic: str
    partition: int
    damage: str | None  # corruption kept below the recovery point; None: the partition is healthy
    repaired: bool  # the damage was cut (execute=True)
    bytes_truncated: int
    segments_deleted: int
    log_end_offset: int
    # Files named like segments that logq did not write: "<name>: <why>" when found now, and
    # "<name>.stray" for each one set aside (never read; remove them once inspected).
    stray_files: tuple[str, ...] = ()


class Admin:
    """``shared_read`` sets who may read the data directory: "private" (the default for a new
    one: files 0600, directories 0700) or "group" (0640/0750, read access for the
    directory's group); None keeps what it has. A change applies to the files already there.
    Everything that only reads (list, describe, offsets, groups) works on data the user
    cannot write."""

    def __init__(self, data_dir: str, *, shared_read: str | None = None) -> None:
        self.registry = TopicRegistry(data_dir, shared_read)
        self.root = self.registry.root

    @property
    def shared_read(self) -> str:
        """The data directory's setting: "group" if its mode is 0750, else "private"."""
        return shared_read_of(self.root)

    # ------------------------------------------------------------------ topics
    def create_topic(self, name: str, partitions: int = 1, **config: Any) -> TopicMeta:
        """Create a topic; ``config`` takes LogConfig settings (retention_ms=..., ...)."""
        return self.registry.create(name, partitions, **config)

    def delete_topic(self, name: str) -> None:
        """Delete a topic and its data; one whose metadata file is corrupt too."""
        self.registry.delete(name)

    def repair_topic(self, name: str, partitions: int | None = None, **config: Any) -> TopicRepair:
        """Rewrite a topic's corrupt or lost metadata file from its partition directories,
        and recreate missing partition directories empty (a healthy topic is left alone).

        The partition count defaults to the highest partition directory + 1; ``config``
        gives the LogConfig overrides again (the corrupt file's could not be read). The topic
        id is the one committed offsets recorded for the topic, when every group agrees, so
        those offsets stay valid; otherwise a new one. No record is touched.
        """
        ids = recorded_topic_ids(self.root, name)
        tid = next(iter(ids)) if len(ids) == 1 else None
        return self.registry.repair(name, partitions, tid, **config)

    def create_partitions(self, name: str, total: int) -> TopicMeta:
        """Grow topic ``name`` to ``total`` partitions, like Kafka's createPartitions.

        Partitions can only be added (InvalidPartitionsError otherwise). Keyed records then
        map to ``murmur2(key) % total``: as in Kafka, a key's new records may go to another
        partition than its earlier ones. Subscribed consumers pick the new partitions up at
        their next group check; see TopicRegistry.alter for the crash safety.
        """
        return self.registry.alter(name, partitions=total)

    def alter_topic_config(self, name: str, *, delete: tuple[str, ...] = (), **config: Any) -> TopicMeta:
        """Set LogConfig overrides of topic ``name`` (``retention_ms=...``) and remove those named
        in ``delete`` (back to the default), like Kafka's incrementalAlterConfigs.

        Partition logs opened after the change use it (an open writer keeps the config it
        was opened with until it reopens); ``enforce_retention`` applies new retention now.
        """
        if isinstance(delete, str):
            delete = (delete,)
        return self.registry.alter(name, config=dict(config), delete_config=tuple(delete))

    def list_topics(self) -> list[str]:
        return self.registry.names()

    def enforce_retention(self, topic: str | None = None) -> dict[tuple[str, int], int]:
        """Apply retention now to every partition of ``topic`` (all topics if None), as open
        writers do every ``retention_check_interval_ms``; {(topic, partition): segments deleted}."""
        deleted: dict[tuple[str, int], int] = {}
        for name in self.registry.names() if topic is None else [topic]:
            meta = self.registry.get(name)
            for p in range(meta.partitions):
                with PartitionLog(partition_path(self.root, name, p), meta.config, create=False) as lg:
                    deleted[(name, p)] = lg.enforce_retention()
        return deleted

    def topic_config(self, name: str) -> LogConfig:
        return self.registry.get(name).config

    def _open(self, topic: str, p: int, readonly: bool = True) -> PartitionLog:
        meta = self.registry.get(topic)
        validate_partition(topic, p, meta.partitions)
        return PartitionLog(partition_path(self.root, topic, p), meta.config, readonly=readonly, create=False)

    def describe_topic(self, name: str) -> TopicDescription:
        meta = self.registry.get(name, fresh=True)
        parts = []
        for p in range(meta.partitions):
            with self._open(name, p) as lg:
                parts.append(PartitionInfo(p, lg.log_start_offset, lg.log_end_offset, lg.size_bytes, lg.num_segments))
        return TopicDescription(name, parts, meta.config.to_dict(), meta.topic_id)

    def log_offsets(self, topic: str, partition: int) -> tuple[int, int]:
        """(log start offset, log end offset) of one partition."""
        with self._open(topic, partition) as lg:
            return lg.log_start_offset, lg.log_end_offset

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int | None:
        with self._open(topic, partition) as lg:
            return lg.offset_for_timestamp(timestamp_ms)

    def delete_records(self, topic: str, before: Mapping[int, int]) -> dict[int, int]:
        """Purge: move each partition's log start offset up to the given offset."""
        out = {}
        for p, offset in before.items():
            with self._open(topic, p, readonly=False) as lg:
                lg.delete_records_before(offset)
                out[p] = lg.log_start_offset
        return out

    def repair_partition(self, topic: str, partition: int, *, execute: bool = False) -> RepairReport:
        """Open one partition and report damage below its recovery point; cut it if ``execute``.

        Without ``execute`` nothing changes on disk. With it, a damaged partition is reopened
        in repair mode, which cuts it at the first bad batch and deletes what follows.
        """
        meta = self.registry.get(topic)
        validate_partition(topic, partition, meta.partitions)
        path = partition_path(self.root, topic, partition)
        with PartitionLog(path, meta.config, create=False) as lg:
            damage = lg.report.corruption
            end = lg.log_end_offset
            stray = tuple(lg.report.stray_segments) + tuple(lg.report.quarantined)
        if damage is None or not execute:
            return RepairReport(topic, partition, damage, False, 0, 0, end, stray)
        with PartitionLog(path, meta.config, create=False, repair=True) as lg:
            r = lg.report
            return RepairReport(
                topic, partition, damage, True, r.bytes_truncated, r.segments_deleted, lg.log_end_offset, stray
            )

    # ------------------------------------------------------------------ groups
    def list_groups(self) -> list[str]:
        return list_groups(self.root)

    def describe_group(self, group: str) -> GroupInfo:
        d = _describe_group(self.root, group)
        if d.state == "Dead":  # no such group
            return GroupInfo(group, d.state, d.generation, [], [], tuple(d.problems))
        store = OffsetStore(group_dir(self.root, group), readonly=True)
        try:
            committed = store.all()  # offsets of deleted incarnations of a topic are left out
            problems = tuple(d.problems) + tuple(store.problems)
        finally:
            store.close()
        tps = sorted(set(committed) | set(d.assignment))
        rows = []
        for topic, p in tps:
            if not self.registry.exists(topic):
                continue
            _, end = self.log_offsets(topic, p)
            c = committed.get((topic, p))
            owner = d.owners.get((topic, p)) or d.assignment.get((topic, p))
            rows.append(GroupPartitionInfo(topic, p, c, end, None if c is None else end - c, owner))
        live = [m.member_id for m in d.members if m.alive]
        details = tuple(
            GroupMemberInfo(m.member_id, m.pid, tuple(sorted((t, p) for t, p in m.assignment)), m.client_id, m.host)
            for m in d.members
            if m.alive
        )
        return GroupInfo(group, d.state, d.generation, live, rows, problems, details, d.protocol or "sticky")

    def delete_group(self, group: str) -> None:
        """Delete consumer group ``group`` and its committed offsets, like Kafka's deleteConsumerGroups.

        Refused with GroupNotEmptyError while a live process is a member (checked under the
        group's lock, which every join takes); UnknownGroupError if there is no such group.
        The group's directory is renamed away under that lock, then removed.
        """
        gdir = group_dir(self.root, group)
        if not os.path.isdir(gdir):
            raise UnknownGroupError(group)
        lock = GroupLock(os.path.join(gdir, "group.lock"), LOCK_TIMEOUT_MS)
        try:
            with lock.hold():
                live = live_member_ids(gdir)
                if live:
                    raise GroupNotEmptyError(
                        group, len(live), hint="stop the group's consumers first: only an empty group can be deleted"
                    )
                trash = os.path.join(self.root, META_DIR, "trash")
                _fs.make_dir(trash)
                dst = os.path.join(trash, uuid.uuid4().hex)
                try:
                    os.rename(gdir, dst)
                except OSError as e:
                    raise storage_error("delete group", gdir, e) from None
                _fs.fsync_dir(os.path.dirname(gdir))
        finally:
            lock.close()
        shutil.rmtree(dst, ignore_errors=True)

    def committed_offsets(self, group: str) -> dict[tuple[str, int], int]:
        if not os.path.isdir(group_dir(self.root, group)):
            return {}  # no such group
        store = OffsetStore(group_dir(self.root, group), readonly=True)
        try:
            return store.all()
        finally:
            store.close()

    def check_group_empty(self, group: str) -> None:
        """Raise GroupNotEmptyError if a live process is a member of ``group``.

        Committed offsets may only be reset while a group is empty (as in Kafka): a live
        member would go on committing its own positions over the reset.
        """
        live = live_member_ids(group_dir(self.root, group))
        if live:
            raise GroupNotEmptyError(group, len(live))

    def reset_offsets(self, group: str, offsets: Mapping[tuple[str, int], int], *, sync: bool = True) -> None:
        """Set committed offsets of a group with no live member (`logq seek --execute`)."""
        self.check_group_empty(group)
        for (topic, p), off in offsets.items():
            start, end = self.log_offsets(topic, p)
            if not start <= off <= end:
                raise OffsetOutOfRangeError(off, start, end, f"{topic}-{p}")
        store = OffsetStore(group_dir(self.root, group))
        try:
            store.commit(dict(offsets), sync=sync)
        finally:
            store.close()

    # ------------------------------------------------------------------ share groups (client/share_admin.py)
    def list_share_groups(self) -> list[str]:
        return share_admin.list_share_groups(self.root)

    def describe_share_group(self, group: str, *, dead_letters: bool = True) -> share_admin.ShareGroupDescription:
        """Members, share-partitions and dead-letter counts of ``group`` (`logq share describe`)."""
        return share_admin.describe_share_group(self.root, group, dead_letters=dead_letters)

    def reset_share_offsets(
        self, group: str, topic: str, to: Any, partitions: list[int] | None = None, *, execute: bool = False
    ) -> list[share_admin.ShareResetRow]:
        """Start ``group``'s share-partitions of ``topic`` over at "earliest", "latest" or an
        offset; only the plan unless ``execute`` (`logq share reset-offsets`)."""
        if execute:
            return share_admin.reset_share_offsets(self.root, group, topic, to, partitions)
        return share_admin.plan_share_reset(self.root, group, topic, to, partitions)

    def delete_share_group(self, group: str) -> None:
        """Delete ``group``'s state; refused while it has live members (`logq share delete`)."""
        share_admin.delete_share_group(self.root, group)

    def redrive(
        self, group: str, dead_letter_topic: str | None = None, *, limit: int | None = None, dry_run: bool = False
    ) -> list[share_admin.RedriveReport]:
        """Move ``group``'s dead letters back to their source topics (`logq share redrive`)."""
        return share_admin.redrive(self.root, group, dead_letter_topic, limit=limit, dry_run=dry_run)

    def close(self) -> None:
        self.registry.close()

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
