"""The durable share-partition store (logq/groups/share_store.py, share_journal.py) on its own:
two stores in one process stand for two processes (each has its own descriptors and flocks)."""

from __future__ import annotations

import os

import logq
import pytest
from logq.groups import share_journal
from logq.groups.share_state import Candidate, SharePartitionState
from logq.groups.share_store import (
    ShareGroupStore,
    SharePolicy,
    delete_share_group,
    describe_share_group,
    list_share_groups,
    partition_paths,
    reset_share_start,
)

TP = ("jobs", 0)
POLICY = SharePolicy(lock_ms=1000, delivery_count_limit=3)


def acquire(store: ShareGroupStore, now: int, upto: int, n: int = 100) -> list[tuple[int, int]]:
    def change(st: SharePartitionState) -> list[tuple[int, int]]:
        cands = [Candidate(o) for o in range(st.end, upto)]
        assert store.member_id is not None
        return st.acquire(store.member_id, now, cands, n, lock_ms=POLICY.lock_ms, limit=3)

    return store.update(TP, change, start_offset=lambda: 0, policy=POLICY, now_ms=now)


def accept(store: ShareGroupStore, offsets: list[int], now: int = 0, sync: bool = False) -> list[int]:
    assert store.member_id is not None
    mid = store.member_id
    return store.update(
        TP,
        lambda st: st.acknowledge(mid, offsets, "accept", now_ms=now, limit=3),
        start_offset=lambda: 0,
        policy=POLICY,
        now_ms=now,
        sync=sync,
    )


def test_two_stores_see_each_others_changes_and_never_acquire_the_same_record(root: str) -> None:
    with ShareGroupStore(root, "g") as a, ShareGroupStore(root, "g") as b:
        assert acquire(a, 0, 5, n=2) == [(0, 1), (1, 1)]
        assert acquire(b, 0, 5) == [(2, 1), (3, 1), (4, 1)]
        assert accept(a, [0, 1]) == []
        assert accept(b, [0]) == [0]  # not b's
        assert b.snapshot(TP).spso == 2  # type: ignore[union-attr]


def test_a_closed_member_gives_its_records_back_at_the_next_operation(root: str) -> None:
    with ShareGroupStore(root, "g") as b:
        a = ShareGroupStore(root, "g")
        acquire(a, 0, 3)
        a.close()
        assert acquire(b, 1, 3) == [(0, 2), (1, 2), (2, 2)]


