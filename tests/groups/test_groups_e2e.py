"""Consumer groups end to end with real processes (multiprocessing spawn).

Producers and consumers are separate processes sharing one data directory. Every consumer
journals its deliveries, ownership changes and commits (tests/support/e2e_children.py), and the
checks here follow the Jepsen-style oracle of reliability.md T5:

- lost: every acknowledged record is delivered to the group (0 lost);
- inconsistent: a (partition, offset) always carries the value its producer was told (0);
- order: within one ownership session a partition's offsets are contiguous and increasing,
  and each producer's records keep their send order per partition;
- exclusive ownership: per partition, the delivery intervals of different sessions (members)
  never overlap in time (CLOCK_MONOTONIC is shared by the processes of one host);
- duplicates: 0 without faults; after a kill -9 only records the victim delivered after its
  last commit may be delivered again (counted and reported).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from logq import Admin, Producer

from tests.support import e2e_children as children

pytestmark = pytest.mark.slow

CTX = multiprocessing.get_context("spawn")
TOPIC = "events"
PARTITIONS = 4
SESSION_MS = 1000


# ----------------------------------------------------------------------------- journals


@dataclass
class Session:
    """One member's ownership of one partition: from on_assign to on_revoke (or the end)."""

    member: str
    partition: int
    assigned_ns: int
    revoked_ns: int | None = None
    deliveries: list[tuple[int, Any, int]] = field(default_factory=list)  # (offset, value, t_ns)

    @property
    def first_ns(self) -> int:
        return self.deliveries[0][2]

    @property
    def last_ns(self) -> int:
        return self.deliveries[-1][2]


@dataclass
class MemberJournal:
    name: str
    member_id: str = ""
    sessions: list[Session] = field(default_factory=list)
    commits: list[tuple[dict[int, int], int]] = field(default_factory=list)
    orphans: list[tuple[int, int]] = field(default_factory=list)  # deliveries outside a session
    closed: bool = False


def load_member(workdir: Path, name: str) -> MemberJournal:
    mj = MemberJournal(name)
    open_: dict[int, Session] = {}
    for row in children.read_journal(str(workdir / f"{name}.log")):
        kind = row[0]
        if kind == "member":
            mj.member_id = row[1]
        elif kind == "assign":
            for p in row[1]:
                s = open_[p] = Session(name, p, row[2])
                mj.sessions.append(s)
        elif kind == "revoke":
            for p in row[1]:
                s = open_.pop(p, None)
                if s is not None:
                    s.revoked_ns = row[2]
        elif kind == "deliver":
            for p, off, value in row[1]:
                if p in open_:
                    open_[p].deliveries.append((off, value, row[2]))
                else:
                    mj.orphans.append((p, off))
        elif kind == "commit":
            mj.commits.append(({int(p): o for p, o in row[1].items()}, row[2]))
        elif kind == "closed":
            mj.closed = True
    return mj


