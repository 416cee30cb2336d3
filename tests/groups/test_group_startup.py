"""Group start-up (logq/groups/startup.py): members started together are assigned once each,
without the churn of the first member taking every partition and handing them back; with
``initial_rebalance_delay_ms=0`` they converge as before. Real processes for the group; the
forming window's rules on their own; the argument checks."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import pytest
from logq import ConfigError, Consumer, TopicPartition
from logq.groups.member import GroupMember, describe_group
from logq.groups.startup import DEFAULT_INITIAL_REBALANCE_DELAY_MS, forming_window, is_due

from tests.groups import startup_children as children
from tests.support.clients import make_topic

CTX = multiprocessing.get_context("spawn")
PARTITIONS = 6
MEMBERS = 3
LIVENESS_S = 60.0  # a bound for liveness only: every wait ends as soon as its condition holds
MS = 1_000_000


def _wait_for(cond: Any, what: str) -> None:
    deadline = time.monotonic() + LIVENESS_S
    while not cond():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.02)


def _read(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _owned(work: Path, name: str) -> list[int] | None:
    p = work / f"{name}.owned"
    return json.loads(p.read_text()) if p.exists() else None


def _start_together(root: str, work: Path, delay_ms: int) -> dict[str, list[Any]]:
    """Start MEMBERS processes, let them join at once, wait until the group is balanced and
    every partition owned by one of them; return each one's journal then, and stop them."""
    make_topic(root, "t", PARTITIONS)
    names = [f"m{i}" for i in range(MEMBERS)]
    procs = [
        CTX.Process(target=children.member, args=(root, "t", "g", str(work), n, delay_ms), daemon=True) for n in names
    ]
    for p in procs:
        p.start()
    try:
        _wait_for(lambda: all((work / f"{n}.ready").exists() for n in names), "the members to start")
        (work / "go").touch()

        def balanced() -> bool:
            owned = [_owned(work, n) for n in names]
            if any(o is None for o in owned):
                return False
            flat = sorted(p for o in owned for p in o or [])
            return flat == list(range(PARTITIONS)) and all(len(o or []) == PARTITIONS // MEMBERS for o in owned)

        _wait_for(balanced, "a balanced assignment")
        # the start-up, as journaled when the group is balanced (before members leave: that is
        # a rebalance of its own); each callback was journaled before the poll that wrote .owned
        out = {n: _read(work / f"{n}.log") for n in names}
        (work / "stop").touch()
        for p in procs:
            p.join(LIVENESS_S)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    return out


@pytest.mark.slow
def test_members_started_together_are_each_assigned_once_and_nothing_is_revoked(root: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    journals = _start_together(root, work, delay_ms=2000)
    for name, rows in journals.items():
        assert [r[0] for r in rows] == ["assign"], f"{name} saw {rows}"
    got = sorted(p for rows in journals.values() for p in rows[0][1])
    assert got == list(range(PARTITIONS))  # each partition assigned exactly once in all


@pytest.mark.slow
def test_without_the_delay_members_started_together_still_converge_to_a_balanced_group(
    root: str, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    journals = _start_together(root, work, delay_ms=0)
    for name, rows in journals.items():
        held: set[int] = set()
        for kind, parts in rows:  # revokes only of what was assigned, in callback order
            if kind == "assign":
                assert not held & set(parts)
                held |= set(parts)
            else:
                assert set(parts) <= held
                held -= set(parts)
        assert len(held) == PARTITIONS // MEMBERS, f"{name} saw {rows}"


# ----------------------------------------------------------------------------- in one process


def _poll_until_assigned(*members: GroupMember) -> None:
    _wait_for(lambda: [m.poll_assignment() for m in members] and all(m.is_settled() for m in members), "settling")


def test_a_lone_member_waits_for_its_delay_then_gets_every_partition(root: str) -> None:
    make_topic(root, "t", 4)
    m = GroupMember(root, "g", lambda: {"t": 4}, heartbeat_thread=False, initial_rebalance_delay_ms=200)
    try:
        assert m.poll_assignment() == (set(), set())  # the group is forming: nothing assigned yet
        assert not m.is_settled()
        assert describe_group(root, "g").state == "Rebalancing"
        _poll_until_assigned(m)
        assert m.owned() == {("t", p) for p in range(4)}
        assert describe_group(root, "g").state == "Stable"
    finally:
        m.close()


def test_a_member_joining_a_formed_group_is_not_delayed(root: str) -> None:
    make_topic(root, "t", 4)
    a = GroupMember(root, "g", lambda: {"t": 4}, heartbeat_thread=False, initial_rebalance_delay_ms=0)
    _poll_until_assigned(a)
    b = GroupMember(root, "g", lambda: {"t": 4}, heartbeat_thread=False, initial_rebalance_delay_ms=3_600_000)
    try:
        b.poll_assignment()
        assert len(b.assignment()) == 2  # assigned at its join: no forming window
        _poll_until_assigned(a, b)
        assert len(a.owned()) == len(b.owned()) == 2
    finally:
        b.close()
        a.close()


def test_a_consumer_with_the_default_delay_reads_once_its_group_formed(root: str) -> None:
    make_topic(root, "t", 2)
    from logq import Producer

    with Producer(root, linger_ms=0) as p:
        p.send("t", b"x", partition=1).result(10)
    with Consumer(root, "t", group_id="g", auto_offset_reset="earliest") as c:
        assert c.initial_rebalance_delay_ms == DEFAULT_INITIAL_REBALANCE_DELAY_MS
        got: list[Any] = []
        _wait_for(lambda: got.extend(c.poll(0.05)) or got, "the record")
        assert [r.value for r in got] == [b"x"]
        assert c.assignment() == {TopicPartition("t", 0), TopicPartition("t", 1)}


@pytest.mark.parametrize("bad", [-1, 1.5, "300", True, None])
def test_a_bad_initial_rebalance_delay_is_a_config_error(root: str, bad: Any) -> None:
    make_topic(root, "t", 1)
    with pytest.raises(ConfigError, match="initial_rebalance_delay_ms"):
        Consumer(root, "t", group_id="g", initial_rebalance_delay_ms=bad)
    with pytest.raises(ConfigError, match="initial_rebalance_delay_ms"):
        GroupMember(root, "g", lambda: {"t": 1}, initial_rebalance_delay_ms=bad)
    assert not os.path.exists(os.path.join(root, "__logq", "groups", "g", "members"))  # checked first


# ----------------------------------------------------------------------------- the rules


def test_the_first_join_opens_a_window_of_the_delay_capped_by_the_rebalance_timeout() -> None:
    assert forming_window(None, joining=True, alone=True, now_ns=10, delay_ns=5, cap_ns=100) == (15, 110)
    assert forming_window(None, joining=True, alone=True, now_ns=10, delay_ns=500, cap_ns=100) == (510, 510)
    assert forming_window(None, joining=True, alone=True, now_ns=10, delay_ns=0, cap_ns=100) is None


def test_each_join_pushes_the_window_up_to_its_limit_and_a_due_window_closes() -> None:
    w = (15, 110)
    assert forming_window(w, joining=True, alone=False, now_ns=12, delay_ns=5, cap_ns=100) == (17, 110)
    assert forming_window(w, joining=True, alone=False, now_ns=12, delay_ns=1000, cap_ns=100) == (110, 110)
    assert forming_window(w, joining=True, alone=False, now_ns=12, delay_ns=0, cap_ns=100) == (15, 110)
    assert forming_window(w, joining=False, alone=False, now_ns=12, delay_ns=5, cap_ns=100) == w  # a leave
    assert forming_window(w, joining=True, alone=False, now_ns=15, delay_ns=5, cap_ns=100) is None  # due
    assert forming_window(None, joining=True, alone=False, now_ns=12, delay_ns=5, cap_ns=100) is None
    assert is_due(w, 15) and not is_due(w, 14) and not is_due(None, 10**18)


def test_a_member_alone_in_a_group_whose_window_its_dead_founders_left_opens_a_new_one() -> None:
    assert forming_window((15, 110), joining=True, alone=True, now_ns=500, delay_ns=5, cap_ns=100) == (505, 600)


def test_the_heartbeat_thread_makes_the_first_assignment_when_no_member_polls(root: str) -> None:
    make_topic(root, "t", 2)
    m = GroupMember(root, "g", lambda: {"t": 2}, heartbeat_interval_ms=20, initial_rebalance_delay_ms=100)
    try:
        assert describe_group(root, "g").assignment == {}
        _wait_for(lambda: describe_group(root, "g").assignment, "the heartbeat thread to assign")
        assert describe_group(root, "g").assignment == {("t", 0): m.member_id, ("t", 1): m.member_id}
    finally:
        m.close()
