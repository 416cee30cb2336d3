"""Ownership records: a member's descriptors do not grow with the partitions it owns (issue 9
item 11), and the records keep the guarantees the per-partition flocks gave.

Ownership is a record per partition written under the group lock, made valid by the holder's
member-file flock: a member holds its member file and group.lock whatever it owns (before:
one flocked file per owned partition, so 10,000 partitions needed 10,000 descriptors). Real
child processes limited by RLIMIT_NOFILE own hundreds of partitions, split them, and take
over a ``kill -9``ed member's share; a member id used again after a kill -9 does not inherit
the dead process's records; a release that cannot get the group lock keeps the partition
from everyone until it is completed; records written by an earlier layout are read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from logq.errors import LogLockedError
from logq.groups.member import GroupMember, describe_group, group_dir
from logq.groups.offsets import OffsetStore

SUBS = {"t": 400, "u": 100}
ALL_TPS = {(t, p) for t, n in SUBS.items() for p in range(n)}
NOFILE = 48  # far below the 500 partitions owned

CHILD = """
import json, os, resource, sys
from logq.groups.member import GroupMember
from logq.groups.offsets import OffsetStore
root, mid, workdir, nofile, subs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
fds = lambda: len(os.listdir("/proc/self/fd")) - 1  # without listdir's own
def status(**kw):
    tmp = os.path.join(workdir, mid + ".tmp")
    with open(tmp, "w") as f:
        json.dump(kw, f)
    os.replace(tmp, os.path.join(workdir, mid + ".status"))
before = fds()
m = GroupMember(root, "g", lambda: subs, member_id=mid, session_timeout_ms=1500)
store = OffsetStore.for_group(root, "g")
def revoke(tps):
    store.commit({tp: m.generation for tp in tps}, generation=m.generation, member_id=mid)
done = None
while not os.path.exists(os.path.join(workdir, "stop")):
    m.poll_assignment(on_revoke=revoke)
    if m.is_settled() and done != m.generation:
        owned = sorted(m.owned())
        store.commit({tp: m.generation for tp in owned}, generation=m.generation, member_id=mid)
        done = m.generation
        status(generation=m.generation, owned=owned, fds_before_join=before, fds=fds())
