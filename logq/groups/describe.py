"""Describing groups for tools (Admin, ``logq groups``): members, assignment, owners, state.

Read-only: it takes the group lock shared to read ``state`` and probes member files and
ownership records as logq/groups/member.py describes them. A network member (one `logq
serve` coordinates, logq/groups/served.py) is told apart by ``"network": true`` in its
``state`` entry, which also holds its client id, host and the group's chosen protocol.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from logq.groups.files import (
    GroupLock,
    GroupState,
    Liveness,
    TopicPartition,
    group_dir,
    live_member_ids,
    load_state,
    os_errors,
    probe_member,
    read_owner,
)

__all__ = ["GroupDescription", "MemberDescription", "describe_group", "group_has_live_members"]


@dataclass(frozen=True)
class MemberDescription:
    member_id: str
    pid: int | None
    alive: bool  # its member flock is held
    in_generation: bool  # listed in the current state
    heartbeat_age_ms: float | None
    poll_age_ms: float | None
    assignment: tuple[TopicPartition, ...]
    network: bool = False  # a Kafka client `logq serve` coordinates; else an embedded Consumer
    client_id: str | None = None  # a network member's client id (None: embedded, or not sent)
    host: str | None = None  # a network member's address as the server saw it


@dataclass(frozen=True)
class GroupDescription:
    group: str
    generation: int
    state: str  # "Dead" (no such group), "Empty", "Stable" or "Rebalancing"
    members: tuple[MemberDescription, ...]
    assignment: dict[TopicPartition, str]
    owners: dict[TopicPartition, str | None]  # the live member each assigned partition's record names
    problems: tuple[str, ...]
    protocol: str | None = None  # the protocol `logq serve` chose for network members (their assignor)

    @property
    def live(self) -> bool:
        return any(m.alive for m in self.members)


@os_errors("probe group")
def group_has_live_members(root: str, group: str) -> bool:
    return bool(live_member_ids(group_dir(root, group)))


@os_errors("describe group")
def describe_group(root: str, group: str, *, lock_timeout_ms: int = 5000) -> GroupDescription:
    """Generation, members (live or not), assignment and current lock holders of a group."""
    gdir = group_dir(root, group)
    if not os.path.isdir(gdir):
        return GroupDescription(group, 0, "Dead", (), {}, {}, ())
    lock = GroupLock(os.path.join(gdir, "group.lock"), lock_timeout_ms, readonly=True)
    try:
        with lock.hold(shared=True):
            state, problems = load_state(gdir)
    finally:
        lock.close()
    state = state or GroupState(0, {}, {})
    now = time.monotonic_ns()
    ids = set(state.members)
    members_dir = os.path.join(gdir, "members")
    names = os.listdir(members_dir) if os.path.isdir(members_dir) else []
    ids |= {n[:-5] for n in names if n.endswith(".lock") and not n.startswith(".")}
    members = []
    protocol = None
    for m in sorted(ids):
        pr = probe_member(gdir, m)
        info = state.members.get(m)
        net = isinstance(info, dict) and info.get("network") is True
        if net and isinstance(info, dict) and isinstance(info.get("protocol"), str):
            protocol = info["protocol"]
        members.append(
            MemberDescription(
                m,
                pr.pid,
                pr.alive,
                m in state.members,
                None if pr.heartbeat_ns is None else (now - pr.heartbeat_ns) / 1e6,
                None if pr.poll_ns is None else (now - pr.poll_ns) / 1e6,
                tuple(state.assignment.get(m, ())),
                net,
                _text(info, "client_id") if net else None,
                _text(info, "host") if net else None,
            )
        )
    assignment = {tp: m for m, tps in state.assignment.items() for tp in tps}
    owners: dict[TopicPartition, str | None] = {}
    alive = Liveness(gdir)
    for tp in sorted(assignment):
        holder, _, busy = read_owner(gdir, tp, alive)
        owners[tp] = holder if busy else None
    live = any(m.alive for m in members)
    if not live:
        kind = "Empty"
    elif state.forming is not None:  # waiting for members before its first assignment
        kind = "Rebalancing"
    elif all(owners[tp] == m for tp, m in assignment.items()):
        kind = "Stable"
    else:
        kind = "Rebalancing"
    return GroupDescription(
        group, state.generation, kind, tuple(members), assignment, owners, tuple(problems), protocol
    )


def _text(info: object, key: str) -> str | None:
    """A string field of a member's ``state`` entry; None when absent or not a string."""
    v = info.get(key) if isinstance(info, dict) else None
    return v if isinstance(v, str) else None