def test_compaction_replaces_the_journal_and_other_stores_follow(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(share_journal, "COMPACT_MIN_BYTES", 2000)
    replaced = []
    real_replace = share_journal.Journal.replace

    def counting(self: share_journal.Journal, state: SharePartitionState) -> None:
        replaced.append(1)
        real_replace(self, state)

    monkeypatch.setattr(share_journal.Journal, "replace", counting)
    with ShareGroupStore(root, "g") as a, ShareGroupStore(root, "g") as b:
        _, path = partition_paths(a.gdir, TP)
        acquire(b, 0, 0)  # b holds the first journal open while a replaces it
        for i in range(300):
            acquire(a, 0, i + 1, n=1)
            accept(a, [i])
            assert os.path.getsize(path) < 4 * 2000
        assert len(replaced) > 2
        assert acquire(b, 0, 302) == [(300, 1), (301, 1)]
        assert b.snapshot(TP).totals == {"deliveries": 302, "acknowledged": 300}  # type: ignore[union-attr]


def test_damage_in_the_middle_raises_and_is_never_reset(root: str) -> None:
    with ShareGroupStore(root, "g") as a:
        acquire(a, 0, 3)
        accept(a, [0], sync=True)
        _, path = partition_paths(a.gdir, TP)
    data = bytearray(open(path, "rb").read())
    data[len(share_journal.MAGIC) + 9] ^= 1  # the snapshot frame's payload
    open(path, "wb").write(bytes(data))
    with ShareGroupStore(root, "g") as b:
        with pytest.raises(logq.ShareStateCorruptError, match="CRC"):
            acquire(b, 0, 3)
        with pytest.raises(logq.ShareStateCorruptError):
            acquire(b, 0, 3)  # still refused: nothing started over silently
    open(path, "wb").write(b"NOTLOGQ!" + bytes(data[8:]))
    with ShareGroupStore(root, "g") as b, pytest.raises(logq.ShareStateCorruptError, match="magic"):
        acquire(b, 0, 3)


def test_reset_is_refused_while_members_live(root: str) -> None:
    with ShareGroupStore(root, "g") as a:
        acquire(a, 0, 3)
        with pytest.raises(logq.GroupNotEmptyError):
            reset_share_start(root, "g", [TP], 0)
    assert reset_share_start(root, "g", [TP], 1) == ["jobs-0: start offset 1"]
    with ShareGroupStore(root, "g") as b:
        assert acquire(b, 0, 3) == [(1, 1), (2, 1)]
    with pytest.raises(logq.ConfigError):
        reset_share_start(root, "g", [TP], -1)


def test_describe_and_list(root: str) -> None:
    assert list_share_groups(root) == []
    with pytest.raises(logq.UnknownGroupError):
        describe_share_group(root, "g")
    with ShareGroupStore(root, "g") as a:
        acquire(a, 0, 4)
        accept(a, [1])
        info = describe_share_group(root, "g", now_ms=5000)
        assert list_share_groups(root) == ["g"]
        assert info.members == [a.member_id]
        (p,) = info.partitions
        assert (p.start_offset, p.end_offset) == (0, 4)
        assert p.states == {"acquired": 3, "acknowledged": 1}
        assert p.delivery_counts == {1: 4}
        assert p.oldest_acquired == (0, a.member_id, 1000)
        assert (p.expired_locks, p.dead_holders) == (3, 0)


def test_one_process_can_host_several_members_and_remove_one(root: str) -> None:
    with ShareGroupStore(root, "g", join=False) as host, ShareGroupStore(root, "g") as other:
        host.add_member("net-1")
        host.add_member("net-2")

        def take(member: str, n: int) -> list[tuple[int, int]]:
            return host.update(
                TP,
                lambda st: st.acquire(member, 0, [Candidate(o) for o in range(st.end, 4)], n, lock_ms=1000, limit=3),
                start_offset=lambda: 0,
                policy=POLICY,
                now_ms=0,
            )

        assert take("net-1", 2) == [(0, 1), (1, 1)]
        assert take("net-2", 2) == [(2, 1), (3, 1)]
        assert acquire(other, 1, 4) == []  # both hosted members are alive
        host.remove_member("net-1")
        assert acquire(other, 1, 4) == [(0, 2), (1, 2)]
        with pytest.raises(logq.InvalidGroupIdError):
            host.add_member("../x")


def test_delete_refuses_live_members_then_removes_the_state(root: str) -> None:
    with pytest.raises(logq.UnknownGroupError, match="share group 'g'"):
        delete_share_group(root, "g")
    with ShareGroupStore(root, "g") as a:
        acquire(a, 0, 3)
        with pytest.raises(logq.GroupNotEmptyError):
            delete_share_group(root, "g")
    delete_share_group(root, "g")
    assert list_share_groups(root) == []
    with ShareGroupStore(root, "g") as b:
        assert acquire(b, 0, 3) == [(0, 1), (1, 1), (2, 1)]  # started over


def test_damage_after_the_last_fdatasync_is_a_torn_tail_and_before_it_an_error(
    root: str, caplog: pytest.LogCaptureFixture
) -> None:
    with ShareGroupStore(root, "g") as a:
        acquire(a, 0, 2, n=2)
        accept(a, [0], sync=True)  # durable up to here
        _, path = partition_paths(a.gdir, TP)
        durable = os.path.getsize(path)
        acquire(a, 0, 6, n=2)  # three frames that were never synced
        accept(a, [1])
        acquire(a, 0, 6, n=2)
    data = bytearray(open(path, "rb").read())
    assert len(data) > durable + 40
    data[durable + 20] ^= 0xFF  # a lost page in the middle of the unsynced frames (power cut)
    open(path, "wb").write(bytes(data))
    with ShareGroupStore(root, "g") as b:
        # the state as of the last commit: 0 accepted, 1 acquired by a (gone), 2.. never delivered
        assert acquire(b, 0, 6) == [(1, 2), (2, 1), (3, 1), (4, 1), (5, 1)]
    assert "after the last durable point" in caplog.text
    assert os.path.getsize(path) > durable  # cut at the damage, then written on
