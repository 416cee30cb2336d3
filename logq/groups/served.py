"""A group coordinated by `logq serve` for network members, in the group's own files.

The server's coordinator (logq/server/coordinator.py) decides membership and generations
in memory, as Kafka's does; this module mirrors each generation into the files every logq
tool reads (layout in logq/groups/member.py), so that ``logq groups describe``,
``Admin.describe_group`` and the must-be-empty rule of an offsets reset see network members
like embedded ones:

- ``served.lock`` (in the group directory) is flocked exclusively by the server while the
  group has network members (taken at the first JoinGroup, given back when the group is
  empty again). Its content is the server's pid.
- each network member has a member file ``members/<member id>.lock``, flocked by the server
  and holding ``"<last heartbeat ns> <last heartbeat ns> <server pid>"`` (CLOCK_MONOTONIC);
- ``state`` lists the members (their subscribed topics, session and rebalance timeouts, the
  server's pid, the client id and host, ``"network": true``) and the generation's assignment,
  decoded from the leader's SyncGroup;
- ownership records name each member for the partitions it was assigned, with the generation.

One group is embedded or served, never both at once (refused, not merged: an embedded member
would otherwise re-assign the network members' partitions by its own rules). Both checks run
with the group lock held, so they cannot race: the server refuses to serve a group that has a
live embedded member (:class:`GroupServedError`, answered to the client as an error code), and
an embedded :class:`~logq.groups.member.GroupMember` refuses to join a group whose
``served.lock`` is held (:func:`refuse_if_served`). Committed offsets are shared either way:
a group can move from embedded consumers to network ones and back.

A server killed with ``kill -9`` drops every flock at once: its members read as dead, the
group as empty, and embedded members may use it again.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Mapping
from typing import Any

from logq.errors import GroupServedError
from logq.groups.files import (
    GroupLock,
    GroupState,
    TopicPartition,
    bump_owners_token,
    claim_owner,
    clear_owner,
    ensure_dirs,
    group_dir,
    live_member_ids,
    load_state,
    max_owner_generation,
    member_path,
    new_locked_file,
    os_errors,
    owner_records,
)
from logq.storage import files as _fs
from logq.storage.meta import write_meta

__all__ = ["ServedGroup", "refuse_if_served", "is_served", "MARKER"]

MARKER = "served.lock"


def is_served(gdir: str) -> bool:
    """Whether a live `logq serve` holds the group's ``served.lock``."""
    fd = _fs.open_existing(os.path.join(gdir, MARKER), os.O_RDONLY)
    if fd is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def refuse_if_served(gdir: str, group: str) -> None:
    """For an embedded member joining (with the group lock held): GroupServedError if
    `logq serve` coordinates the group for network members."""
    if is_served(gdir):
        raise GroupServedError(group, "logq serve coordinates it for network (Kafka-client) consumers")


class ServedGroup:
    """The files of one group while the server coordinates it (one thread: the event loop)."""

    def __init__(self, root: str, group: str, *, lock_timeout_ms: int = 1000) -> None:
        self.group = group
        self.gdir = group_dir(root, group)  # InvalidGroupIdError for a name logq cannot store
        self.lock_timeout_ms = lock_timeout_ms
        self._marker_fd = -1
        self._lock: GroupLock | None = None
        self._member_fds: dict[str, int] = {}
        self._generation = 0

    @property
    def held(self) -> bool:
        return self._marker_fd >= 0

    @os_errors("serve group")
    def acquire(self) -> int:
        """Take the group for the server; returns the generation to continue from.

        GroupServedError when embedded members are live or another server holds it.
        """
        if self.held:
            return self._generation
        ensure_dirs(self.gdir)
        lock = GroupLock(os.path.join(self.gdir, "group.lock"), self.lock_timeout_ms)
        try:
            with lock.hold():
                live = live_member_ids(self.gdir)
                if live:
                    raise GroupServedError(self.group, f"{len(live)} embedded logq member(s) are in it")
                fd = _fs.open_file(os.path.join(self.gdir, MARKER), os.O_RDWR | os.O_CREAT)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise GroupServedError(self.group, "another logq serve coordinates it") from None
                os.ftruncate(fd, 0)
                _fs.pwrite_all(fd, f"{os.getpid()}\n".encode("ascii"), 0, self.gdir)
                state, _ = load_state(self.gdir)
                self._generation = state.generation if state else max_owner_generation(self.gdir)
        except BaseException:
            lock.close()
            raise
        self._marker_fd, self._lock = fd, lock
        return self._generation

    @os_errors("serve group")
    def publish(
        self, generation: int, members: Mapping[str, dict[str, Any]], assignment: Mapping[str, list[TopicPartition]]
    ) -> None:
        """Mirror one generation: member files, ``state`` and ownership records."""
        if self._lock is None:
            return
        with self._lock.hold():
            for mid in [m for m in self._member_fds if m not in members]:
                self._drop_member(mid)
            now = time.monotonic_ns()
            for mid in members:
                if mid not in self._member_fds:
                    self._member_fds[mid] = new_locked_file(member_path(self.gdir, mid), self._beat_line(now))
            self._generation = max(self._generation, generation)
            state = GroupState(self._generation, dict(members), {m: sorted(tps) for m, tps in assignment.items()})
            write_meta(os.path.join(self.gdir, "state"), state.to_json(), sync=False)
            self._write_owners(state)

    def _write_owners(self, state: GroupState) -> None:
        bumped: list[bool] = []

        def bump() -> None:
            if not bumped:
                assert self._lock is not None
                bump_owners_token(self._lock)
                bumped.append(True)

        wanted = {tp: m for m, tps in state.assignment.items() for tp in tps}
        current = {tp: (holder, gen) for tp, holder, gen in owner_records(self.gdir)}
        for tp, (holder, gen) in sorted(current.items()):
            if tp not in wanted:  # nobody holds it in this generation
                clear_owner(self.gdir, tp, holder, gen, bump)
        for tp, mid in sorted(wanted.items()):
            if current.get(tp) != (mid, state.generation):
                claim_owner(self.gdir, tp, mid, state.generation, lambda _h, _g: False, bump)

    @staticmethod
    def _beat_line(now_ns: int) -> bytes:
        return f"{now_ns:020d} {now_ns:020d} {os.getpid():010d}\n".encode("ascii")

    def beat(self, member_id: str) -> None:
        """Record a heartbeat of a network member in its member file."""
        fd = self._member_fds.get(member_id)
        if fd is not None:
            try:
                _fs.pwrite_all(fd, self._beat_line(time.monotonic_ns()), 0, self.gdir)
            except Exception:  # a heartbeat record is informative only
                pass

    def _drop_member(self, member_id: str) -> None:
        fd = self._member_fds.pop(member_id)
        _fs.unlink_if_exists(member_path(self.gdir, member_id))
        os.close(fd)

    @os_errors("release group")
    def release(self) -> None:
        """The group has no network member left: empty state, files removed, marker unlocked."""
        if not self.held:
            return
        try:
            self.publish(self._generation, {}, {})
        finally:
            for mid in list(self._member_fds):
                self._drop_member(mid)
            os.close(self._marker_fd)
            self._marker_fd = -1
            if self._lock is not None:
                self._lock.close()
                self._lock = None
