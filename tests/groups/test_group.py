"""Consumer groups: membership across threads and processes, even assignment, exclusive ownership,
rebalancing on join, leave, crash and hang, fencing of evicted members, inspection."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from logq.errors import (
    CommitFailedError,
    ConfigError,
    GroupNotEmptyError,
    InvalidGroupIdError,
    LogClosedError,
    MemberIdInUseError,
)
from logq.groups.member import (
    GroupMember,
    assign_partitions,
    describe_group,
    group_dir,
    group_has_live_members,
    list_groups,
)
from logq.groups.offsets import OffsetStore

from tests.support import group_children as children

TP = tuple[str, int]
SUBS = {"a": 4, "b": 6}
ALL_TPS = {(t, p) for t, n in SUBS.items() for p in range(n)}


def _member(root: str, member_id: str, subs: dict[str, int] | None = None, **kw: Any) -> GroupMember:
    kw.setdefault("heartbeat_thread", False)
    kw.setdefault("session_timeout_ms", 1000)
    the_subs = dict(subs or SUBS)
    return GroupMember(root, kw.pop("group", "g"), lambda: the_subs, member_id=member_id, **kw)


def _settle(members: list[GroupMember], timeout_s: float = 10.0, **poll_kw: Any) -> None:
    """Poll every member round-robin until all own exactly their assignment in one generation."""
    deadline = time.monotonic() + timeout_s
    while True:
        for m in members:
            m.poll_assignment(**poll_kw)
        if all(m.is_settled() for m in members) and len({m.generation for m in members}) == 1:
            return
        assert time.monotonic() < deadline, "the group did not settle in time"
        time.sleep(0.01)


def _wait_until(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.05)


def _assert_even_disjoint_complete(owned: dict[str, set[TP]], tps: set[TP] = ALL_TPS) -> None:
    sets = list(owned.values())
    assert set().union(*sets) == tps, "every partition has an owner"
    assert sum(len(s) for s in sets) == len(tps), "no partition has two owners"
    lo = len(tps) // len(sets)
    assert sorted(len(s) for s in sets) == sorted(
        [lo + 1] * (len(tps) % len(sets)) + [lo] * (len(sets) - len(tps) % len(sets))
    )


# -- assignment ----------------------------------------------------------------------------


def test_assignment_spreads_4_plus_6_partitions_over_3_members_as_4_3_3() -> None:
    a = assign_partitions({m: SUBS for m in ("m1", "m2", "m3")})
    _assert_even_disjoint_complete({m: set(v) for m, v in a.items()})
    assert a == assign_partitions({m: SUBS for m in ("m3", "m1", "m2")})  # deterministic


@settings(max_examples=300, deadline=None)
@given(
    members=st.lists(st.text("abcdef", min_size=1, max_size=3), min_size=1, max_size=6, unique=True),
    counts=st.dictionaries(st.sampled_from(["t1", "t2", "t3"]), st.integers(0, 12), min_size=1),
    seed=st.integers(0, 1000),
)
def test_assignment_is_even_disjoint_complete_and_sticky_for_equal_subscriptions(
    members: list[str], counts: dict[str, int], seed: int
) -> None:
    tps = {(t, p) for t, n in counts.items() for p in range(n)}
    prev_members = members[: max(1, len(members) // 2)] + ["gone"]
    prev = assign_partitions({m: counts for m in prev_members})
    now = assign_partitions({m: counts for m in members}, prev)
    _assert_even_disjoint_complete({m: set(v) for m, v in now.items()}, tps)
    again = assign_partitions({m: counts for m in members}, now)
    assert again == now, "a balanced assignment is stable"
    fair = len(tps) // len(members)
    for m in members:  # sticky: each member keeps its old partitions up to its fair share
        assert len(set(now[m]) & set(prev.get(m, []))) >= min(len(prev.get(m, [])), fair)


def test_assignment_respects_different_subscriptions() -> None:
    a = assign_partitions({"m1": {"a": 4}, "m2": {"a": 4, "b": 2}, "m3": {"b": 2}})
    assert all(t in ("a",) for t, _ in a["m1"]) and all(t == "b" for t, _ in a["m3"])
    assert sorted(tp for v in a.values() for tp in v) == sorted([("a", p) for p in range(4)] + [("b", 0), ("b", 1)])


# -- membership in one process -----------------------------------------------------------


def test_a_single_member_owns_every_partition(tmp_path: Path) -> None:
    with _member(str(tmp_path), "m1") as m:
        assert m.wait_for_assignment(timeout_ms=5000)
        assert m.owned() == ALL_TPS


def test_two_members_split_evenly_and_a_joiner_gets_partitions_only_after_revocation(tmp_path: Path) -> None:
    root = str(tmp_path)
    m1 = _member(root, "m1")
    assert m1.wait_for_assignment(5000)
    m2 = _member(root, "m2")
    assert m2.poll_assignment() == (set(), set())  # m1 still holds everything
    seen_during_revoke: list[set[TP]] = []

    def on_revoke(tps: set[TP]) -> None:
        m2.poll_assignment()  # the joiner tries while the old owner is still committing
        seen_during_revoke.append(set(m2.owned()))
        OffsetStore.for_group(root, "g").commit({tp: 7 for tp in tps}, generation=m1.generation, member_id="m1")

    _, revoked = m1.poll_assignment(on_revoke=on_revoke)
    assert len(revoked) == 5 and seen_during_revoke == [set()]
    _settle([m1, m2])
    _assert_even_disjoint_complete({"m1": m1.owned(), "m2": m2.owned()})
    assert m2.owned() == revoked
    store = OffsetStore.for_group(root, "g")
    assert {tp: store.committed(*tp) for tp in revoked} == {tp: 7 for tp in revoked}  # final commits landed
    m1.close()
    m2.close()


def test_members_in_different_threads_never_share_a_partition(tmp_path: Path) -> None:
    root = str(tmp_path)
    owners: dict[TP, int] = Counter()
    overlap: list[TP] = []
    guard = threading.Lock()
    stop = threading.Event()

    def run(mid: str) -> None:
        def listener(event: str, tp: TP, _t: int) -> None:
            with guard:
                owners[tp] += 1 if event == "acquired" else -1
                if owners[tp] > 1:
                    overlap.append(tp)

        m = GroupMember(root, "g", lambda: SUBS, member_id=mid, session_timeout_ms=1000, ownership_listener=listener)
        while not stop.is_set():
            m.poll_assignment()
            time.sleep(0.005)
        m.close()

    threads = [threading.Thread(target=run, args=(f"t{i}",)) for i in range(3)]
    for t in threads[:2]:
        t.start()
    time.sleep(0.5)
    threads[2].start()  # a third joins while the others run
    _wait_until(
        lambda: describe_group(root, "g").state == "Stable" and len(describe_group(root, "g").members) == 3,
        10,
        "three stable thread members",
    )
    d = describe_group(root, "g")
    _assert_even_disjoint_complete({m.member_id: set(m.assignment) for m in d.members})
    stop.set()
    for t in threads:
        t.join(10)
    assert overlap == []
    assert describe_group(root, "g").state == "Empty"


def test_revoked_partitions_without_a_callback_stay_held_until_released(tmp_path: Path) -> None:
    root = str(tmp_path)
    m1 = _member(root, "m1")
    assert m1.wait_for_assignment(5000)
    m2 = _member(root, "m2")
    _, revoked = m1.poll_assignment()
    assert len(revoked) == 5 and revoked <= m1.owned()  # still held: a final commit works
    OffsetStore.for_group(root, "g").commit({tp: 1 for tp in revoked}, generation=m1.generation, member_id="m1")
    m2.poll_assignment()
    assert m2.owned() == set()
    m1.release(revoked)
    _settle([m1, m2])
    assert m2.owned() == revoked
    m1.close()
    m2.close()


def test_a_leaving_member_hands_its_partitions_to_the_others(tmp_path: Path) -> None:
    root = str(tmp_path)
    ms = [_member(root, f"m{i}") for i in range(3)]
    _settle(ms)
    gen = ms[0].generation
    left = ms[2].owned()
    ms[2].close(on_revoke=lambda tps: None)
    _settle(ms[:2])
    assert ms[0].generation > gen
    _assert_even_disjoint_complete({"m0": ms[0].owned(), "m1": ms[1].owned()})
    assert left <= ms[0].owned() | ms[1].owned()
    for m in ms[:2]:
        m.close()


def test_a_member_that_stops_calling_is_evicted_and_fenced_and_rejoins_later(tmp_path: Path) -> None:
    root = str(tmp_path)
    hung, live = _member(root, "hung", session_timeout_ms=400), _member(root, "live", session_timeout_ms=400)
    _settle([hung, live])
    held, gen = hung.owned(), hung.generation
    store = OffsetStore.for_group(root, "g")
    store.commit({tp: 1 for tp in held}, generation=gen, member_id="hung")  # fine while it owns them
    _wait_until(lambda: live.poll_assignment() is not None and live.owned() == ALL_TPS, 10, "the survivor to take all")
    with pytest.raises(CommitFailedError) as info:
        store.commit({tp: 2 for tp in held}, generation=gen, member_id="hung")
    assert info.value.hint
    assert hung.owned() == set()  # its files were replaced: it holds nothing that counts
    lost: list[set[TP]] = []
    hung.poll_assignment(on_lost=lost.append)
    assert lost == [held]
    _settle([hung, live])  # it rejoined and got an even share back
    _assert_even_disjoint_complete({"hung": hung.owned(), "live": live.owned()})
    with pytest.raises(CommitFailedError):  # the generation from before the eviction stays fenced
        store.commit({tp: 3 for tp in hung.owned()}, generation=gen, member_id="hung")
    store.commit({tp: 3 for tp in hung.owned()}, generation=hung.generation, member_id="hung")
    hung.close()
    live.close()


def test_a_member_that_misses_max_poll_interval_is_evicted_even_with_heartbeats(tmp_path: Path) -> None:
    root = str(tmp_path)
    slow = _member(root, "slow", heartbeat_thread=True, session_timeout_ms=3000, max_poll_interval_ms=300)
    fast = _member(root, "fast", session_timeout_ms=3000)
    _settle([slow, fast])
    time.sleep(0.4)  # slow's heartbeat thread keeps beating, but it does not poll
    fast.poll_assignment()
    fast._next_scan_ns = 0  # scan now rather than at the next heartbeat interval
    _wait_until(lambda: fast.poll_assignment() is not None and fast.owned() == ALL_TPS, 10, "eviction of slow")
    assert [m.member_id for m in describe_group(root, "g").members if m.in_generation] == ["fast"]
    slow.close()
    fast.close()


def test_a_commit_for_a_partition_the_member_does_not_own_fails(tmp_path: Path) -> None:
    root = str(tmp_path)
    m1, m2 = _member(root, "m1"), _member(root, "m2")
    _settle([m1, m2])
    theirs = next(iter(m2.owned()))
    with OffsetStore.for_group(root, "g") as store, pytest.raises(CommitFailedError, match="names m2"):
        store.commit({theirs: 1}, generation=m1.generation, member_id="m1")
    m1.close()
    m2.close()


def test_a_grown_subscription_is_rebalanced(tmp_path: Path) -> None:
    root = str(tmp_path)
    counts = {"a": 2}
    m = GroupMember(root, "g", lambda: dict(counts), member_id="m", heartbeat_thread=False, heartbeat_interval_ms=1)
    assert m.wait_for_assignment(5000) and m.owned() == {("a", 0), ("a", 1)}
    counts["a"] = 3
    counts["new"] = 1
    time.sleep(0.01)
    assert m.wait_for_assignment(5000)
    assert m.owned() == {("a", 0), ("a", 1), ("a", 2), ("new", 0)}
    m.close()


def test_polling_an_unchanged_group_does_not_reread_the_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logq.groups.member as group_module

    m = _member(str(tmp_path), "m1", session_timeout_ms=60_000)
    assert m.wait_for_assignment(5000)
    reads = []
    real = group_module.load_state
    monkeypatch.setattr(group_module, "load_state", lambda gdir: reads.append(gdir) or real(gdir))
    for _ in range(200):
        assert m.poll_assignment() == (set(), set())
    assert reads == []
    m.close()


def test_wait_for_assignment_is_bounded_while_the_old_owner_holds_on(tmp_path: Path) -> None:
    root = str(tmp_path)
    m1 = _member(root, "m1", session_timeout_ms=60_000)
    assert m1.wait_for_assignment(5000)
    m2 = _member(root, "m2", session_timeout_ms=60_000)
    t0 = time.monotonic()
    assert m2.wait_for_assignment(timeout_ms=300) is False  # m1 never polls, so never revokes
    assert time.monotonic() - t0 < 5
    m1.close()
    assert m2.wait_for_assignment(timeout_ms=5000)
    m2.close()


def test_groups_are_independent(tmp_path: Path) -> None:
    root = str(tmp_path)
    a, b = _member(root, "x", group="ga"), _member(root, "x", group="gb")  # same member id is fine
    _settle([a])
    _settle([b])
    assert a.owned() == b.owned() == ALL_TPS
    assert list_groups(root) == ["ga", "gb"]
    a.close()
    assert not group_has_live_members(root, "ga") and group_has_live_members(root, "gb")
    b.close()


def test_describe_group_reports_members_assignment_owners_and_state(tmp_path: Path) -> None:
    root = str(tmp_path)
    assert describe_group(root, "nope").state == "Dead"
    m1, m2 = _member(root, "m1"), _member(root, "m2")
    _settle([m1, m2])
    d = describe_group(root, "g")
    assert (d.state, d.generation, d.live) == ("Stable", m1.generation, True)
    assert [(m.member_id, m.alive, m.in_generation, m.pid) for m in d.members] == [
        ("m1", True, True, os.getpid()),
        ("m2", True, True, os.getpid()),
    ]
    assert d.owners == {tp: d.assignment[tp] for tp in ALL_TPS}
    assert all(m.heartbeat_age_ms is not None and m.heartbeat_age_ms >= 0 for m in d.members)
    m1.close()
    m2.close()
    assert describe_group(root, "g").state == "Empty"


def test_ids_are_checked_and_a_live_member_id_cannot_be_reused(tmp_path: Path) -> None:
    root = str(tmp_path)
    for bad in ("../escape", "", ".", "a/b", "x" * 250):
        with pytest.raises(InvalidGroupIdError):
            GroupMember(root, bad, lambda: SUBS)
    with pytest.raises(InvalidGroupIdError):
        GroupMember(root, "g", lambda: SUBS, member_id=".hidden")
    with pytest.raises(ConfigError):
        GroupMember(root, "g", lambda: SUBS, session_timeout_ms=0)
    m = _member(root, "same")
    with pytest.raises(MemberIdInUseError):
        _member(root, "same")
    m.close()
    with pytest.raises(LogClosedError):
        m.poll_assignment()
    _member(root, "same").close()  # free again once the first one left


def test_a_damaged_state_file_is_survived(tmp_path: Path) -> None:
    root = str(tmp_path)
    m1, m2 = _member(root, "m1"), _member(root, "m2")
    _settle([m1, m2])
    gen = m1.generation
    for name in ("state", "state.bak"):
        Path(group_dir(root, "g"), name).write_bytes(b"garbage")
    _settle([m1, m2], timeout_s=15)
    assert m1.generation > gen  # generations never go back, even without a readable state
    _assert_even_disjoint_complete({"m1": m1.owned(), "m2": m2.owned()})
    m1.close()
    m2.close()


# -- real processes (spawn) ----------------------------------------------------------------

SESSION_MS = 1500
CTX = multiprocessing.get_context("spawn")


def _status(workdir: Path, mid: str) -> dict[str, Any]:
    try:
        return json.loads((workdir / f"{mid}.status").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _owned(workdir: Path, mids: list[str]) -> dict[str, set[TP]]:
    return {m: {tuple(tp) for tp in _status(workdir, m).get("owned", [])} for m in mids}  # type: ignore[misc]


def _stable(workdir: Path, mids: list[str]) -> bool:
    sts = [_status(workdir, m) for m in mids]
    if not all(s.get("settled") for s in sts) or len({s["generation"] for s in sts}) != 1:
        return False
    owned = _owned(workdir, mids)
    return set().union(*owned.values()) == ALL_TPS and sum(map(len, owned.values())) == len(ALL_TPS)


def _start(root: str, workdir: Path, mids: list[str]) -> dict[str, Any]:
    procs = {}
    for mid in mids:
        p = CTX.Process(target=children.run_member, args=(root, "g", mid, SUBS, str(workdir), SESSION_MS, 50.0))
        p.start()
        procs[mid] = p
    return procs


def _stop(workdir: Path, procs: dict[str, Any]) -> None:
    (workdir / "stop").touch()
    for p in procs.values():
        p.join(20)
        if p.is_alive():
            p.kill()
            p.join()


def _ownership_intervals(workdir: Path, ended_at: dict[str, int]) -> dict[TP, list[tuple[int, int, str]]]:
    """Per partition, (acquired, released, member) intervals; open ones end at ``ended_at``."""
    out: dict[TP, list[tuple[int, int, str]]] = {}
    for path in workdir.glob("*.events"):
        mid = path.name[: -len(".events")]
        start: dict[TP, int] = {}
        for line in path.read_text().splitlines():
            event, topic, p, t = json.loads(line)
            if event == "acquired":
                start[(topic, p)] = t
            else:
                out.setdefault((topic, p), []).append((start.pop((topic, p)), t, mid))
        for tp, t in start.items():
            out.setdefault(tp, []).append((t, ended_at.get(mid, time.monotonic_ns()), mid))
    return out


def test_three_member_processes_split_4_plus_6_partitions_evenly_disjointly_completely(tmp_path: Path) -> None:
    root, workdir = str(tmp_path / "data"), tmp_path / "work"
    workdir.mkdir()
    mids = ["p0", "p1", "p2"]
    procs = _start(root, workdir, mids)
    try:
        _wait_until(lambda: _stable(workdir, mids), 20, "three stable member processes")
        _assert_even_disjoint_complete(_owned(workdir, mids))
        d = describe_group(root, "g")
        assert d.state == "Stable" and sorted(m.member_id for m in d.members) == mids
        assert {m.member_id: m.pid for m in d.members} == {m: procs[m].pid for m in mids}
    finally:
        _stop(workdir, procs)
    assert all(_status(workdir, m).get("closed") for m in mids)
    assert describe_group(root, "g").state == "Empty"


def test_kill_9_of_a_member_moves_its_partitions_to_survivors_and_ownership_never_overlaps(tmp_path: Path) -> None:
    root, workdir = str(tmp_path / "data"), tmp_path / "work"
    workdir.mkdir()
    mids = ["p0", "p1", "p2"]
    procs = _start(root, workdir, mids)
    ended: dict[str, int] = {}
    try:
        _wait_until(lambda: _stable(workdir, mids), 20, "three stable member processes")
        victim = max(mids, key=lambda m: len(_owned(workdir, [m])[m]))
        # The victim's open intervals end when the kill is sent: the kernel drops its flocks
        # a little later, so a survivor that acquired before this moment took a lock from a
        # live process (the bug this test looks for).
        ended[victim] = time.monotonic_ns()
        os.kill(procs[victim].pid, signal.SIGKILL)
        procs[victim].join(10)
        survivors = [m for m in mids if m != victim]
        _wait_until(lambda: _stable(workdir, survivors), 20, "the survivors to take over")
        _assert_even_disjoint_complete(_owned(workdir, survivors))
        assert not any(m.member_id == victim for m in describe_group(root, "g").members)
    finally:
        _stop(workdir, procs)
    intervals = _ownership_intervals(workdir, ended)
    assert set(intervals) == ALL_TPS
    for tp, spans in intervals.items():
        spans.sort()
        for (s1, e1, m1), (s2, e2, m2) in zip(spans, spans[1:]):
            assert s2 >= e1, f"{tp} held by {m1} and {m2} at once"
    held_at_kill = {tp for tp, spans in intervals.items() if (victim, ended[victim]) in {(m, e) for _, e, m in spans}}
    assert held_at_kill == _owned(workdir, [victim])[victim]
    handover_ms = (
        max(
            min(s for s, _, m in intervals[tp] if m != victim and s >= ended[victim]) - ended[victim]
            for tp in held_at_kill
        )
        / 1e6
    )  # every one of them found a new owner
    print(f"kill -9 -> last partition re-acquired by a survivor: {handover_ms:.0f} ms (session {SESSION_MS} ms)")


def test_a_frozen_member_process_is_evicted_fenced_and_rejoins_when_it_resumes(tmp_path: Path) -> None:
    root, workdir = str(tmp_path / "data"), tmp_path / "work"
    workdir.mkdir()
    mids = ["p0", "p1", "p2"]
    procs = _start(root, workdir, mids)
    try:
        _wait_until(lambda: _stable(workdir, mids), 20, "three stable member processes")
        frozen = "p2"
        before = _owned(workdir, [frozen])[frozen]
        (workdir / f"{frozen}.pause").touch()
        _wait_until(lambda: bool(_status(workdir, frozen).get("paused")), 10, "the member to pause")
        os.kill(procs[frozen].pid, signal.SIGSTOP)  # heartbeat thread included
        try:
            _wait_until(lambda: _stable(workdir, ["p0", "p1"]), 20, "the others to evict the frozen member")
        finally:
            os.kill(procs[frozen].pid, signal.SIGCONT)
        (workdir / f"{frozen}.pause").unlink()
        _wait_until(lambda: _stable(workdir, mids), 20, "the resumed member to rejoin")
        st = _status(workdir, frozen)
        assert st["commit_after_pause"] == "CommitFailedError"
        assert {tuple(tp) for tp in st["lost"]} == before
        _assert_even_disjoint_complete(_owned(workdir, mids))
    finally:
        _stop(workdir, procs)


def test_a_member_thread_and_a_member_process_share_the_partitions(tmp_path: Path) -> None:
    root, workdir = str(tmp_path / "data"), tmp_path / "work"
    workdir.mkdir()
    procs = _start(root, workdir, ["proc"])
    here = GroupMember(root, "g", lambda: SUBS, member_id="thread", session_timeout_ms=SESSION_MS)
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            here.poll_assignment()
            time.sleep(0.02)

    t = threading.Thread(target=poll)
    t.start()
    try:
        _wait_until(
            lambda: describe_group(root, "g").state == "Stable" and len(describe_group(root, "g").members) == 2,
            20,
            "a stable group of a thread and a process",
        )
        d = describe_group(root, "g")
        _assert_even_disjoint_complete({m.member_id: set(m.assignment) for m in d.members})
        assert {m.member_id: m.pid for m in d.members} == {"thread": os.getpid(), "proc": procs["proc"].pid}
    finally:
        stop.set()
        t.join(10)
        here.close()
        _stop(workdir, procs)


def test_a_commit_in_one_process_is_visible_in_another_and_blocks_admin_commits(tmp_path: Path) -> None:
    root, workdir = str(tmp_path / "data"), tmp_path / "work"
    workdir.mkdir()
    p = CTX.Process(target=children.commit_as_only_member, args=(root, "g", str(workdir), 42, 30.0))
    p.start()
    try:
        _wait_until(lambda: "committed" in _status(workdir, "committer"), 20, "the child's commit")
        with OffsetStore.for_group(root, "g") as store:
            assert store.committed("a", 0) == 42
            with pytest.raises(GroupNotEmptyError):  # the child is a live member
                store.commit({("a", 0): 0})
    finally:
        (workdir / "stop").touch()
        p.join(20)
    assert p.exitcode == 0
    with OffsetStore.for_group(root, "g") as store:
        store.commit({("a", 0): 0})  # the group is empty now
        assert store.committed("a", 0) == 0


def test_commits_from_several_processes_merge_without_lost_updates(tmp_path: Path) -> None:
    root, workdir = str(tmp_path / "data"), tmp_path / "work"
    workdir.mkdir()
    topics = ["x", "y", "z"]
    procs = [CTX.Process(target=children.hammer_commits, args=(root, "g", t, 3, 300, str(workdir))) for t in topics]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with OffsetStore.for_group(root, "g") as store:
        assert store.all() == {(t, p): 300 for t in topics for p in range(3)}
        assert store.problems == []
