"""The classic consumer-group coordinator of `logq serve`, sans-IO.

Kafka's group membership protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) as a pure
state machine: no sockets, no files, no clock. Every call takes ``now_ms`` (any monotonic
millisecond clock) and answers through a ``reply`` callback, because JoinGroup and SyncGroup
are long polls: a join is answered when the rebalance completes, a follower's sync when the
leader has sent the assignments. The asyncio side (logq/server/handlers/groups.py) turns the
callbacks into futures and calls :meth:`Coordinator.tick` at :meth:`Coordinator.next_deadline_ms`.

States of a group (Kafka's names)::

    Empty               no members (a group whose members all left keeps its generation)
    PreparingRebalance  waiting for every member to (re)join, at most the rebalance timeout
    CompletingRebalance joins answered (the leader got the members); waiting for the leader's sync
    Stable              assignments handed out; heartbeats answer NONE
    Dead                not used by this coordinator (a group is never unloaded)

Rules, as Kafka's classic GroupCoordinator:

- JoinGroup with an empty member id gets a new id ``<client id>-<uuid>``. From JoinGroup v4 on
  (KIP-394) it is first answered MEMBER_ID_REQUIRED with that id, and the member joins with it.
  Leniently: an id handed out that way stays valid until its session timeout passes, and a
  v4+ member that joins with an empty id twice just gets another id.
- A join of a new member, a member whose protocols changed, or the leader, in Stable or
  CompletingRebalance, starts a rebalance; an unchanged member's join is answered at once
  with the current generation. The rebalance completes when every member has rejoined, or at
  the rebalance timeout (the largest of the members'), when those that did not are removed.
- Completing a join: generation + 1, the protocol chosen by vote among those every member
  supports (each member votes for its first such protocol; ties go to the earlier one in the
  leader's list), the leader kept if still a member (else the first to join), the leader's
  response listing every member and its metadata for the chosen protocol.
- SyncGroup from the leader stores the assignments (members it left out get empty bytes) and
  answers every waiting member; the group becomes Stable. A member that does not sync within
  the rebalance timeout after the join completed is removed, and the group rebalances.
- Heartbeat: NONE in Stable and CompletingRebalance, REBALANCE_IN_PROGRESS in
  PreparingRebalance (so members rejoin), ILLEGAL_GENERATION for another generation,
  UNKNOWN_MEMBER_ID for a member the group does not have.
- A member whose session timeout passes without a heartbeat (or join, sync, commit) is
  removed, unless it is waiting on a join or sync answer; its removal triggers a rebalance.
- Static members (``group.instance.id``): a join with an empty member id and a known instance
  id replaces the old member id (the old one is fenced: FENCED_INSTANCE_ID), then rebalances
  like a new member. Kafka's "no rebalance on a static restart" optimisation is not done.
- A group holds at most ``max_group_members`` members and handed-out ids together (1000;
  Kafka's ``group.max.size``): a new member past it gets GROUP_MAX_SIZE_REACHED.
- Offset commits (:meth:`Coordinator.check_commit`) follow Kafka: generation < 0 with no
  member id commits as an admin only while the group is empty; otherwise the member must be
  known, the generation current, and the group not in CompletingRebalance.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Coordinator", "Group", "Member", "JoinResult", "SyncResult", "LeaveOutcome", "Protocol"]

# Kafka error codes used here (ErrorCode in the protocol).
NONE = 0
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
INVALID_GROUP_ID = 24
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
MEMBER_ID_REQUIRED = 79
GROUP_MAX_SIZE_REACHED = 81
FENCED_INSTANCE_ID = 82

EMPTY, PREPARING, COMPLETING, STABLE, DEAD = (
    "Empty",
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
)

Protocol = tuple[str, bytes]  # (protocol name, member metadata for it)


@dataclass(frozen=True)
class JoinResult:
    error: int
    generation: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    member_id: str = ""
    members: tuple[tuple[str, str | None, bytes], ...] = ()  # (member id, instance id, metadata): leader only


@dataclass(frozen=True)
class SyncResult:
    error: int
    assignment: bytes = b""
    protocol_type: str | None = None
    protocol_name: str | None = None


@dataclass(frozen=True)
class LeaveOutcome:
    member_id: str
    instance_id: str | None
    error: int


JoinReply = Callable[[JoinResult], None]
SyncReply = Callable[[SyncResult], None]


@dataclass
class Member:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocols: tuple[Protocol, ...]
    last_seen_ms: int
    assignment: bytes = b""
    join_reply: JoinReply | None = None
    sync_reply: SyncReply | None = None

    def metadata_for(self, name: str | None) -> bytes:
        return next((meta for n, meta in self.protocols if n == name), b"")

    def names(self) -> list[str]:
        return [n for n, _ in self.protocols]


@dataclass
class Group:
    group_id: str
    state: str = EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str | None = None
    members: dict[str, Member] = field(default_factory=dict)  # in join order
    pending: dict[str, int] = field(default_factory=dict)  # KIP-394 ids handed out -> expiry ms
    instances: dict[str, str] = field(default_factory=dict)  # group.instance.id -> member id
    deadline_ms: int | None = None  # rebalance (join or sync) timeout while rebalancing
    synced: set[str] = field(default_factory=set)  # members that sent SyncGroup this generation

    def candidates(self) -> list[str]:
        """Protocols every member supports, in the leader's (or first member's) order."""
        if not self.members:
            return []
        first = self.members.get(self.leader or "") or next(iter(self.members.values()))
        common = set(first.names())
        for m in self.members.values():
            common &= set(m.names())
        return [n for n in first.names() if n in common]


class Coordinator:
    """Every group of one server. Not thread-safe: call it from one thread (the event loop)."""

    def __init__(
        self,
        *,
        min_session_timeout_ms: int = 100,
        max_session_timeout_ms: int = 1_800_000,
        max_group_members: int = 1000,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self.groups: dict[str, Group] = {}
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.max_group_members = max_group_members  # members and handed-out ids (Kafka's group.max.size)
        self._new_id = new_id or (lambda: str(uuid.uuid4()))
        self.changed: set[str] = set()  # groups whose members, generation or assignment changed

    # -- queries ---------------------------------------------------------------------

    def group(self, group_id: str) -> Group | None:
        return self.groups.get(group_id)

    def take_changed(self) -> set[str]:
        """Groups changed since the last call (for the files that mirror them)."""
        out, self.changed = self.changed, set()
        return out

    def next_deadline_ms(self) -> int | None:
        """The earliest time :meth:`tick` has something to do, or None."""
        times: list[int] = []
        for g in self.groups.values():
            if g.deadline_ms is not None:
                times.append(g.deadline_ms)
            times.extend(g.pending.values())
            times.extend(self._expiry(m) for m in g.members.values() if not self._waiting(m))
        return min(times, default=None)

    # -- JoinGroup -------------------------------------------------------------------

    def join(
        self,
        group_id: str,
        member_id: str,
        *,
        instance_id: str | None,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: Sequence[Protocol],
        require_known_member_id: bool,
        now_ms: int,
        reply: JoinReply,
    ) -> None:
        """Handle one JoinGroup; ``reply`` is called now or when the rebalance completes."""
        if not group_id:
            return reply(JoinResult(INVALID_GROUP_ID, member_id=member_id))
        if not self.min_session_timeout_ms <= session_timeout_ms <= self.max_session_timeout_ms:
            return reply(JoinResult(INVALID_SESSION_TIMEOUT, member_id=member_id))
        if rebalance_timeout_ms <= 0:  # JoinGroup v0 has none: Kafka uses the session timeout
            rebalance_timeout_ms = session_timeout_ms
        g = self.groups.get(group_id)
        if g is None:
            if member_id:
                return reply(JoinResult(UNKNOWN_MEMBER_ID, member_id=member_id))
            g = self.groups[group_id] = Group(group_id)
        protos = tuple(protocols)
        if not self._supports(g, protocol_type, protos):
            return reply(JoinResult(INCONSISTENT_GROUP_PROTOCOL, member_id=member_id))
        new = Member(
            member_id, instance_id, client_id, client_host, session_timeout_ms, rebalance_timeout_ms, protos, now_ms
        )
        if not member_id:
            if len(g.members) + len(g.pending) >= self.max_group_members:
                return reply(JoinResult(GROUP_MAX_SIZE_REACHED))
            self._join_unknown(g, new, protocol_type, require_known_member_id, now_ms, reply)
        elif member_id in g.pending:
            del g.pending[member_id]
            self._add_member(g, new, protocol_type, now_ms, reply)
        elif member_id in g.members:
            self._join_known(g, new, now_ms, reply)
        else:
            reply(JoinResult(UNKNOWN_MEMBER_ID, member_id=member_id))

    def _supports(self, g: Group, protocol_type: str, protos: tuple[Protocol, ...]) -> bool:
        if not protocol_type or not protos:
            return False
        if not g.members:
            return True
        names = {n for n, _ in protos}
        return protocol_type == g.protocol_type and any(n in names for n in g.candidates())

    def _join_unknown(
        self, g: Group, new: Member, protocol_type: str, require_known: bool, now_ms: int, reply: JoinReply
    ) -> None:
        new.member_id = self._fresh_id(new.instance_id or new.client_id)
        if new.instance_id is not None:  # static members skip KIP-394's round trip, as in Kafka
            old = g.members.get(g.instances.get(new.instance_id, ""))
            if old is not None:  # a static member restarted: it takes its place, the old id is fenced
                self._remove(g, old.member_id, now_ms, FENCED_INSTANCE_ID, rebalance=False)
            self._add_member(g, new, protocol_type, now_ms, reply)
        elif require_known:
            g.pending[new.member_id] = now_ms + new.session_timeout_ms
            reply(JoinResult(MEMBER_ID_REQUIRED, member_id=new.member_id))
        else:
            self._add_member(g, new, protocol_type, now_ms, reply)

    def _fresh_id(self, prefix: str) -> str:
        clean = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in prefix)[:100].lstrip(".")
        return f"{clean or 'member'}-{self._new_id()}"

    def _add_member(self, g: Group, m: Member, protocol_type: str, now_ms: int, reply: JoinReply) -> None:
        if not g.members:
            g.protocol_type = protocol_type
        m.join_reply = reply
        g.members[m.member_id] = m
        if m.instance_id is not None:
            g.instances[m.instance_id] = m.member_id
        self.changed.add(g.group_id)
        self._rebalance_or_complete(g, now_ms)

    def _join_known(self, g: Group, new: Member, now_ms: int, reply: JoinReply) -> None:
        m = g.members[new.member_id]
        if new.instance_id is not None and g.instances.get(new.instance_id) != m.member_id:
            return reply(JoinResult(FENCED_INSTANCE_ID, member_id=m.member_id))
        if m.join_reply is not None:  # a retried join replaces the one still waiting
            m.join_reply(JoinResult(REBALANCE_IN_PROGRESS, member_id=m.member_id))
        changed = m.protocols != new.protocols
        m.protocols, m.last_seen_ms = new.protocols, now_ms
        m.session_timeout_ms, m.rebalance_timeout_ms = new.session_timeout_ms, new.rebalance_timeout_ms
        m.client_id, m.client_host = new.client_id, new.client_host
        if g.state == PREPARING:
            m.join_reply = reply
            self._maybe_complete_join(g, now_ms)
        elif not changed and (g.state == COMPLETING or (g.state == STABLE and m.member_id != g.leader)):
            reply(self._join_result(g, m))  # its answer was lost: the current generation again
        else:
            m.join_reply = reply
            self._prepare_rebalance(g, now_ms)

    def _rebalance_or_complete(self, g: Group, now_ms: int) -> None:
        if g.state == PREPARING:
            self._maybe_complete_join(g, now_ms)
        else:
            self._prepare_rebalance(g, now_ms)

    def _prepare_rebalance(self, g: Group, now_ms: int) -> None:
        if g.state == COMPLETING:  # assignments of the generation being completed are void
            for m in g.members.values():
                m.assignment = b""
                self._answer_sync(m, SyncResult(REBALANCE_IN_PROGRESS))
        g.state = PREPARING
        g.synced.clear()
        g.deadline_ms = now_ms + max((m.rebalance_timeout_ms for m in g.members.values()), default=0)
        self._maybe_complete_join(g, now_ms)

    def _maybe_complete_join(self, g: Group, now_ms: int) -> None:
        if g.state == PREPARING and all(m.join_reply is not None for m in g.members.values()):
            self._complete_join(g, now_ms)

    def _complete_join(self, g: Group, now_ms: int) -> None:
        """Start the next generation with the members that rejoined (the others are gone)."""
        for m in [m for m in g.members.values() if m.join_reply is None]:
            self._remove(g, m.member_id, now_ms, UNKNOWN_MEMBER_ID, rebalance=False)
        g.generation += 1
        self.changed.add(g.group_id)
        if not g.members:
            g.state, g.leader, g.protocol_name, g.protocol_type, g.deadline_ms = EMPTY, None, None, None, None
            return
        if g.leader not in g.members:
            g.leader = next(iter(g.members))
        g.protocol_name = self._vote(g)
        g.state = COMPLETING
        g.deadline_ms = now_ms + max(m.rebalance_timeout_ms for m in g.members.values())
        for m in list(g.members.values()):
            reply, m.join_reply = m.join_reply, None
            m.last_seen_ms = now_ms
            if reply is not None:
                reply(self._join_result(g, m))

    @staticmethod
    def _vote(g: Group) -> str:
        candidates = g.candidates()
        votes = dict.fromkeys(candidates, 0)
        for m in g.members.values():
            votes[next(n for n in m.names() if n in votes)] += 1
        return max(candidates, key=lambda n: (votes[n], -candidates.index(n)))

    def _join_result(self, g: Group, m: Member) -> JoinResult:
        members: tuple[tuple[str, str | None, bytes], ...] = ()
        if m.member_id == g.leader:
            members = tuple((x.member_id, x.instance_id, x.metadata_for(g.protocol_name)) for x in g.members.values())
        return JoinResult(NONE, g.generation, g.protocol_type, g.protocol_name, g.leader or "", m.member_id, members)

    # -- SyncGroup, Heartbeat, LeaveGroup --------------------------------------------

    def sync(
        self,
        group_id: str,
        member_id: str,
        generation: int,
        *,
        instance_id: str | None,
        assignments: Sequence[tuple[str, bytes]],
        now_ms: int,
        reply: SyncReply,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
    ) -> None:
        """Handle one SyncGroup; ``reply`` is called now or when the leader's assignments arrive."""
        g = self.groups.get(group_id)
        error = self._check_member(g, member_id, instance_id, generation)
        if error or g is None:
            return reply(SyncResult(error or UNKNOWN_MEMBER_ID))
        if (protocol_type is not None and protocol_type != g.protocol_type) or (
            protocol_name is not None and protocol_name != g.protocol_name
        ):
            return reply(SyncResult(INCONSISTENT_GROUP_PROTOCOL))
        m = g.members[member_id]
        m.last_seen_ms = now_ms
        if g.state == PREPARING:
            return reply(SyncResult(REBALANCE_IN_PROGRESS))
        if g.state == STABLE:
            return reply(SyncResult(NONE, m.assignment, g.protocol_type, g.protocol_name))
        self._answer_sync(m, SyncResult(REBALANCE_IN_PROGRESS))  # a retried sync replaces the old one
        m.sync_reply = reply
        g.synced.add(member_id)
        if member_id == g.leader:
            given = dict(assignments)
            for x in g.members.values():
                x.assignment = given.get(x.member_id, b"")
            g.state, g.deadline_ms = STABLE, None
            self.changed.add(g.group_id)
            for x in g.members.values():
                self._answer_sync(x, SyncResult(NONE, x.assignment, g.protocol_type, g.protocol_name))

    @staticmethod
    def _answer_sync(m: Member, result: SyncResult) -> None:
        reply, m.sync_reply = m.sync_reply, None
        if reply is not None:
            reply(result)

    def heartbeat(self, group_id: str, member_id: str, generation: int, *, instance_id: str | None, now_ms: int) -> int:
        """Handle one Heartbeat: its error code."""
        g = self.groups.get(group_id)
        error = self._check_member(g, member_id, instance_id, generation)
        if error or g is None:
            return error or UNKNOWN_MEMBER_ID
        g.members[member_id].last_seen_ms = now_ms
        return REBALANCE_IN_PROGRESS if g.state == PREPARING else NONE

    def leave(self, group_id: str, members: Sequence[tuple[str, str | None]], *, now_ms: int) -> list[LeaveOutcome]:
        """Handle one LeaveGroup of (member id, instance id) pairs; an outcome per pair."""
        g = self.groups.get(group_id)
        out = []
        for member_id, instance_id in members:
            if g is None:
                out.append(LeaveOutcome(member_id, instance_id, UNKNOWN_MEMBER_ID))
                continue
            if not member_id and instance_id is not None:
                member_id = g.instances.get(instance_id, "")
            elif instance_id is not None and g.instances.get(instance_id) != member_id:
                out.append(LeaveOutcome(member_id, instance_id, FENCED_INSTANCE_ID))
                continue
            if member_id in g.pending:
                del g.pending[member_id]
                out.append(LeaveOutcome(member_id, instance_id, NONE))
            elif member_id in g.members:
                self._remove(g, member_id, now_ms, UNKNOWN_MEMBER_ID, rebalance=True)
                out.append(LeaveOutcome(member_id, instance_id, NONE))
            else:
                out.append(LeaveOutcome(member_id, instance_id, UNKNOWN_MEMBER_ID))
        return out

    def check_commit(
        self, group_id: str, member_id: str, generation: int, *, instance_id: str | None, now_ms: int
    ) -> int:
        """Whether an OffsetCommit may be stored (NONE) or its error code (Kafka's rules)."""
        g = self.groups.get(group_id)
        if generation < 0 and not member_id and instance_id is None:
            return NONE if g is None or not g.members else UNKNOWN_MEMBER_ID
        error = self._check_member(g, member_id, instance_id, generation)
        if error or g is None:
            return error or UNKNOWN_MEMBER_ID
        if g.state == COMPLETING:
            return REBALANCE_IN_PROGRESS
        g.members[member_id].last_seen_ms = now_ms
        return NONE

    def _check_member(self, g: Group | None, member_id: str, instance_id: str | None, generation: int) -> int:
        if g is None or member_id not in g.members:
            if g is not None and instance_id is not None and instance_id in g.instances:
                return FENCED_INSTANCE_ID
            return UNKNOWN_MEMBER_ID
        if instance_id is not None and g.instances.get(instance_id) != member_id:
            return FENCED_INSTANCE_ID
        if generation != g.generation:
            return ILLEGAL_GENERATION
        return NONE

    def _remove(self, g: Group, member_id: str, now_ms: int, error: int, *, rebalance: bool) -> None:
        """Drop a member (left, expired or replaced); answer what it waits for with ``error``."""
        m = g.members.pop(member_id)
        if m.instance_id is not None and g.instances.get(m.instance_id) == member_id:
            del g.instances[m.instance_id]
        g.synced.discard(member_id)
        self.changed.add(g.group_id)
        if m.join_reply is not None:
            reply, m.join_reply = m.join_reply, None
            reply(JoinResult(error, member_id=member_id))
        self._answer_sync(m, SyncResult(error))
        if g.leader == member_id:
            g.leader = next(iter(g.members), None)
        if not rebalance:
            return
        if not g.members and g.state != PREPARING:
            g.state, g.leader, g.protocol_name, g.protocol_type, g.deadline_ms = EMPTY, None, None, None, None
            g.generation += 1  # Kafka bumps the generation when the last member leaves
        elif g.state in (STABLE, COMPLETING):
            self._prepare_rebalance(g, now_ms)
        else:
            self._maybe_complete_join(g, now_ms)

    # -- time ------------------------------------------------------------------------

    @staticmethod
    def _waiting(m: Member) -> bool:
        return m.join_reply is not None or m.sync_reply is not None

    @staticmethod
    def _expiry(m: Member) -> int:
        return m.last_seen_ms + m.session_timeout_ms

    def tick(self, now_ms: int) -> None:
        """Expire sessions, handed-out member ids and rebalance timeouts due by ``now_ms``."""
        for g in list(self.groups.values()):
            for mid in [mid for mid, t in g.pending.items() if t <= now_ms]:
                del g.pending[mid]
            for m in list(g.members.values()):
                if m.member_id in g.members and not self._waiting(m) and self._expiry(m) <= now_ms:
                    self._remove(g, m.member_id, now_ms, UNKNOWN_MEMBER_ID, rebalance=True)
            if g.deadline_ms is not None and g.deadline_ms <= now_ms:
                if g.state == PREPARING:
                    self._complete_join(g, now_ms)
                elif g.state == COMPLETING:  # members that never synced are dropped, then rebalance
                    for mid in [mid for mid in g.members if mid not in g.synced]:
                        self._remove(g, mid, now_ms, REBALANCE_IN_PROGRESS, rebalance=False)
                    if g.members:
                        self._prepare_rebalance(g, now_ms)
                    else:
                        g.state, g.leader, g.protocol_name, g.protocol_type = EMPTY, None, None, None
                        g.deadline_ms = None