m.close(on_revoke=revoke)
store.close()
status(closed=True, fds=fds())
"""


def _status(workdir: Path, mid: str) -> dict[str, Any]:
    try:
        return json.loads((workdir / f"{mid}.status").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _owned(workdir: Path, mid: str) -> set[tuple[str, int]]:
    return {(t, p) for t, p in _status(workdir, mid).get("owned", [])}


def _wait_until(pred: Callable[[], bool], procs: dict[str, subprocess.Popen[str]], what: str) -> None:
    deadline = time.monotonic() + 60
    while not pred():
        for mid, p in procs.items():
            if p.poll() is not None and p.returncode != -signal.SIGKILL:
                raise AssertionError(f"member {mid} exited with {p.returncode}: {p.communicate()[1]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _start(root: Path, workdir: Path, mid: str) -> subprocess.Popen[str]:
    args = [str(root), mid, str(workdir), str(NOFILE), json.dumps(SUBS)]
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], stderr=subprocess.PIPE, text=True)


def test_members_owning_hundreds_of_partitions_under_a_low_descriptor_limit_split_and_survive_kill_9(
    tmp_path: Path,
) -> None:
    root, workdir = tmp_path / "data", tmp_path / "work"
    workdir.mkdir()
    procs = {"a": _start(root, workdir, "a")}
    try:
        _wait_until(lambda: _owned(workdir, "a") == ALL_TPS, procs, "one member owning all 500 partitions")
        alone = _status(workdir, "a")
        # its member file and group.lock, plus the OffsetStore's group.lock: not one per partition
        assert alone["fds"] <= alone["fds_before_join"] + 3, alone

        procs["b"] = _start(root, workdir, "b")

        def split() -> bool:
            a, b = _status(workdir, "a"), _status(workdir, "b")
            return (
                a.get("generation") == b.get("generation")
                and len(a["owned"]) == len(b["owned"]) == len(ALL_TPS) // 2
                and _owned(workdir, "a") | _owned(workdir, "b") == ALL_TPS
            )

        _wait_until(split, procs, "two members with 250 partitions each")
        gen = _status(workdir, "b")["generation"]
        d = describe_group(str(root), "g")
        assert d.state == "Stable" and d.owners == d.assignment
        assert {tp for tp, m in d.owners.items() if m == "b"} == _owned(workdir, "b")

        os.kill(procs["a"].pid, signal.SIGKILL)
        procs["a"].wait()
        _wait_until(
            lambda: _owned(workdir, "b") == ALL_TPS and _status(workdir, "b")["generation"] > gen,
            procs,
            "the survivor to take the killed member's partitions",
        )
        d = describe_group(str(root), "g")
        assert d.state == "Stable" and set(d.owners.values()) == {"b"}
        last = _status(workdir, "b")
        assert last["fds"] <= last["fds_before_join"] + 3, last
        with OffsetStore.for_group(str(root), "g") as store:  # fenced commits of all 500 landed
            assert {tp: store.committed(*tp) for tp in ALL_TPS} == {tp: last["generation"] for tp in ALL_TPS}
    finally:
        (workdir / "stop").touch()
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    assert procs["b"].returncode == 0, procs["b"].stderr.read() if procs["b"].stderr else ""
    assert _status(workdir, "b").get("closed")
    assert describe_group(str(root), "g").state == "Empty"


def _member(root: Path, mid: str, subs: dict[str, int] = SUBS, **kw: Any) -> GroupMember:
    kw.setdefault("heartbeat_thread", False)
    return GroupMember(str(root), "g", lambda: dict(subs), member_id=mid, session_timeout_ms=60_000, **kw)


def _settle(members: list[GroupMember], **poll_kw: Any) -> None:
    deadline = time.monotonic() + 30
    while not (all(m.is_settled() for m in members) and len({m.generation for m in members}) == 1):
        for m in members:
            m.poll_assignment(**poll_kw)
        assert time.monotonic() < deadline, "the group did not settle"
        time.sleep(0.01)


def test_a_member_id_used_again_after_kill_9_does_not_inherit_the_dead_processs_records(tmp_path: Path) -> None:
    root, workdir = tmp_path / "data", tmp_path / "work"
    workdir.mkdir()
    procs = {"x": _start(root, workdir, "x")}
    try:
        _wait_until(lambda: _owned(workdir, "x") == ALL_TPS, procs, "the child to own every partition")
    finally:
        os.kill(procs["x"].pid, signal.SIGKILL)
        procs["x"].wait()
    # Its 500 records still name "x"; a new "x" (this process) must not look like their holder.
    again, other = _member(root, "x"), _member(root, "y")
    _settle([again, other], on_revoke=lambda tps: None)
    assert again.owned() | other.owned() == ALL_TPS and len(other.owned()) == len(ALL_TPS) // 2
    again.close()
    other.close()


def test_a_release_without_the_group_lock_keeps_the_partitions_from_everyone_until_completed(tmp_path: Path) -> None:
    import fcntl

    subs = {"a": 4}
    m1 = _member(tmp_path, "m1", subs, lock_timeout_ms=50)
    assert m1.wait_for_assignment(5000)
    m2 = _member(tmp_path, "m2", subs)
    _, revoked = m1.poll_assignment()
    assert len(revoked) == 2
    fd = os.open(os.path.join(group_dir(str(tmp_path), "g"), "group.lock"), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process holding the group lock
    with pytest.raises(LogLockedError):
        m1.release(revoked)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    assert m1.owned() == {("a", p) for p in range(4)} - revoked  # m1 no longer reads them
    for _ in range(3):
        m2.poll_assignment()
        m2._next_acquire_ns = 0
    assert m2.owned() == set()  # their records still name m1, alive and in the group
    m1.poll_assignment()  # completes the release
    _settle([m1, m2])
    assert m2.owned() == revoked
    m1.close()
    m2.close()


def test_ownership_records_of_an_earlier_layout_are_read(tmp_path: Path) -> None:
    # A group directory whose owners/ files name members that are gone (written by an earlier
    # logq, which flocked them) and whose state was lost: generations go on from the records.
    gdir = Path(group_dir(str(tmp_path), "g"))
    (gdir / "owners").mkdir(parents=True)
    (gdir / "members").mkdir()
    (gdir / "owners" / "a-0.lock").write_bytes(b"old-member 7\n")
    (gdir / "owners" / "a-1.lock").write_bytes(b"")
    m = _member(tmp_path, "m", {"a": 2})
    assert m.wait_for_assignment(5000) and m.owned() == {("a", 0), ("a", 1)}
    assert m.generation > 7
    assert (gdir / "owners" / "a-0.lock").read_bytes() == f"m {m.generation}\n".encode()
    d = describe_group(str(tmp_path), "g")
    assert d.owners == {("a", 0): "m", ("a", 1): "m"}
    m.close()
    assert (gdir / "owners" / "a-0.lock").read_bytes() == b""
