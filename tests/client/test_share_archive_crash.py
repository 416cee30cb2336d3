"""Crash-consistent archives: a consumer killed with kill -9 between journaling an archive intent
(ARCHIVING), writing its dead letter and journaling the archive never gets the record delivered
again; the next operation of any member writes the letter (again) and archives it.

Children are real processes (spawn) that stop themselves with SIGKILL at a named crash point
(``LOGQ_CRASH_AT``, logq/storage/files.py): "share.archive.intent" (intent journaled, no letter
yet) and "share.archive.lettered" (letter written and flushed, archive not journaled).
"""

from __future__ import annotations

import multiprocessing
import signal
from pathlib import Path

import logq
import pytest
from logq.groups.share_state import ARCHIVING, Archived, Candidate
from logq.groups.share_store import ShareGroupStore, SharePolicy, describe_share_group

CTX = multiprocessing.get_context("spawn")


def rejecter(root: str, group: str) -> None:
    """Poll one record, reject it, commit (the crash point kills this process on the way)."""
    with logq.ShareConsumer(
        root,
        ["jobs"],
        group_id=group,
        auto_offset_reset="earliest",
        acknowledgement_mode="explicit",
        dead_letter_topic="dlq",
        delivery_count_limit=5,
    ) as sc:
        recs = sc.poll(timeout=5.0, max_records=1)
        assert [r.offset for r in recs] == [0]
        sc.acknowledge(recs[0], "reject")
        sc.commit()


def letters(root: str) -> list[tuple[bytes, bytes, bytes, bytes | None]]:
    """(source offset, reason, delivery count, value) of every dead letter."""
    out = []
    with logq.Consumer(root, "dlq", auto_offset_reset="earliest") as c:
        while batch := c.poll(0.5):
            for r in batch:
                h = dict(r.headers)
                out.append(
                    (h["__dlq.errors.offset"], h["__dlq.errors.reason"], h["__dlq.errors.delivery_count"], r.value)
                )
    return out


def setup(root: str) -> None:
    with logq.Admin(root) as a:
        a.create_topic("jobs")
        a.create_topic("dlq")
    with logq.Producer(root) as p:
        for i in range(3):
            p.send("jobs", b"job-%d" % i)


def crash_rejecter(root: str, site: str, monkeypatch: pytest.MonkeyPatch, group: str = "g") -> None:
    monkeypatch.setenv("LOGQ_CRASH_AT", site)
    proc = CTX.Process(target=rejecter, args=(root, group), daemon=True)
    proc.start()
    proc.join(120)
    monkeypatch.delenv("LOGQ_CRASH_AT")
    assert proc.exitcode == -signal.SIGKILL


@pytest.mark.parametrize(("site", "letters_before"), [("share.archive.intent", 0), ("share.archive.lettered", 1)])
def test_a_rejecter_killed_mid_archive_leaves_a_record_that_is_archived_never_redelivered(
    root: str, site: str, letters_before: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup(root)
    crash_rejecter(root, site, monkeypatch)
    letter = (b"0", b"rejected", b"1", b"job-0")
    assert letters(root) == [letter] * letters_before
    pending = describe_share_group(root, "g").partitions[0]
    assert pending.states.get("archiving") == 1 and pending.totals["rejected"] == 1
    with logq.ShareConsumer(
        root, ["jobs"], group_id="g", auto_offset_reset="earliest", dead_letter_topic="dlq", max_poll_records=10
    ) as sc:
        # the next operation completes the archive first: offset 0 is never handed out again
        assert sorted(r.offset for r in sc.poll(timeout=0)) == [1, 2]
        sc.commit()
    # the letter stands for a record that ended archived with that reason and count; a crash
    # after the letter leaves two identical letters (at least once), never none
    assert letters(root) == [letter] * (letters_before + 1)
    info = describe_share_group(root, "g").partitions[0]
    assert info.states.get("archiving") is None
    assert info.totals["rejected"] == 1 and info.totals["acknowledged"] == 2 and info.start_offset == 3


def test_a_recovering_member_killed_while_rewriting_the_letter_leaves_the_archive_to_the_next(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup(root)
    crash_rejecter(root, "share.archive.intent", monkeypatch)
    # the second member dies right after writing the letter of the first one's intent
    crash_rejecter(root, "share.archive.lettered", monkeypatch)
    with logq.ShareConsumer(root, ["jobs"], group_id="g", auto_offset_reset="earliest", dead_letter_topic="dlq") as sc:
        offsets = sorted(r.offset for r in sc.poll(timeout=0))
    letters_now = letters(root)
    assert 0 not in offsets
    assert letters_now and set(letters_now) == {(b"0", b"rejected", b"1", b"job-0")}
    assert describe_share_group(root, "g").partitions[0].totals["rejected"] == 1


def test_a_failing_dead_letter_write_keeps_the_intent_and_the_next_operation_retries_it(root: str) -> None:
    setup(root)
    policy = SharePolicy(lock_ms=60_000, delivery_count_limit=5)
    calls: list[list[Archived]] = []

    def broken(tp: tuple[str, int], archived: list[Archived]) -> None:
        calls.append(archived)
        raise logq.LogqError("the dead-letter topic is not writable")

    with ShareGroupStore(root, "g") as store:
        tp, me = ("jobs", 0), store.member_id
        assert me is not None

        def update(change, on_archive):  # type: ignore[no-untyped-def]
            return store.update(tp, change, start_offset=lambda: 0, policy=policy, now_ms=1, on_archive=on_archive)

        assert update(lambda s: s.acquire(me, 1, [Candidate(0)], 1, lock_ms=60_000, limit=5), None) == [(0, 1)]
        with pytest.raises(logq.LogqError, match="not writable"):
            update(lambda s: s.acknowledge(me, [0], "reject", now_ms=1, limit=5), broken)
        snap = store.snapshot(tp)
        assert snap is not None and snap.records[0].state == ARCHIVING  # the intent survived
        # no member can take it back; the next operation writes the letter and archives it
        assert update(lambda s: s.acquire(me, 1, [], 1, lock_ms=60_000, limit=5), lambda tp, a: calls.append(a)) == []
        assert calls[-1] == [Archived(0, "rejected", 1)]
        snap = store.snapshot(tp)
        assert snap is not None and snap.spso == 1 and snap.totals["rejected"] == 1


def test_a_journal_holding_an_archiving_record_reopens_with_it_pending(root: str, tmp_path: Path) -> None:
    setup(root)
    policy = SharePolicy(lock_ms=60_000, delivery_count_limit=5)

    def stop(tp: tuple[str, int], archived: list[Archived]) -> None:
        raise logq.LogqError("stop before the letter")

    with ShareGroupStore(root, "g") as store:
        me = store.member_id
        assert me is not None
        store.update(
            ("jobs", 0),
            lambda s: s.acquire(me, 1, [Candidate(0)], 1, lock_ms=60_000, limit=5),
            start_offset=lambda: 0,
            policy=policy,
            now_ms=1,
        )
        with pytest.raises(logq.LogqError):
            store.update(
                ("jobs", 0),
                lambda s: s.acknowledge(me, [0], "reject", now_ms=1, limit=5),
                start_offset=lambda: 0,
                policy=policy,
                now_ms=1,
                on_archive=stop,
            )
    with ShareGroupStore(root, "g", join=False) as other:
        snap = other.snapshot(("jobs", 0))
        assert snap is not None and snap.archiving() == [Archived(0, "rejected", 1)]