def load_acks(workdir: Path, producers: list[str]) -> dict[tuple[int, int], dict[str, Any]]:
    """(partition, offset) -> the value each producer was acknowledged for."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for pid in producers:
        for p, off, seq in children.read_journal(str(workdir / f"{pid}.acks")):
            assert (p, off) not in out, f"two acks for {p}:{off}"
            out[(p, off)] = {"p": pid, "seq": seq}
    return out


@dataclass
class Verdict:
    delivered: int
    duplicates: list[tuple[int, int]]
    sessions: dict[int, list[Session]]


def check_group(members: list[MemberJournal], acks: dict[tuple[int, int], dict[str, Any]]) -> Verdict:
    """The T5 oracle over the members' journals; returns the duplicates for the caller to judge."""
    for m in members:
        assert not m.orphans, f"{m.name} delivered partitions it was not assigned: {m.orphans[:5]}"
    by_partition: dict[int, list[Session]] = defaultdict(list)
    for m in members:
        for s in m.sessions:
            if s.deliveries:
                by_partition[s.partition].append(s)
    seen: dict[tuple[int, int], Any] = {}
    counts: Counter = Counter()
    for p, sessions in by_partition.items():
        sessions.sort(key=lambda s: s.first_ns)
        for s in sessions:
            offs = [d[0] for d in s.deliveries]
            # order: contiguous and increasing within a session
            assert offs == list(range(offs[0], offs[0] + len(offs))), f"{s.member} p{p}: gap or reorder in {offs[:20]}"
            # deliveries fall inside the ownership window
            assert s.assigned_ns <= s.first_ns and (s.revoked_ns is None or s.last_ns <= s.revoked_ns)
            for off, value, _ in s.deliveries:
                assert seen.setdefault((p, off), value) == value, f"inconsistent value at {p}:{off}"
                counts[(p, off)] += 1
        for a, b in zip(sessions, sessions[1:]):
            # exclusive ownership: delivery intervals of two sessions never overlap
            assert a.last_ns < b.first_ns, f"p{p}: {a.member} and {b.member} delivered at overlapping times"
            # nothing skipped between owners: the next one starts at or before where this one ended
            assert b.deliveries[0][0] <= a.deliveries[-1][0] + 1, (
                f"p{p}: offsets skipped between {a.member} and {b.member}"
            )
    lost = sorted(set(acks) - set(seen))
    assert not lost, f"{len(lost)} acknowledged records never delivered, e.g. {lost[:5]}"
    for key, value in acks.items():
        assert seen[key] == value, f"{key} delivered {seen[key]}, acknowledged as {value}"
    for pid in {v["p"] for v in acks.values()}:  # per producer, offset order is send order
        for p in range(PARTITIONS):
            seqs = [v["seq"] for (pp, _), v in sorted(acks.items()) if pp == p and v["p"] == pid]
            assert seqs == sorted(seqs)
    dups = sorted(k for k, n in counts.items() for _ in range(n - 1))
    return Verdict(len(seen), dups, dict(by_partition))


# ----------------------------------------------------------------------------- harness


def make_topic(root: str, partitions: int = PARTITIONS) -> None:
    with Admin(root) as admin:
        admin.create_topic(TOPIC, partitions)


def start_consumer(root: str, workdir: Path, group: str, name: str, **kw: Any) -> Any:
    kw.setdefault("session_timeout_ms", SESSION_MS)
    proc = CTX.Process(target=children.consume, args=(root, TOPIC, group, name, str(workdir)), kwargs=kw, name=name)
    proc.start()
    return proc


def start_producer(root: str, workdir: Path, pid: str, count: int, pause_s: float) -> Any:
    proc = CTX.Process(
        target=children.produce, args=(root, TOPIC, pid, count, str(workdir)), kwargs={"pause_s": pause_s}, name=pid
    )
    proc.start()
    return proc


