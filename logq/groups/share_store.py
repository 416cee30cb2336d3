"""Share groups on one host: durable share-partition state shared by any number of processes.

Layout, under ``<data>/__logq/share_groups/<group>/``::

    members/<id>.lock            one per member (ShareConsumer), flocked exclusively while it
                                 lives (logq/groups/files.py's member files): the kernel drops
                                 the flock when the process dies, even by kill -9, so a dead
                                 member is seen at the next operation on any share-partition.
    <topic>-<p>.lock             the share-partition's flock: every operation holds it
                                 (logq/groups/share_lock.py: waits blocked in the kernel).
    <topic>-<p>.journal          the share-partition's state (logq/groups/share_journal.py:
                                 byte format and durability rule).

An operation (:meth:`ShareGroupStore.update`) takes the share-partition's flock, catches up
with the frames other processes appended, returns the records of dead members (their locks
end: AVAILABLE with the delivery count kept, a crash counting as an attempt, or ARCHIVED at
the delivery limit), ends expired locks, applies the caller's change to the state
(logq/groups/share_state.py), appends one frame and, for a commit, fdatasyncs it.

Archives are crash-consistent (with an ``on_archive``, i.e. dead letters): the change leaves
each archived record ARCHIVING (reason and delivery count kept); the store appends and
fdatasyncs that intent frame, hands the records to ``on_archive`` (which writes the dead letters
durably), then makes them ARCHIVED in a second frame. An operation that finds ARCHIVING records
after catching up (their archiver was killed, or its dead-letter write failed; the flock is held
through all three steps, so nobody else is ever in the middle of them) writes their dead letters
again and archives them first. So a dead letter always stands for a record that ends archived
with that reason and count, never redelivered; after a crash there may be two identical
letters (at least once), never none.

Why no record is acquired by two live members at once: the state changes only under the
flock, after catching up with every earlier change; an acquired record names its holder and
leaves that state only by the holder's acknowledgement, its lock's deadline, or its holder's
member file being unlocked (dead), which is never undone (ids are not reused).

Settings that are group-wide in Kafka (lock duration, delivery limit, in-flight cap) are the
caller's :class:`SharePolicy`; members of one group should use the same values.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from logq.errors import ClientClosedError, ConfigError, GroupNotEmptyError, ShareStateCorruptError, UnknownGroupError
from logq.groups.files import (
    NAME_RE,
    GroupLock,
    check_name,
    live_member_ids,
    member_path,
    new_locked_file,
    os_errors,
    probe_member,
)
from logq.groups.share_journal import MAGIC, Journal, encode_frame
from logq.groups.share_lock import ShareLock
from logq.groups.share_state import (
    ACQUIRED,
    ARCHIVED,
    DEFAULT_MAX_IN_FLIGHT,
    STATE_NAMES,
    Archived,
    Backoff,
    Candidate,
    Changes,
    SharePartitionState,
)
from logq.storage import files as fs
from logq.storage.topics import validate_topic

T = TypeVar("T")
TP = tuple[str, int]
OnArchive = Callable[[TP, list[Archived]], None]

__all__ = [
    "SharePolicy",
    "acquire_from_log",
    "ShareGroupStore",
    "SharePartitionInfo",
    "ShareGroupInfo",
    "share_group_dir",
    "list_share_groups",
    "describe_share_group",
    "reset_share_start",
    "delete_share_group",
]


@dataclass(frozen=True)
class SharePolicy:
    """The rules a member applies: lock duration, Kafka's delivery limit, the in-flight cap."""

    lock_ms: int = 30_000
    delivery_count_limit: int = 5
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    backoff: Backoff | None = None  # redelivery delay after an expired lock or a dead member


def acquire_from_log(
    state: SharePartitionState,
    member: str,
    now_ms: int,
    want: int,
    policy: SharePolicy,
    log_start: int,
    log_end: int,
    candidates: Callable[[int, int], list[Candidate]],
) -> list[tuple[int, int]]:
    """Acquire up to ``want`` records for ``member`` (under the partition's lock): the start
    follows retention first, then new records enter the window from ``state.end``, as many as
    the in-flight cap and the log end leave room for; ``candidates(offset, count)`` reads them
    from the log. Returns (offset, delivery count) pairs. Used by ShareConsumer and logq serve."""
    if state.spso < log_start:  # retention deleted records the group had not finished
        state.move_start(log_start)
    room = min(want, state.spso + policy.max_in_flight - state.end, log_end - state.end)
    cands = candidates(state.end, room) if room > 0 else []
    return state.acquire(
        member,
        now_ms,
        cands,
        want,
        lock_ms=policy.lock_ms,
        limit=policy.delivery_count_limit,
        max_in_flight=policy.max_in_flight,
    )


