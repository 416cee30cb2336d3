"""Consumer groups on one host: membership, partition assignment and exclusive ownership.

Members of a group may live in any threads and processes of one machine. There is no
coordinator process: every member follows the same rules on shared files, with ``flock``
doing the hard parts (the kernel drops a flock when its holder dies, even by kill -9).
A member holds two descriptors whatever the number of partitions it owns: its member file
(whose flock says it is alive) and ``group.lock``.

On-disk layout (all under ``<root>/__logq/groups/<group>/``)::

    group.lock             flock of the group: held (exclusive) to change ``state``, to take,
                           release or break (fence) an ownership record, and to commit
                           offsets; shared to read them. Content: two change tokens (offsets,
                           ownership records) that let a process skip re-reading files nobody
                           changed.
    state, state.bak       metadata file (logq/storage/meta.py): {"format", "generation",
                           "members": {id: {"topics": {topic: partitions}, "session_ms",
                           "max_poll_ms", "pid"}}, "assignment": {id: [[topic, p], ...]}}, and
                           while an empty group forms "forming_until_ns", "forming_limit_ns"
                           (logq/groups/startup.py: nothing is assigned until then)
    members/<id>.lock      one per member, flocked exclusively for the member's lifetime.
                           Content: "<heartbeat ns> <last poll ns> <pid>" (CLOCK_MONOTONIC,
                           which all processes of one host share).
    owners/<topic>-<p>.lock  ownership record of one partition: "<member id> <generation>"
                           (the holder, and the generation it took the partition in), or
                           empty when nobody holds it. Written only with the group lock held.
                           Not locked itself (earlier versions flocked it, one descriptor per
                           owned partition): the holder's member-file flock makes it count.
    offsets, offsets.bak   committed offsets, two copies (logq/groups/offsets.py)
    .*.tmp                 a file being created locked (then renamed into place)

Rules:

- Liveness: a member is dead when a non-blocking shared flock on its member file succeeds.
  It is hung when its heartbeat is older than its ``session_timeout_ms`` or its last poll
  older than its ``max_poll_interval_ms``. A background thread (on by default) writes the
  heartbeat, so a busy member stays in the group until it misses ``max_poll_interval_ms``.
- Rebalance: a member that notices a change (it joins or leaves, a member died or hung, its
  subscription changed) takes the group lock, re-reads ``state``, drops dead and hung members
  and writes generation + 1 with a new assignment. Members check every heartbeat interval
  (session_timeout_ms / 3), so a killed member loses its partitions within about that.
- Assignment (:func:`assign_partitions`, pure rules in logq/groups/assignor.py) is
  deterministic and sticky: partitions stay where they are when possible, new ones go to
  the least loaded member, then partitions move from the most to the least loaded until
  counts differ by at most one (floor or ceil of partitions / members when all members
  subscribe to the same topics).
- Exclusivity: a member reads a partition only while the partition's ownership record names
  it. A record that names a member that is alive (its member file is flocked) and in the
  current generation's members is held: nobody else may write it. The new owner writes its
  own name only into a record that is empty (the old owner released it, after its
  ``on_revoke`` callback and final commit), names a dead member (kill -9: the kernel dropped
  its member flock at once) or names a member no longer in the group. The one exception is
  fencing: when a member is evicted as hung, the rebalance empties its records, so its
  commits fail with :class:`CommitFailedError`, :meth:`GroupMember.owned` stops listing
  them, and it finds itself evicted at its next poll. A member that joins empties the
  records that name its own id (left by a dead process that had the same id), so a reused
  id never inherits them. Two members in one process are distinct owners: each has its own
  member id and member file, and flocks belong to open file descriptions.
- Every wait is bounded: flock waits by ``lock_timeout_ms`` (then LogLockedError), waits for
  an assignment by the caller's ``timeout_ms``.

Limits: local file systems only (flock over NFS is unreliable); do not fork while a member
is open (a forked child shares its flocks); a process frozen while it holds ``group.lock``
(microseconds per operation) stalls the group's state changes and commits until it resumes;
the members of one group must all run a logq that keeps ownership in records (a member of
an earlier logq trusts only per-partition flocks, which these members no longer take).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from logq.errors import ClientClosedError, ConfigError, LogLockedError, LogqError, MemberIdInUseError
from logq.groups.assignor import assign_partitions
from logq.groups.describe import (
    GroupDescription,
    MemberDescription,
    describe_group,
    group_has_live_members,
)
from logq.groups.files import (
    GroupLock,
    GroupState,
    Liveness,
    TopicPartition,
    bump_owners_token,
    check_name,
    check_subscription,
    claim_owner,
    clear_owner,
    ensure_dirs,
    group_dir,
    list_groups,
    live_member_ids,
    load_state,
    max_owner_generation,
    member_ok,
    member_path,
    new_locked_file,
    once,
    os_errors,
    owner_records,
    probe_member,
    read_owner_record,
    stat_sig,
)
from logq.groups.served import refuse_if_served
from logq.groups.startup import DEFAULT_INITIAL_REBALANCE_DELAY_MS, check_delay, forming_window, is_due
from logq.storage import files as _fs
from logq.storage.meta import write_meta

__all__ = [
    "TopicPartition",
    "GroupMember",
    "GroupState",
    "MemberDescription",
    "GroupDescription",
    "assign_partitions",
    "group_dir",
    "list_groups",
    "describe_group",
    "group_has_live_members",
    "live_member_ids",
]

log = logging.getLogger("logq.group")

Listener = Callable[[str, TopicPartition, int], None]


# ----------------------------------------------------------------------------- the member


class GroupMember:
    """One member of a consumer group (one thread uses it; it runs its own heartbeat thread).

    ``topics_partitions_fn()`` returns the subscription as {topic: partition count}; it is
    called when joining and then every heartbeat interval from :meth:`poll_assignment`.
    ``ownership_listener(event, tp, monotonic_ns)`` (for tests and tracing) is called with
    "acquired" (time taken before the record was read) and "released" (time after the record
    was emptied, or after giving it up when the group lock could not be had: the record then
    still names this member, so nobody else takes the partition, until it is emptied at the
    next poll or this member's process ends).
    """

    @os_errors("join group")
    def __init__(
        self,
        root: str,
        group_id: str,
        topics_partitions_fn: Callable[[], Mapping[str, int]],
        *,
        member_id: str | None = None,
        session_timeout_ms: int = 3000,
        max_poll_interval_ms: int = 300_000,
        heartbeat_interval_ms: int | None = None,
        heartbeat_thread: bool = True,
        lock_timeout_ms: int = 10_000,
        retry_backoff_ms: int = 20,
        ownership_listener: Listener | None = None,
        initial_rebalance_delay_ms: int = DEFAULT_INITIAL_REBALANCE_DELAY_MS,
    ) -> None:
        for name, value in (
            ("session_timeout_ms", session_timeout_ms),
            ("max_poll_interval_ms", max_poll_interval_ms),
            ("heartbeat_interval_ms", heartbeat_interval_ms or 1),
            ("retry_backoff_ms", retry_backoff_ms),
            ("lock_timeout_ms", lock_timeout_ms),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        self.initial_rebalance_delay_ms = check_delay(initial_rebalance_delay_ms)
        self.group_id = check_name("group id", group_id)
        self.member_id = check_name("member id", member_id or f"m-{os.getpid()}-{secrets.token_hex(4)}")
        self.root = root
        self.group_dir = group_dir(root, group_id)
        self.session_timeout_ms = session_timeout_ms
        self.max_poll_interval_ms = max_poll_interval_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms or max(1, session_timeout_ms // 3)
        self.generation = 0
        self._fn = topics_partitions_fn
        self._listener = ownership_listener
        self._retry_ns = retry_backoff_ms * 1_000_000
        self._owned: dict[TopicPartition, int] = {}  # partition -> generation it was taken in
        self._unreleased: dict[TopicPartition, int] = {}  # given up, record not yet emptied
        # Which owned partitions the records still name us for, as of owners token _valid_token
        # (None: unknown): owned() costs one pread of group.lock while nobody changes a record.
        self._valid: set[TopicPartition] = set()
        self._valid_token: bytes | None = None
        self._pending_revoke: set[TopicPartition] = set()
        self._state: GroupState | None = None
        self._state_sig: tuple[int, int, int, int] | None = None
        self._state_path = os.path.join(self.group_dir, "state")
        self._mutex = threading.RLock()  # state cache and rebalances: app thread vs heartbeat thread
        self._joined = False
        self._closed = False
        self._next_scan_ns = 0
        self._next_acquire_ns = 0
        self._last_poll_ns = time.monotonic_ns()
        ensure_dirs(self.group_dir)
        self._subscription = self._fetch_subscription()
        self._lock = GroupLock(os.path.join(self.group_dir, "group.lock"), lock_timeout_ms)
        self._member_fd = -1
        self._beat_lock = threading.Lock()
        try:
            with self._lock.hold():
                refuse_if_served(self.group_dir, self.group_id)  # one group: embedded or served
                self._member_fd = self._create_member_file()
                self._clear_records_of_my_id()
                self._rebalance_locked(want_self=True)
                self._joined = True
        except BaseException:
            self._lock.close()
            if self._member_fd >= 0:
                os.close(self._member_fd)
            raise
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if heartbeat_thread:
            self._thread = threading.Thread(
                target=self._heartbeat_loop, daemon=True, name=f"logq-heartbeat-{self.member_id}"
            )
            self._thread.start()

    # -- public API --------------------------------------------------------------------

    @os_errors("poll group")
    def poll_assignment(
        self,
        on_revoke: Callable[[set[TopicPartition]], None] | None = None,
        on_lost: Callable[[set[TopicPartition]], None] | None = None,
    ) -> tuple[set[TopicPartition], set[TopicPartition]]:
        """Follow the group: returns (newly acquired, revoked) partitions.

        Cheap when nothing changed (a stat of the state file). Revoked partitions: with
        ``on_revoke`` it is called first (commit there), then they are released; without it
        they stay held (commits still work) until :meth:`release` or the next call.
        Partitions lost to eviction are passed to ``on_lost`` (their commits fail) and
        released. Newly assigned partitions are returned once their previous owner let go.
        """
        self._check_open()
        now = time.monotonic_ns()
        self._last_poll_ns = now
        self._beat(now)
        revoked_out: set[TopicPartition] = set()
        if self._unreleased:
            with self._lock.hold():
                self._clear_records(dict(self._unreleased))
        if self._pending_revoke:
            self.release(self._pending_revoke)
        state, _ = self._current_state()
        if self._owned:  # fenced partitions: our records were emptied or taken
            stolen = set(self._owned) - self._verified()
            self._lose(stolen, on_lost)
            revoked_out |= stolen
        if self._joined and (state is None or self.member_id not in state.members):
            lost = set(self._owned)
            log.warning(
                "member %s of group %s was evicted; %d partition(s) lost", self.member_id, self.group_id, len(lost)
            )
            self._lose(lost, on_lost)
            revoked_out |= lost
            self._joined = False
        if not self._joined or now >= self._next_scan_ns or is_due(state.forming if state else None, now):
            self._next_scan_ns = now + self.heartbeat_interval_ms * 1_000_000
            self._subscription = self._fetch_subscription()
            if not self._joined or self._needs_rebalance(state):
                with self._mutex, self._lock.hold():
                    self._rebalance_locked(want_self=True)
                self._joined = True
                state, _ = self._current_state()
        if state is None or self.member_id not in state.members:
            return set(), revoked_out
        self.generation = state.generation
        target = set(state.assignment.get(self.member_id, ()))
        revoked = set(self._owned) - target
        if revoked:
            revoked_out |= revoked
            if on_revoke is not None:
                on_revoke(set(revoked))
                self.release(revoked)
            else:
                self._pending_revoke = revoked
        assigned: set[TopicPartition] = set()
        if target - set(self._owned) and now >= self._next_acquire_ns:
            assigned = self._acquire(target - set(self._owned))
            if target - set(self._owned):
                self._next_acquire_ns = now + self._retry_ns
        return assigned, revoked_out

    def wait_for_assignment(
        self, timeout_ms: float, on_revoke: Callable[[set[TopicPartition]], None] | None = None
    ) -> bool:
        """Poll until every partition assigned to this member is owned; False on timeout."""
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)) or timeout_ms != timeout_ms:
            raise ConfigError(f"timeout_ms must be a number, got {timeout_ms!r}")
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            self.poll_assignment(on_revoke=on_revoke)
            if self.is_settled():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.01, left))

    def is_settled(self) -> bool:
        """True when this member owns exactly what the current generation assigns it."""
        state = self._state
        if not self._joined or state is None or self.member_id not in state.members or state.forming:
            return False
        return set(self._owned) == set(state.assignment.get(self.member_id, ()))

    @os_errors("check ownership")
    def owned(self) -> set[TopicPartition]:
        """Partitions whose ownership record names this member (with the generation it took
        them in): not fenced. One pread of group.lock while no record changed."""
        return self._verified()

    def assignment(self) -> set[TopicPartition]:
        """What the last seen generation assigns to this member (owned or not yet)."""
        state = self._state
        return set(state.assignment.get(self.member_id, ())) if state else set()

    @os_errors("release partitions")
    def release(self, tps: Iterable[TopicPartition]) -> None:
        """Give up the ownership locks of ``tps`` (after committing their offsets)."""
        tps = {tp for tp in tps if tp in self._owned}
        self._pending_revoke -= tps
        if not tps:
            return
        try:
            with self._lock.hold():
                self._unlock_owned(tps)
        except LogLockedError:  # emptied at the next poll, or freed when this process ends
            self._unlock_owned(tps, clear=False)
            raise

    @os_errors("leave group")
    def close(self, on_revoke: Callable[[set[TopicPartition]], None] | None = None) -> None:
        """Leave the group: on_revoke(owned), release everything, trigger a rebalance."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=self.heartbeat_interval_ms / 1000.0 + 5.0)
        try:
            if self._owned and on_revoke is not None:
                on_revoke(set(self._owned))
        finally:
            try:
                self.release(set(self._owned))
                with self._mutex, self._lock.hold():
                    self._clear_records(dict(self._unreleased))
                    self._rebalance_locked(want_self=False)
            except LogqError as e:  # the others see a dead member and rebalance without us
                log.warning("member %s left group %s uncleanly: %s", self.member_id, self.group_id, e)
            finally:
                # Records not emptied stop counting once our member file is unlocked below.
                self._unlock_owned(set(self._owned), clear=False)
                self._unreleased.clear()
                _fs.unlink_if_exists(member_path(self.group_dir, self.member_id))
                with self._beat_lock:
                    os.close(self._member_fd)
                    self._member_fd = -1
                self._lock.close()

    def __enter__(self) -> GroupMember:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError(f"group member {self.member_id}")

    def _fetch_subscription(self) -> dict[str, int]:
        return check_subscription(self._fn())

    def _info(self) -> dict[str, Any]:
        return {
            "topics": dict(self._subscription),
            "session_ms": self.session_timeout_ms,
            "max_poll_ms": self.max_poll_interval_ms,
            "pid": os.getpid(),
        }

    def _beat(self, now_ns: int) -> None:
        line = f"{now_ns:020d} {self._last_poll_ns:020d} {os.getpid():010d}\n".encode("ascii")
        with self._beat_lock:  # never write through a descriptor that close() released
            if self._member_fd >= 0:
                _fs.pwrite_all(self._member_fd, line, 0, self.member_id)

    def _create_member_file(self) -> int:
        path = member_path(self.group_dir, self.member_id)
        if probe_member(self.group_dir, self.member_id).alive:
            raise MemberIdInUseError(self.group_id, self.member_id)
        fd = new_locked_file(path)
        self._member_fd = fd
        self._beat(time.monotonic_ns())
        return fd

    def _current_state(self) -> tuple[GroupState | None, bool]:
        """The state (re-read only when the file changed) and whether it changed."""
        with self._mutex:
            sig = stat_sig(self._state_path)
            if sig is not None and sig == self._state_sig:
                return self._state, False
            with self._lock.hold(shared=True):
                self._state_sig = stat_sig(self._state_path)
                state, problems = load_state(self.group_dir)
            for p in problems:
                log.warning("group %s: %s", self.group_id, p)
            self._state = state
            return state, True

    def _needs_rebalance(self, state: GroupState | None) -> bool:
        if state is None or self.member_id not in state.members:
            return True
        if state.members[self.member_id].get("topics") != self._subscription:
            return True
        now = time.monotonic_ns()
        if is_due(state.forming, now):  # the group formed: make its first assignment
            return True
        return any(
            not member_ok(probe_member(self.group_dir, m), info, now)
            for m, info in state.members.items()
            if m != self.member_id
        )

    def _rebalance_locked(self, want_self: bool | None) -> GroupState:
        """With the group lock held: drop dead and hung members, write the next generation.

        want_self: True joins (or refreshes our subscription), False leaves, None keeps us
        only if present (the heartbeat thread never re-adds an evicted member).
        """
        old, problems = load_state(self.group_dir)
        for p in problems:
            log.warning("group %s: %s", self.group_id, p)
        if old is None:
            old = GroupState(max_owner_generation(self.group_dir), {}, {})
        now = time.monotonic_ns()
        members: dict[str, dict[str, Any]] = {}
        evicted: list[str] = []
        for m, info in old.members.items():
            if m == self.member_id:
                continue
            if member_ok(probe_member(self.group_dir, m, remove_dead=True), info, now):
                members[m] = info
            else:
                evicted.append(m)
        self._remove_dead_strangers(set(old.members))
        if want_self or (want_self is None and self.member_id in old.members):
            members[self.member_id] = self._info() if want_self else old.members[self.member_id]
        forming = forming_window(
            old.forming,
            joining=bool(want_self) and self.member_id not in old.members,
            alone=set(members) == {self.member_id},
            now_ns=now,
            delay_ns=self.initial_rebalance_delay_ms * 1_000_000,
            cap_ns=self.max_poll_interval_ms * 1_000_000,
        )
        subs = {m: info["topics"] for m, info in members.items()}
        assignment = {} if forming else assign_partitions(subs, old.assignment)  # nothing while forming
        old_assignment = {m: sorted(tps) for m, tps in old.assignment.items()}
        if members == old.members and assignment == old_assignment and forming == old.forming:
            self._state_sig = None  # force a re-read: the caller may hold a stale copy
            return old
        new = GroupState(old.generation + 1, members, assignment, forming)
        write_meta(self._state_path, new.to_json(), sync=False)
        self._state_sig = None
        if evicted:
            log.warning("group %s generation %d: evicted %s", self.group_id, new.generation, evicted)
            self._fence(set(evicted))
        return new

    def _remove_dead_strangers(self, known: set[str]) -> None:
        """Delete member files left by processes that died before they joined a generation."""
        for name in os.listdir(os.path.join(self.group_dir, "members")):
            mid = name[: -len(".lock")]
            if name.endswith(".lock") and not name.startswith(".") and mid not in known | {self.member_id}:
                probe_member(self.group_dir, mid, remove_dead=True)

    def _fence(self, evicted: set[str]) -> None:
        """Empty the ownership records that name evicted (dead or hung) members."""
        bump = once(self._bump)
        for tp, holder, gen in list(owner_records(self.group_dir)):
            if holder in evicted:
                clear_owner(self.group_dir, tp, holder, gen, bump)

    def _bump(self) -> None:
        """With the group lock held, before changing ownership records (once per hold)."""
        token = self._lock.read_tokens()[GroupLock.OWNERS]
        fresh = bool(token) and token == self._valid_token  # nobody changed any since we checked
        new = bump_owners_token(self._lock)
        self._valid_token = new if fresh else None

    def _verified(self) -> set[TopicPartition]:
        """The owned partitions whose records still name us (re-read only after a change)."""
        if not self._owned:
            return set()
        token = self._lock.read_tokens()[GroupLock.OWNERS]
        if not token or token != self._valid_token:
            with self._lock.hold(shared=True):
                token = self._lock.read_tokens()[GroupLock.OWNERS]
                self._valid = {
                    tp
                    for tp, gen in self._owned.items()
                    if read_owner_record(self.group_dir, tp) == (self.member_id, gen)
                }
                self._valid_token = token or None
        return self._valid & set(self._owned)

    def _clear_records_of_my_id(self) -> None:
        """With the group lock held, when joining: empty records left under our member id by a
        dead process (a member id used again must not inherit its partitions)."""
        bump = once(self._bump)
        for tp, holder, gen in list(owner_records(self.group_dir)):
            if holder == self.member_id:
                clear_owner(self.group_dir, tp, holder, gen, bump)

    def _acquire(self, wanted: set[TopicPartition]) -> set[TopicPartition]:
        got: set[TopicPartition] = set()
        with self._mutex, self._lock.hold():
            state, _ = load_state(self.group_dir)
            if state is None or self.member_id not in state.members:
                return got
            mine = set(state.assignment.get(self.member_id, ()))
            alive = Liveness(self.group_dir)
            members = state.members

            def busy(holder: str, _gen: int) -> bool:
                # held by a live member of this generation; not by the dead or the evicted
                return holder in members and alive(holder)

            bump = once(self._bump)
            for tp in sorted(wanted & mine):
                t0 = time.monotonic_ns()
                if not claim_owner(self.group_dir, tp, self.member_id, self.generation, busy, bump):
                    continue  # the current owner has not let go yet
                self._owned[tp] = self.generation
                self._valid.add(tp)
                self._unreleased.pop(tp, None)
                got.add(tp)
                if self._listener:
                    self._listener("acquired", tp, t0)
        return got

    def _clear_records(self, records: Mapping[TopicPartition, int]) -> None:
        """With the group lock held: empty the records of partitions we gave up."""
        bump = once(self._bump)
        for tp, gen in sorted(records.items()):
            clear_owner(self.group_dir, tp, self.member_id, gen, bump)
            self._unreleased.pop(tp, None)

    def _unlock_owned(self, tps: set[TopicPartition], clear: bool = True) -> None:
        """Give up ``tps``: empty their records (with the group lock held) or, clear=False
        (no lock needed), leave that to the next poll or to the end of this process."""
        gone = {tp: self._owned.pop(tp) for tp in sorted(tps) if tp in self._owned}
        self._valid -= set(gone)
        self._unreleased.update(gone)
        if clear:
            self._clear_records(gone)
        if self._listener:
            for tp in gone:
                self._listener("released", tp, time.monotonic_ns())

    def _lose(self, tps: set[TopicPartition], on_lost: Callable[[set[TopicPartition]], None] | None) -> None:
        if not tps:
            return
        if on_lost is not None:
            on_lost(set(tps))
        self.release(tps)  # a record a fence emptied or another member took is left alone

    def _heartbeat_loop(self) -> None:
        interval = self.heartbeat_interval_ms / 1000.0
        while not self._stop.wait(interval):
            try:
                self._beat(time.monotonic_ns())
                with self._mutex:
                    state, _ = self._current_state()  # fresh: a forming window may be due
                    if self._joined and state is not None and self.member_id in state.members:
                        if self._needs_rebalance(state):
                            with self._lock.hold():
                                self._rebalance_locked(want_self=None)
            except Exception as e:  # keep beating: one failed scan must not end the member
                log.warning("heartbeat of %s in group %s failed: %s", self.member_id, self.group_id, e)