def wait_for(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def all_committed(root: str, group: str, partitions: int = PARTITIONS) -> bool:
    with Admin(root) as admin:
        committed = admin.committed_offsets(group)
        return all(committed.get((TOPIC, p), 0) == admin.log_offsets(TOPIC, p)[1] for p in range(partitions))


def stop_all(workdir: Path, procs: list[Any]) -> None:
    (workdir / "stop").touch()
    for p in procs:
        p.join(30)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()


def assigned_partitions(mj: MemberJournal) -> set[int]:
    return {s.partition for s in mj.sessions}


@pytest.fixture
def env(tmp_path: Path) -> tuple[str, Path]:
    root = str(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    make_topic(root)
    return root, work


# ----------------------------------------------------------------------------- tests


def test_two_producers_and_a_group_of_three_consumer_processes_deliver_every_record_once_in_order(
    env: tuple[str, Path],
) -> None:
    """c1 and c2 start; c3 joins mid-stream; c1 leaves mid-stream: clean rebalances only."""
    root, work = env
    names = ["c1", "c2", "c3"]

    def delivered(n: str) -> int:
        return sum(len(s.deliveries) for s in load_member(work, n).sessions)

    consumers = [start_consumer(root, work, "g", n) for n in names[:2]]
    try:
        wait_for(lambda: all((work / f"{n}.ready").exists() for n in names[:2]), 60, "c1 and c2 to join")
        producers = [start_producer(root, work, pid, 400, pause_s=0.08) for pid in ("A", "B")]  # ~3 s
        wait_for(lambda: delivered("c1") + delivered("c2") >= 100, 60, "the first deliveries")
        consumers.append(start_consumer(root, work, "g", "c3"))
        wait_for(lambda: delivered("c3") >= 1, 60, "c3 to take partitions over")
        (work / "c1.leave").touch()
        for p in producers:
            p.join(60)
        assert [p.exitcode for p in producers] == [0, 0]
        wait_for(lambda: all_committed(root, "g"), 60, "the group to commit everything")
    finally:
        stop_all(work, consumers)
    assert [c.exitcode for c in consumers] == [0, 0, 0]
    journals = [load_member(work, n) for n in names]
    acks = load_acks(work, ["A", "B"])
    assert len(acks) == 800
    verdict = check_group(journals, acks)
    assert verdict.duplicates == []  # no faults: clean rebalances commit before they hand over
    assert all(assigned_partitions(j) for j in journals), "every member took part"
    assert all(j.closed for j in journals)
    handovers = sum(len(s) - 1 for s in verdict.sessions.values())
    assert handovers >= 2  # c3's join and c1's leave each moved at least one partition mid-stream
    print(f"\n[e2e fault-free] records={verdict.delivered} duplicates=0 handovers={handovers}")


def test_kill_9_of_a_consumer_moves_its_partitions_to_the_survivors_and_loses_nothing(env: tuple[str, Path]) -> None:
    root, work = env
    names = ["c1", "c2", "victim"]
    # the victim commits only every 4th poll and holds each poll a little: it dies with
    # deliveries it never committed, which the survivors must deliver again
    consumers = {
        n: start_consumer(
            root, work, "g", n, **({"commit_every": 4, "hold_s": 0.01, "max_records": 5} if n == "victim" else {})
        )
        for n in names
    }
    kill_ns = 0
    try:
        wait_for(lambda: all((work / f"{n}.ready").exists() for n in names), 60, "consumers to join")
        producers = [start_producer(root, work, pid, 300, pause_s=0.05) for pid in ("A", "B")]

        def victim_busy() -> bool:
            mj = load_member(work, "victim")
            return sum(len(s.deliveries) for s in mj.sessions) >= 40

        wait_for(victim_busy, 60, "the victim to deliver records")
        kill_ns = time.monotonic_ns()
        os.kill(consumers["victim"].pid, signal.SIGKILL)
        consumers["victim"].join(10)
        for p in producers:
            p.join(60)
        assert [p.exitcode for p in producers] == [0, 0]
        wait_for(lambda: all_committed(root, "g"), 60, "the survivors to commit everything")
    finally:
        stop_all(work, list(consumers.values()))
    assert consumers["victim"].exitcode == -signal.SIGKILL
    journals = {n: load_member(work, n) for n in names}
    victim = journals["victim"]
    assert not victim.closed
    acks = load_acks(work, ["A", "B"])
    verdict = check_group(list(journals.values()), acks)

    # what the victim held when it died moved to the survivors, after the kill
    held = {s.partition for s in victim.sessions if s.revoked_ns is None}
    assert held, "the victim owned partitions when it was killed"
    takeovers: dict[int, int] = {}
    for n in ("c1", "c2"):
        for s in journals[n].sessions:
            if s.partition in held and s.assigned_ns > kill_ns:
                takeovers[s.partition] = min(takeovers.get(s.partition, s.assigned_ns), s.assigned_ns)
    assert set(takeovers) == held
    rebalance_ms = (max(takeovers.values()) - kill_ns) / 1e6

    # duplicates: only what the victim delivered after its last commit of that partition
    last_commit: dict[int, int] = {}
    for offsets, _ in victim.commits:
        last_commit.update(offsets)
    victim_delivered = {(s.partition, d[0]) for s in victim.sessions for d in s.deliveries}
    first_delivered = {}
    for s in victim.sessions:
        if s.deliveries:
            first_delivered.setdefault(s.partition, s.deliveries[0][0])
    for p, off in verdict.duplicates:
        assert (p, off) in victim_delivered, f"duplicate {p}:{off} was not delivered by the victim"
        floor = last_commit.get(p, first_delivered.get(p, 0))
        assert off >= floor, f"duplicate {p}:{off} is below the victim's last commit {floor}"
    print(
        f"\n[e2e kill -9] records={verdict.delivered} duplicates={len(verdict.duplicates)} "
        f"victim partitions={sorted(held)} rebalance={rebalance_ms:.0f} ms after the kill"
    )


def test_a_new_member_after_commit_and_kill_resumes_exactly_after_the_last_commit(env: tuple[str, Path]) -> None:
    root, work = env
    with Producer(root, linger_ms=0) as prod:
        for i in range(40):
            prod.send(TOPIC, b"%d" % i, partition=i % PARTITIONS)
    first = CTX.Process(target=children.consume_once, args=(root, TOPIC, "g", str(work), "first", 15))
    first.start()
    try:
        wait_for(lambda: (work / "first.done").exists(), 60, "the first member to commit")
    finally:
        first.kill()  # kill -9 right after its commit: nothing else is saved
        first.join(10)
    second = CTX.Process(target=children.consume_once, args=(root, TOPIC, "g", str(work), "second", 25))
    second.start()
    try:
        wait_for(lambda: (work / "second.done").exists(), 60, "the second member to finish")
    finally:
        second.kill()
        second.join(10)
    a = children.read_journal(str(work / "first.log"))
    b = children.read_journal(str(work / "second.log"))
    a_got = [tuple(x) for x in a[0][1]]
    b_got = [tuple(x) for x in b[0][1]]
    a_commit = {int(p): o for p, o in a[1][1].items()}
    assert len(a_got) == 15 and len(b_got) == 25
    for p in range(PARTITIONS):
        mine = [o for pp, o in a_got if pp == p]
        assert a_commit[p] == (mine[-1] + 1 if mine else 0)
        theirs = [o for pp, o in b_got if pp == p]
        assert theirs == list(range(a_commit[p], 10))  # resumes exactly at the commit
    assert sorted(a_got + b_got) == sorted((i % PARTITIONS, i // PARTITIONS) for i in range(40))


def test_two_groups_each_read_everything_while_members_of_one_group_split_the_topic(env: tuple[str, Path]) -> None:
    root, work = env
    members = {"w1": "work", "w2": "work", "audit": "audit"}
    procs = [start_consumer(root, work, g, n) for n, g in members.items()]
    try:
        wait_for(lambda: all((work / f"{n}.ready").exists() for n in members), 60, "consumers to join")

        def split() -> bool:  # the two work members settled on two partitions each
            js = [load_member(work, n) for n in ("w1", "w2")]
            held = [{s.partition for s in j.sessions if s.revoked_ns is None} for j in js]
            return len(held[0]) == len(held[1]) == 2 and not held[0] & held[1]

        wait_for(split, 60, "the work group to split the partitions")
        with Producer(root, linger_ms=1, value_serializer="json") as prod:
            for i in range(200):
                prod.send(TOPIC, {"p": "P", "seq": i}, key=b"k%d" % i)
        wait_for(lambda: all_committed(root, "work") and all_committed(root, "audit"), 60, "both groups to commit")
    finally:
        stop_all(work, procs)
    js = {n: load_member(work, n) for n in members}
    with Admin(root) as admin:
        ends = {p: admin.log_offsets(TOPIC, p)[1] for p in range(PARTITIONS)}
    everything = {(p, o) for p, end in ends.items() for o in range(end)}
    assert len(everything) == 200

    def delivered(n: str) -> list[tuple[int, int]]:
        return [(s.partition, d[0]) for s in js[n].sessions for d in s.deliveries]

    # pub/sub: the audit group alone reads every record, once
    assert sorted(delivered("audit")) == sorted(everything)
    # work queue: the work group's members split the records, each record to one member
    w1, w2 = delivered("w1"), delivered("w2")
    assert sorted(w1 + w2) == sorted(everything)
    assert w1 and w2 and not {p for p, _ in w1} & {p for p, _ in w2}
    check_group([js["w1"], js["w2"]], {})
    check_group([js["audit"]], {})