def share_groups_root(root: str) -> str:
    return os.path.join(root, "__logq", "share_groups")


def share_group_dir(root: str, group: str) -> str:
    return os.path.join(share_groups_root(root), check_name("group id", group))


def partition_paths(gdir: str, tp: TP) -> tuple[str, str]:
    """(lock file, journal) of one share-partition."""
    base = os.path.join(gdir, f"{validate_topic(tp[0])}-{int(tp[1])}")
    return base + ".lock", base + ".journal"


def _make_dirs(gdir: str) -> None:
    path, missing = gdir, []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for p in reversed(missing):
        fs.make_dir(p)
    fs.make_dir(os.path.join(gdir, "members"))


class _Partition:
    def __init__(self, gdir: str, tp: TP, lock_timeout_ms: int) -> None:
        lock_path, journal_path = partition_paths(gdir, tp)
        self.lock = ShareLock(lock_path, lock_timeout_ms)
        # the lock file's first slot remembers how far the journal is durable (share_journal.py)
        self.journal = Journal(journal_path, (self._read_mark, self._write_mark))

    def _read_mark(self) -> bytes:
        return self.lock.read_tokens()[0]

    def _write_mark(self, mark: bytes) -> None:
        self.lock.write_token(0, mark)

    def close(self) -> None:
        self.journal.close()
        self.lock.close()


class _Alive:
    """Liveness of members, each probed once per lock hold; a dead member's file is removed."""

    def __init__(self, gdir: str, mine: set[str] | dict[str, int]) -> None:
        self.gdir, self.mine = gdir, mine
        self.seen: dict[str, bool] = {}

    def __call__(self, member: str) -> bool:
        if member in self.mine:
            return True
        alive = self.seen.get(member)
        if alive is None:
            alive = self.seen[member] = probe_member(self.gdir, member, remove_dead=True).alive
        return alive


