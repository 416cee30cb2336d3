"""Share groups across real processes: exclusive acquisition, kill -9, poison records, durability.

Children are in tests/groups/share_children.py (started with the spawn method, so no flock or
descriptor is inherited). No test depends on timing: children are waited for by files they
write, and locks are long enough never to expire during a test.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import logq
import pytest
from logq.groups.share_store import describe_share_group

from tests.groups import share_children as children

CTX = multiprocessing.get_context("spawn")


def make_topic(root: str, n: int, topic: str = "jobs", dlq: bool = False) -> None:
    with logq.Admin(root) as a:
        a.create_topic(topic)
        if dlq:
            a.create_topic("dlq")
    with logq.Producer(root) as p:
        for i in range(n):
            p.send(topic, b"job-%d" % i)


def rows(path: Path) -> list[list]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(path: Path, proc: multiprocessing.process.BaseProcess) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert proc.is_alive() or path.exists(), f"child exited with {proc.exitcode} before writing {path.name}"
        assert time.monotonic() < deadline, f"no {path.name}"
        time.sleep(0.01)


def test_four_processes_share_a_partition_and_no_delivery_happens_twice(root: str, tmp_path: Path) -> None:
    total = 1500
    make_topic(root, total)
    work = tmp_path / "work"
    work.mkdir()
    names = [f"w{i}" for i in range(4)]
    procs = [
        CTX.Process(target=children.worker, args=(root, "jobs", "g", str(work), n, total, i), daemon=True)
        for i, n in enumerate(names)
    ]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        accepted = {r[1] for n in names for r in rows(work / f"{n}.log") if r[0] == "ack" and r[2] == "accept"}
        if len(accepted) >= total:
            break
        time.sleep(0.05)
    (work / "stop").touch()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    deliveries: dict[int, list[int]] = defaultdict(list)
    accepts: dict[int, int] = defaultdict(int)
    members = set()
    for n in names:
        for r in rows(work / f"{n}.log"):
            if r[0] == "got":
                deliveries[r[1]].append(r[2])
            elif r[0] == "ack" and r[2] == "accept":
                accepts[r[1]] += 1
            elif r[0] == "member":
                members.add(r[1])
            else:
                assert r[0] == "ack", r  # no acknowledgement came too late: locks never expired
    assert len(members) == 4
    assert sorted(deliveries) == list(range(total))
    for off, counts in deliveries.items():
        # each acquisition of a record counts up under the lock: a record handed to two members
        # at once from a stale view would show the same count twice
        assert sorted(counts) == list(range(1, len(counts) + 1)), (off, counts)
        assert accepts[off] == 1, (off, accepts[off])
    info = describe_share_group(root, "g")
    assert [(p.start_offset, p.end_offset, p.states) for p in info.partitions] == [(total, total, {})]
    totals = info.partitions[0].totals
    assert totals["acknowledged"] == total
    assert totals["deliveries"] == sum(len(c) for c in deliveries.values())


def test_a_killed_member_gives_its_records_back_at_once_with_the_delivery_counted(root: str, tmp_path: Path) -> None:
    make_topic(root, 10)
    proc = CTX.Process(target=children.holder, args=(root, "jobs", "g", str(tmp_path), 4), daemon=True)
    proc.start()
    wait_for(tmp_path / "held.json", proc)
    held = json.loads((tmp_path / "held.json").read_text())
    assert sorted(o for o, _ in held) == [0, 1, 2, 3] and {c for _, c in held} == {1}
    with logq.ShareConsumer(root, ["jobs"], group_id="g", auto_offset_reset="earliest", max_poll_records=100) as sc:
        first = sc.poll(timeout=0)
        assert sorted(r.offset for r in first) == list(range(4, 10))  # the holder is alive: not its records
        sc.commit()
        killer = threading.Thread(target=lambda: (time.sleep(0.2), os.kill(proc.pid, signal.SIGKILL)))
        killer.start()
        # the poll waits (nothing is available) until the holder's death wakes it: its member
        # file closes; its locks would only expire in ten minutes
        got = sc.poll(timeout=300)
        killer.join()
        proc.join()
        assert sorted((r.offset, r.delivery_count) for r in got) == [(0, 2), (1, 2), (2, 2), (3, 2)]


def test_a_poison_record_that_kills_its_worker_is_archived_at_the_delivery_limit(root: str, tmp_path: Path) -> None:
    limit = 3
    make_topic(root, 1, dlq=True)
    for _ in range(limit):
        proc = CTX.Process(target=children.poisoned, args=(root, "jobs", "g", str(tmp_path), limit), daemon=True)
        proc.start()
        proc.join(120)
        assert proc.exitcode == -signal.SIGKILL
    assert rows(tmp_path / "poison.log") == [[[0, n]] for n in range(1, limit + 1)]
    with logq.ShareConsumer(
        root, ["jobs"], group_id="g", delivery_count_limit=limit, dead_letter_topic="dlq", auto_offset_reset="earliest"
    ) as sc:
        assert sc.poll(timeout=0) == []  # the third crash reached the limit: archived, not delivered
    with logq.Consumer(root, "dlq", auto_offset_reset="earliest") as c:
        letters = c.poll(5.0)
    assert len(letters) == 1
    headers = dict(letters[0].headers)
    assert letters[0].value == b"job-0"
    assert headers["__dlq.errors.reason"] == b"delivery_limit"
    assert headers["__dlq.errors.delivery_count"] == str(limit).encode()
    assert describe_share_group(root, "g").partitions[0].start_offset == 1


def test_committed_acknowledgements_survive_kill_9_and_uncommitted_ones_are_redelivered(
    root: str, tmp_path: Path
) -> None:
    make_topic(root, 3, topic="a")
    make_topic(root, 3, topic="b")
    for topic, commit in (("a", True), ("b", False)):
        proc = CTX.Process(target=children.ack_then_die, args=(root, topic, "g", str(tmp_path), commit), daemon=True)
        proc.start()
        proc.join(120)
        assert proc.exitcode == -signal.SIGKILL
    assert rows(tmp_path / "acked.log") == [[0, 1, 2], [0, 1, 2]]
    with logq.ShareConsumer(root, ["a", "b"], group_id="g", auto_offset_reset="earliest") as sc:
        got = sc.poll(timeout=0, max_records=10)
    # "a" committed: nothing comes back; "b" acknowledged without commit(): the acknowledgements
    # were never applied, the crash counts as a delivery
    assert sorted((r.topic, r.offset, r.delivery_count) for r in got) == [("b", 0, 2), ("b", 1, 2), ("b", 2, 2)]


def test_workers_killed_at_random_lose_nothing_and_never_share_a_delivery(root: str, tmp_path: Path) -> None:
    total = 3000
    with logq.Admin(root) as a:
        a.create_topic("jobs", partitions=2)
    with logq.Producer(root) as p:
        for i in range(total):
            p.send("jobs", b"job-%d" % i, partition=i % 2)
    work = tmp_path / "work"
    work.mkdir()
    rng = __import__("random").Random(7)
    procs: dict[str, multiprocessing.process.BaseProcess] = {}
    serial = 0

    def start() -> None:
        nonlocal serial
        name = f"c{serial}"
        serial += 1
        procs[name] = CTX.Process(
            target=children.chaos_worker, args=(root, "jobs", "g", str(work), name, serial), daemon=True
        )
        procs[name].start()

    for _ in range(4):
        start()
    deadline = time.monotonic() + 120
    while not list(work.glob("*.log")) and time.monotonic() < deadline:
        time.sleep(0.01)  # the workers started
    for _ in range(8):  # kill -9 a random worker (one that has had records, if any has), start another
        time.sleep(rng.random() * 0.3)
        alive = sorted(n for n, p in procs.items() if p.is_alive())
        busy = [n for n in alive if (work / f"{n}.log").exists()]
        victim = rng.choice(busy or alive)
        os.kill(procs[victim].pid, signal.SIGKILL)
        procs[victim].join()
        start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        parts = describe_share_group(root, "g").partitions
        if len(parts) == 2 and all(p.start_offset == total // 2 for p in parts):
            break
        time.sleep(0.05)
    (work / "stop").touch()
    for p in procs.values():
        p.join(60)
    seen: dict[tuple[int, int], list[int]] = defaultdict(list)
    for log in work.glob("*.log"):
        for r in rows(log):
            seen[(r[1], r[2])].append(r[3])
    for key, counts in seen.items():
        assert len(counts) == len(set(counts)), (key, counts)  # no delivery handed out twice
    parts = describe_share_group(root, "g").partitions
    assert [(p.start_offset, p.end_offset, p.states) for p in parts] == [(total // 2, total // 2, {})] * 2
    finished = sum(p.totals.get("acknowledged", 0) + p.totals.get("rejected", 0) for p in parts)
    archived_at_limit = sum(p.totals.get("delivery_limit", 0) for p in parts)
    assert finished + archived_at_limit == total  # every record finished exactly once


@pytest.mark.parametrize("site", ["share.append:7", "share.compact.written:2", "share.compact.renamed:2"])
def test_a_crash_while_journaling_or_compacting_loses_no_commit_and_damages_nothing(
    root: str, tmp_path: Path, site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = 60
    make_topic(root, total)
    monkeypatch.setenv("LOGQ_CRASH_AT", site)
    proc = CTX.Process(target=children.compacting_worker, args=(root, "jobs", "g", str(tmp_path)), daemon=True)
    proc.start()
    proc.join(120)
    monkeypatch.delenv("LOGQ_CRASH_AT")
    assert proc.exitcode == -signal.SIGKILL
    committed = {o for row in rows(tmp_path / "committed.log") for o in row}
    assert committed  # it got some way before the crash
    with logq.ShareConsumer(root, ["jobs"], group_id="g", auto_offset_reset="earliest", max_poll_records=1000) as sc:
        again = sc.poll(timeout=0)
        acknowledged = describe_share_group(root, "g").partitions[0].totals["acknowledged"]
    redelivered = {r.offset for r in again}
    assert not committed & redelivered  # nothing committed comes back
    # nothing is lost: each record was acknowledged (committed, or applied just before the crash
    # without the child living to say so) or comes back
    assert acknowledged >= len(committed)
    assert acknowledged + len(redelivered) == total
    assert committed | redelivered <= set(range(total))


def test_expired_locks_across_processes_redeliver_and_every_record_is_accepted_once(root: str, tmp_path: Path) -> None:
    total = 400
    make_topic(root, total)
    work = tmp_path / "work"
    work.mkdir()
    names = [f"s{i}" for i in range(3)]
    procs = [
        CTX.Process(target=children.slow_worker, args=(root, "jobs", "g", str(work), n, i), daemon=True)
        for i, n in enumerate(names)
    ]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            parts = describe_share_group(root, "g").partitions
        except logq.UnknownGroupError:
            parts = []
        if parts and parts[0].start_offset == total:
            break
        time.sleep(0.05)
    (work / "stop").touch()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    got: dict[int, list[int]] = defaultdict(list)
    late = set()
    for n in names:
        for r in rows(work / f"{n}.log"):
            if r[0] == "got":
                got[r[1]].append(r[2])
            else:
                late.add((r[1], r[2]))
    for off, counts in got.items():
        assert sorted(counts) == list(range(1, len(counts) + 1)), (off, counts)
    # a late acknowledgement is one whose delivery was followed by another
    assert all(max(got[off]) > count for off, count in late)
    (p,) = describe_share_group(root, "g").partitions
    assert (p.start_offset, p.totals["acknowledged"]) == (total, total)
    assert p.totals["deliveries"] == sum(len(c) for c in got.values())
