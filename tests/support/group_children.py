"""Child processes for tests/groups/test_group.py (started with the multiprocessing "spawn" method).

Each child writes what it sees into files of a shared work directory, so that the parent can
check it even after killing the child with SIGKILL:

- ``<id>.events``: one JSON line per ownership change, ["acquired"|"released", topic, p, ns]
  with CLOCK_MONOTONIC times (shared by all processes of the host), written with os.write
  on an O_APPEND descriptor (nothing buffered in Python, so a kill -9 loses nothing).
- ``<id>.status``: the latest status as JSON, replaced atomically (tmp + rename).

Control files the parent creates: ``stop`` (every child leaves and exits) and
``<id>.pause`` (that child stops calling into the group until the file is removed).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from logq.errors import CommitFailedError, LogqError
from logq.groups.member import GroupMember
from logq.groups.offsets import OffsetStore

TP = tuple[str, int]


def _write_status(workdir: str, member_id: str, status: dict[str, Any]) -> None:
    path = os.path.join(workdir, f"{member_id}.status")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(status, f)
    os.replace(tmp, path)


def run_member(
    root: str,
    group: str,
    member_id: str,
    subscription: dict[str, int],
    workdir: str,
    session_timeout_ms: int,
    run_s: float,
    poll_s: float = 0.02,
) -> None:
    """A group member that polls until ``stop`` appears (or run_s passes), then leaves."""
    events = os.open(os.path.join(workdir, f"{member_id}.events"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def listener(event: str, tp: TP, t_ns: int) -> None:
        os.write(events, (json.dumps([event, tp[0], tp[1], t_ns]) + "\n").encode())

    lost: set[TP] = set()
    revoked: set[TP] = set()
    member = GroupMember(
        root,
        group,
        lambda: dict(subscription),
        member_id=member_id,
        session_timeout_ms=session_timeout_ms,
        ownership_listener=listener,
    )
    store = OffsetStore.for_group(root, group)
    pause_file = os.path.join(workdir, f"{member_id}.pause")
    stop_file = os.path.join(workdir, "stop")
    status: dict[str, Any] = {}
    paused_owned: list[TP] = []
    paused_gen = -1
    commit_after_pause = None
    deadline = time.monotonic() + run_s
    while time.monotonic() < deadline and not os.path.exists(stop_file):
        if os.path.exists(pause_file):
            if not paused_owned:
                paused_owned, paused_gen = sorted(member.owned()), member.generation
                _write_status(workdir, member_id, dict(status, paused=True))
            time.sleep(poll_s)  # alive, heartbeat thread running, but not calling into the group
            continue
        if paused_owned and commit_after_pause is None:
            try:  # what a consumer would do first after a long stall: commit its progress
                store.commit({tp: 1 for tp in paused_owned}, generation=paused_gen, member_id=member_id)
                commit_after_pause = "committed"
            except CommitFailedError:
                commit_after_pause = "CommitFailedError"
            except LogqError as e:
                commit_after_pause = type(e).__name__
        member.poll_assignment(on_revoke=revoked.update, on_lost=lost.update)
        new = {
            "owned": sorted(member.owned()),
            "generation": member.generation,
            "settled": member.is_settled(),
            "lost": sorted(lost),
            "revoked": sorted(revoked),
            "paused_owned": paused_owned,
            "commit_after_pause": commit_after_pause,
            "pid": os.getpid(),
        }
        if new != status:
            status = new
            _write_status(workdir, member_id, status)
        time.sleep(poll_s)
    member.close()
    store.close()
    _write_status(workdir, member_id, dict(status, closed=True))
    os.close(events)


def commit_as_only_member(root: str, group: str, workdir: str, offset: int, run_s: float) -> None:
    """Join, own a-0, commit ``offset`` for it, report, and stay a live member until ``stop``."""
    member = GroupMember(root, group, lambda: {"a": 1}, member_id="committer", session_timeout_ms=2000)
    status: dict[str, Any] = {"owned": False}
    if member.wait_for_assignment(timeout_ms=10_000):
        with OffsetStore.for_group(root, group) as store:
            store.commit({("a", 0): offset}, generation=member.generation, member_id=member.member_id)
        status = {"owned": True, "committed": offset}
    _write_status(workdir, "committer", status)
    deadline = time.monotonic() + run_s
    while time.monotonic() < deadline and not os.path.exists(os.path.join(workdir, "stop")):
        member.poll_assignment()
        time.sleep(0.02)
    member.close()


def hammer_commits(root: str, group: str, topic: str, partitions: int, rounds: int, workdir: str) -> None:
    """Commit every partition of ``topic`` ``rounds`` times (no membership: the group is empty)."""
    with OffsetStore.for_group(root, group) as store:
        for i in range(1, rounds + 1):
            store.commit({(topic, p): i for p in range(partitions)})
        _write_status(workdir, topic, {"last": rounds, "seen": {f"{t}-{p}": o for (t, p), o in store.all().items()}})