class ShareGroupStore:
    """One process's access to a share group; with ``join=True`` it is also a member (its
    member file is flocked until :meth:`close`). Not thread-safe: one thread uses it (a
    ShareConsumer guards it)."""

    @os_errors("open share group")
    def __init__(self, root: str, group: str, *, join: bool = True, lock_timeout_ms: int = 10_000) -> None:
        self.root, self.group = root, group
        self.gdir = share_group_dir(root, group)
        self.lock_timeout_ms = lock_timeout_ms
        _make_dirs(self.gdir)
        self.member_id: str | None = None
        self._members: dict[str, int] = {}  # member id -> descriptor of its flocked member file
        self._parts: dict[TP, _Partition] = {}
        self._closed = False
        if join:
            self.member_id = self.add_member(f"{os.getpid()}-{secrets.token_hex(8)}")

    def add_member(self, member_id: str) -> str:
        """Make ``member_id`` a live member held by this process (its member file flocked until
        :meth:`remove_member` or :meth:`close`): a server hosting network members adds one per
        member. Ids must be unique: use a random part."""
        if self._closed:
            raise ClientClosedError("share group store")
        check_name("member id", member_id)
        if member_id in self._members:
            return member_id
        content = f"0 0 {os.getpid()}\n".encode("ascii")
        self._members[member_id] = new_locked_file(member_path(self.gdir, member_id), content)
        return member_id

    def remove_member(self, member_id: str) -> None:
        """Unlock and remove a member's file: its acquired records return to available at the
        next operation of any member (the crash rule: the delivery counts)."""
        fd = self._members.pop(member_id, None)
        if fd is not None:
            fs.unlink_if_exists(member_path(self.gdir, member_id))
            os.close(fd)

    def _part(self, tp: TP) -> _Partition:
        if self._closed:
            raise ClientClosedError("share group store")
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = _Partition(self.gdir, tp, self.lock_timeout_ms)
        return part

    @os_errors("share-partition update")
    def update(
        self,
        tp: TP,
        change: Callable[[SharePartitionState], T],
        *,
        start_offset: Callable[[], int],
        policy: SharePolicy,
        now_ms: int,
        on_archive: OnArchive | None = None,
        sync: bool = False,
    ) -> T:
        """Apply ``change`` to ``tp``'s current state under its flock (see the module docstring).

        ``start_offset()`` gives the start of a share-partition that has no state yet (the
        consumer's auto_offset_reset). Any exception leaves the journal as it was (this
        process re-reads it next time)."""
        part = self._part(tp)
        with part.lock.hold():
            journal = part.journal
            try:
                if journal.fd is None and not journal.exists():
                    journal.create(SharePartitionState(start_offset()))
                state = journal.catch_up()
                state.defer_archives = on_archive is not None
                pending = state.archiving()  # intents of an archiver that died or failed
                alive = _Alive(self.gdir, self._members)
                limit = policy.delivery_count_limit
                for member in sorted(state.holders()):
                    if not alive(member):
                        state.member_gone(member, limit, now_ms, policy.backoff)
                state.expire(now_ms, limit, policy.backoff)
                result = change(state)
                changes = _archive(journal, state, tp, pending, on_archive)
                if changes:
                    journal.append(state, changes.touched)
                if sync:
                    journal.sync()
            except BaseException:
                journal.forget()
                raise
            return result

    @os_errors("read share-partition")
    def snapshot(self, tp: TP) -> SharePartitionState | None:
        """A copy of ``tp``'s current state (None when it has none yet); changes nothing but a
        torn tail's truncation."""
        part = self._part(tp)
        with part.lock.hold():
            if part.journal.fd is None and not part.journal.exists():
                return None
            try:
                st = part.journal.catch_up()
            except BaseException:
                part.journal.forget()
                raise
            copy = SharePartitionState(st.spso, st.end, {o: replace(r) for o, r in st.records.items()})
            copy.totals = dict(st.totals)
            return copy

    def partitions(self) -> list[TP]:
        """The share-partitions that have state in this group."""
        out: list[TP] = []
        try:
            names = os.listdir(self.gdir)
        except FileNotFoundError:
            return out
        for name in sorted(names):
            topic, _, p = name.removesuffix(".journal").rpartition("-")
            if name.endswith(".journal") and topic and p.isdigit() and p.isascii():
                out.append((topic, int(p)))
        return out

    def close(self) -> None:
        """Close the files; a member's file is unlocked and removed (its records, if any are
        still acquired, return to available at the next operation of any member)."""
        if self._closed:
            return
        self._closed = True
        for part in self._parts.values():
            part.close()
        self._parts.clear()
        for member_id in list(self._members):
            self.remove_member(member_id)

    def __enter__(self) -> ShareGroupStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _archive(
    journal: Journal, state: SharePartitionState, tp: TP, pending: list[Archived], on_archive: OnArchive | None
) -> Changes:
    """The crash-consistent archive steps of :meth:`ShareGroupStore.update` (module docstring):
    journal (and sync) the new ARCHIVING intents, write the dead letters of those and of the
    ``pending`` intents found at catch-up, then make them ARCHIVED. Returns the changes still to
    be journaled."""
    changes = state.take_changes()
    archived = pending + changes.archived
    if changes.archived and on_archive is not None:
        journal.append(state, changes.touched)  # the intent, durable before any letter
        journal.sync()
        fs.crash_point("share.archive.intent")
        changes = state.take_changes()
    if archived:
        if on_archive is not None:
            on_archive(tp, archived)
            fs.crash_point("share.archive.lettered")
        state.finish_archives()
        more = state.take_changes()
        changes.touched |= more.touched
        changes.window_moved |= more.window_moved
    return changes


def _set_aside_if_damaged(journal_path: str, done: list[str]) -> None:
    old = Journal(journal_path)
    try:
        old.catch_up()
    except ShareStateCorruptError:  # keep it for inspection
        aside = f"{journal_path}.damaged-{time.time_ns() // 1_000_000}"
        os.replace(journal_path, aside)
        done.append(f"kept the damaged {os.path.basename(journal_path)} as {os.path.basename(aside)}")
    finally:
        old.close()


# ----------------------------------------------------------------------------- administration


@dataclass(frozen=True)
class SharePartitionInfo:
    """One share-partition as ``describe_share_group`` sees it (read-only: expired locks and
    dead holders are reported, not acted on)."""

    topic: str
    partition: int
    start_offset: int
    end_offset: int
    states: dict[str, int]
    delivery_counts: dict[int, int]
    archived_by_reason: dict[str, int]
    oldest_acquired: tuple[int, str, int] | None  # (offset, member, lock deadline ms)
    expired_locks: int
    dead_holders: int
    totals: dict[str, int] = field(default_factory=dict)  # since it began: deliveries, acknowledged, per archive reason
    damaged: str | None = None  # why its journal cannot be read (ShareStateCorruptError), None if it can


@dataclass(frozen=True)
class ShareGroupInfo:
    group: str
    members: list[str]
    partitions: list[SharePartitionInfo] = field(default_factory=list)


def _unknown(group: str) -> UnknownGroupError:
    return UnknownGroupError(group, kind="share group", hint="list_share_groups() lists the share groups")


@os_errors("delete share group")
def delete_share_group(root: str, group: str) -> None:
    """Delete a share group's state (Kafka's DeleteShareGroups): refused while it has live
    members; a group created again starts at its consumers' auto_offset_reset."""
    gdir = share_group_dir(root, group)
    if not os.path.isdir(gdir):
        raise _unknown(group)
    members = live_member_ids(gdir)
    if members:
        raise GroupNotEmptyError(group, len(members), hint="close the group's ShareConsumers first")
    aside = os.path.join(share_groups_root(root), f".deleted-{group}-{secrets.token_hex(4)}")
    os.replace(gdir, aside)  # atomic: a consumer starting now creates a fresh directory
    fs.fsync_dir(share_groups_root(root))
    shutil.rmtree(aside)


@os_errors("list share groups")
def list_share_groups(root: str) -> list[str]:
    """Names of the share groups that have a directory under the data directory ``root``."""
    base = share_groups_root(root)
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if NAME_RE.fullmatch(n) and os.path.isdir(os.path.join(base, n)))


def _info(tp: TP, st: SharePartitionState, now_ms: int, alive: Callable[[str], bool]) -> SharePartitionInfo:
    held = [(o, r) for o, r in st.records.items() if r.state == ACQUIRED]
    oldest = min(held, key=lambda x: x[0], default=None)
    return SharePartitionInfo(
        topic=tp[0],
        partition=tp[1],
        start_offset=st.spso,
        end_offset=st.end,
        states={STATE_NAMES[s]: n for s, n in sorted(Counter(r.state for r in st.records.values()).items())},
        delivery_counts=dict(sorted(Counter(r.count for r in st.records.values()).items())),
        archived_by_reason=dict(Counter(r.reason for r in st.records.values() if r.state == ARCHIVED)),
        oldest_acquired=None if oldest is None else (oldest[0], oldest[1].member, oldest[1].deadline_ms),
        expired_locks=sum(1 for _, r in held if r.deadline_ms <= now_ms),
        dead_holders=len({r.member for _, r in held if not alive(r.member)}),
        totals=dict(st.totals),
    )


@os_errors("describe share group")
def describe_share_group(root: str, group: str, *, now_ms: int | None = None) -> ShareGroupInfo:
    """Live members and, per share-partition, the start and end offsets, in-flight counts by
    state, the delivery-count histogram, archived counts by reason and the oldest acquired
    record. Archived records below the start offset are gone from the state (``totals`` count
    them). A share-partition whose journal is damaged is listed with ``damaged`` set (offsets -1)."""
    gdir = share_group_dir(root, group)
    if not os.path.isdir(gdir):
        raise _unknown(group)
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    store = ShareGroupStore(root, group, join=False)
    try:
        alive = _Alive(gdir, set())
        parts = []
        for tp in store.partitions():
            try:
                st = store.snapshot(tp)
            except ShareStateCorruptError as e:
                parts.append(SharePartitionInfo(tp[0], tp[1], -1, -1, {}, {}, {}, None, 0, 0, damaged=str(e)))
                continue
            if st is not None:
                parts.append(_info(tp, st, now, alive))
        return ShareGroupInfo(group, live_member_ids(gdir), parts)
    finally:
        store.close()


@os_errors("reset share-partition")
def reset_share_start(root: str, group: str, tps: Sequence[TP], offset: int) -> list[str]:
    """Start each share-partition of ``tps`` over at ``offset`` (Kafka's kafka-share-groups
    --reset-offsets): in-flight states are dropped, records before ``offset`` are not delivered
    again, records from it on are delivered as new. Refused while the group has live members.
    A damaged journal is kept beside the new one as ``<name>.damaged-<ms>``. Returns what it did."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ConfigError(f"offset must be an int >= 0, got {offset!r}")
    gdir = share_group_dir(root, group)
    _make_dirs(gdir)
    done: list[str] = []
    for topic, p in tps:
        lock_path, journal_path = partition_paths(gdir, (topic, p))
        lock = GroupLock(lock_path, 10_000)
        try:
            with lock.hold():
                members = live_member_ids(gdir)
                if members:
                    raise GroupNotEmptyError(group, len(members), hint="close the group's ShareConsumers first")
                if os.path.exists(journal_path):
                    _set_aside_if_damaged(journal_path, done)
                state = SharePartitionState(offset)
                fs.atomic_write(journal_path, MAGIC + encode_frame(state, None))
                done.append(f"{topic}-{p}: start offset {offset}")
        finally:
            lock.close()
    return done
