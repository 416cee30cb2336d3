"""The share-partition rules of logq/groups/share_state.py, alone and against a simple model.

The model keeps one entry per log offset forever and recomputes the start offset from scratch;
the real state keeps only the in-flight window and replays from journal runs. Hypothesis drives
both with the same operations (acquire, accept, release with delay, reject, renew, member
death, time passing) and compares everything a caller can see, after each step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from logq.groups.share_state import (
    ACKNOWLEDGED,
    ACQUIRED,
    ARCHIVED,
    ARCHIVING,
    AVAILABLE,
    Candidate,
    SharePartitionState,
    backoff_fn,
    from_runs,
    to_runs,
)

LOCK = 100
LIMIT = 3


def cands(state: SharePartitionState, upto: int, **times: int) -> list[Candidate]:
    return [Candidate(o, times.get("available_at_ms", 0), times.get("expire_at_ms", 0)) for o in range(state.end, upto)]


def acquire(st_: SharePartitionState, member: str, now: int, upto: int = 10, n: int = 100, cap: int = 2000):
    return st_.acquire(member, now, cands(st_, upto), n, lock_ms=LOCK, limit=LIMIT, max_in_flight=cap)


def test_acquisition_locks_records_to_one_member_and_counts_the_delivery() -> None:
    s = SharePartitionState(0)
    assert acquire(s, "a", 0, upto=3) == [(0, 1), (1, 1), (2, 1)]
    assert acquire(s, "b", 50, upto=3) == []  # a's locks run until 100
    assert s.held_by("a") == [0, 1, 2]


def test_an_expired_lock_returns_the_record_with_its_count_kept() -> None:
    s = SharePartitionState(0)
    acquire(s, "a", 0, upto=1)
    assert acquire(s, "b", LOCK, upto=1) == [(0, 2)]  # the lock ends at its deadline


def test_a_dead_member_returns_its_records_and_the_crash_counts_as_a_delivery() -> None:
    s = SharePartitionState(0)
    acquire(s, "a", 0, upto=2)
    assert s.member_gone("a", LIMIT) == [0, 1]
    assert acquire(s, "b", 1, upto=2) == [(0, 2), (1, 2)]


def test_reaching_the_delivery_limit_on_lock_expiry_archives_the_record() -> None:
    s = SharePartitionState(0)
    now = 0
    for n in range(1, LIMIT + 1):
        assert acquire(s, "a", now, upto=1) == [(0, n)]
        now += LOCK
    s.expire(now, LIMIT)
    ch = s.take_changes()
    assert [(a.offset, a.reason, a.delivery_count) for a in ch.archived] == [(0, "delivery_limit", LIMIT)]
    assert s.spso == 1 and s.records == {}


def test_release_at_the_limit_archives_and_below_it_delays_redelivery() -> None:
    s = SharePartitionState(0)
    acquire(s, "a", 0, upto=1)
    assert s.acknowledge("a", [0], "release", now_ms=10, limit=LIMIT, delay_ms=500) == []
    assert acquire(s, "a", 509, upto=1) == []
    assert acquire(s, "a", 510, upto=1) == [(0, 2)]
    s.acknowledge("a", [0], "release", now_ms=511, limit=LIMIT)
    acquire(s, "a", 511, upto=1)
    s.take_changes()
    s.acknowledge("a", [0], "release", now_ms=512, limit=LIMIT)
    assert [a.reason for a in s.take_changes().archived] == ["delivery_limit"]


def test_accept_and_reject_finish_records_and_the_start_advances_over_them() -> None:
    s = SharePartitionState(5)
    acquire(s, "a", 0, upto=9)
    assert s.acknowledge("a", [6, 7], "accept", now_ms=1, limit=LIMIT) == []
    assert s.spso == 5  # 5 is still acquired
    assert s.acknowledge("a", [5], "reject", now_ms=1, limit=LIMIT) == []
    assert s.spso == 8 and s.end == 9
    assert [a.reason for a in s.take_changes().archived] == ["rejected"]


def test_acknowledging_a_record_one_does_not_hold_changes_nothing() -> None:
    s = SharePartitionState(0)
    acquire(s, "a", 0, upto=2)
    assert s.acknowledge("b", [0, 1, 7], "accept", now_ms=1, limit=LIMIT) == [0, 1, 7]
    acquire(s, "b", LOCK, upto=2)  # a's locks expired: b holds them now
    assert s.acknowledge("a", [0], "accept", now_ms=LOCK, limit=LIMIT) == [0]
    assert s.held_by("b") == [0, 1]


def test_renew_extends_a_lock_but_not_one_already_expired() -> None:
    s = SharePartitionState(0)
    acquire(s, "a", 0, upto=2)
    assert s.renew("a", [0], now_ms=90, lock_ms=LOCK) == []
    assert acquire(s, "b", 150, upto=2) == [(1, 2)]  # 0 renewed until 190, 1 expired at 100
    assert s.renew("a", [1], now_ms=150, lock_ms=LOCK) == [1]


def test_the_window_never_holds_more_than_max_in_flight_offsets() -> None:
    s = SharePartitionState(0)
    assert len(acquire(s, "a", 0, upto=50, cap=10)) == 10
    assert s.end == 10 and acquire(s, "b", 0, upto=50, cap=10) == []
    s.acknowledge("a", [0, 1, 2], "accept", now_ms=0, limit=LIMIT)
    assert [o for o, _ in acquire(s, "b", 0, upto=50, cap=10)] == [10, 11, 12]


def test_delayed_and_expired_candidates() -> None:
    s = SharePartitionState(0)
    got = s.acquire("a", 0, [Candidate(0, 1000), Candidate(1, 0, 5), Candidate(2)], 10, lock_ms=LOCK, limit=LIMIT)
    assert got == [(1, 1), (2, 1)]
    assert s.next_deadline_ms(0) == LOCK
    s.acknowledge("a", [1, 2], "accept", now_ms=1, limit=LIMIT)
    assert s.next_deadline_ms(1) == 1000
    assert s.acquire("a", 999, [], 10, lock_ms=LOCK, limit=LIMIT) == []
    assert s.acquire("a", 1000, [], 10, lock_ms=LOCK, limit=LIMIT) == [(0, 1)]
    s2 = SharePartitionState(0)
    assert s2.acquire("a", 10, [Candidate(0, 0, 5)], 10, lock_ms=LOCK, limit=LIMIT) == []
    assert [(a.offset, a.reason, a.delivery_count) for a in s2.take_changes().archived] == [(0, "expired", 0)]


def test_move_start_drops_the_window_below_it() -> None:
    s = SharePartitionState(0)
    acquire(s, "a", 0, upto=5)
    s.move_start(3)
    assert s.spso == 3 and sorted(s.records) == [3, 4]
    s.move_start(20)
    assert s.spso == s.end == 20 and s.records == {}


def test_runs_compress_equal_neighbours_and_round_trip() -> None:
    s = SharePartitionState(0)
    acquire(s, "a", 0, upto=1000, n=1000)
    s.acknowledge("a", [500], "accept", now_ms=0, limit=LIMIT)
    runs = to_runs(s.records)
    assert len(runs) == 3
    assert from_runs(runs) == s.records


def test_a_broken_invariant_is_caught() -> None:
    with pytest.raises(AssertionError):
        SharePartitionState(3, 2)
    s = SharePartitionState(0)
    acquire(s, "a", 0, upto=2)
    s.records[0].member = ""
    with pytest.raises(AssertionError):
        s.check()


def test_a_deferred_archive_is_an_intent_that_only_ends_archived_with_its_reason_and_count() -> None:
    s = SharePartitionState(0)
    s.defer_archives = True
    acquire(s, "a", 0, upto=2)
    s.acknowledge("a", [0], "reject", now_ms=1, limit=LIMIT)
    assert s.records[0].state == ARCHIVING and s.records[0].reason == "rejected" and s.records[0].member == ""
    assert s.spso == 0  # not finished: the start waits for the archive
    assert s.archiving() == [(0, "rejected", 1)]
    # never handed out, acknowledged, released or renewed again, whatever time passes
    assert s.acknowledge("a", [0], "accept", now_ms=2, limit=LIMIT) == [0]
    assert s.renew("a", [0], now_ms=2, lock_ms=LOCK) == [0]
    assert s.member_gone("a", LIMIT, 5) == [1]
    assert acquire(s, "b", 10 * LOCK, upto=2) == [(1, 2)]
    assert s.records[0].state == ARCHIVING and s.totals["rejected"] == 1
    assert s.finish_archives() == [0]
    assert s.spso == 1 and s.archiving() == [] and s.totals["rejected"] == 1  # counted once
    assert s.finish_archives() == []


def test_archiving_entries_round_trip_through_runs_and_replay() -> None:
    s = SharePartitionState(0)
    s.defer_archives = True
    acquire(s, "a", 0, upto=3)
    s.acknowledge("a", [0, 1], "reject", now_ms=1, limit=LIMIT)
    replayed = SharePartitionState(0)
    replayed.apply_runs(s.spso, s.end, s.runs(), full=True, totals=s.totals)
    assert replayed.records == s.records and replayed.archiving() == s.archiving()
    s.take_changes()
    s.finish_archives()
    replayed.apply_runs(s.spso, s.end, s.runs(s.take_changes().touched), full=False, totals=s.totals)
    assert (replayed.spso, replayed.records) == (2, s.records)


def test_an_archiving_entry_without_its_reason_breaks_the_rules() -> None:
    with pytest.raises(AssertionError):
        SharePartitionState(0, 1, from_runs([[0, 0, ARCHIVING, 2, "", 0, 0, 0, ""]]))
    with pytest.raises(AssertionError):
        SharePartitionState(0, 1, from_runs([[0, 0, ARCHIVING, 2, "a", 5, 0, 0, "rejected"]]))


# ----------------------------------------------------------------------------- model


@dataclass
class M:
    state: int = AVAILABLE
    count: int = 0
    member: str = ""
    deadline: int = 0
    avail: int = 0


class Model:
    """Every offset forever; the start recomputed each time."""

    def __init__(self, log_end: int, cap: int, defer: bool = False) -> None:
        self.r = {o: M() for o in range(log_end)}
        self.end = 0
        self.cap = cap
        # deferred archives pass through ARCHIVING (unfinished) until archives_complete()
        self.archive_to = ARCHIVING if defer else ARCHIVED

    def archives_complete(self) -> None:
        for m in self.r.values():
            if m.state == ARCHIVING:
                m.state = ARCHIVED

    def spso(self) -> int:
        o = 0
        while o < self.end and self.r[o].state in (ACKNOWLEDGED, ARCHIVED):
            o += 1
        return o

    def free(self, m: M, avail: int = 0) -> None:
        if m.count >= LIMIT:
            m.state, m.member, m.deadline = self.archive_to, "", 0
        else:
            m.state, m.member, m.deadline, m.avail = AVAILABLE, "", 0, avail

    def expire(self, now: int) -> None:
        for m in self.r.values():
            if m.state == ACQUIRED and m.deadline <= now:
                self.free(m)

    def acquire(self, member: str, now: int, n: int) -> list[tuple[int, int]]:
        self.expire(now)
        out = []
        for o in range(self.end):
            m = self.r[o]
            if len(out) < n and m.state == AVAILABLE and m.avail <= now:
                m.state, m.count, m.member, m.deadline = ACQUIRED, m.count + 1, member, now + LOCK
                out.append((o, m.count))
        while len(out) < n and self.end < len(self.r) and self.end - self.spso() < self.cap:
            m = self.r[self.end]
            m.state, m.count, m.member, m.deadline = ACQUIRED, 1, member, now + LOCK
            out.append((self.end, 1))
            self.end += 1
        return out


class ShareMachine(RuleBasedStateMachine):
    LOG_END = 12
    DEFER = False  # archives pass through ARCHIVING (the store's crash-consistent path)

    def __init__(self) -> None:
        super().__init__()
        self.s = SharePartitionState(0)
        self.s.defer_archives = self.DEFER
        self.replayed = SharePartitionState(0)
        self.model = Model(self.LOG_END, cap=5, defer=self.DEFER)
        self.now = 0
        self.delivered: dict[str, set[int]] = {"a": set(), "b": set(), "c": set()}

    def replay(self) -> None:
        ch = self.s.take_changes()
        self.replayed.apply_runs(self.s.spso, self.s.end, self.s.runs(ch.touched), full=False, totals=self.s.totals)

    @rule(member=st.sampled_from("abc"), n=st.integers(0, 4))
    def acquire(self, member: str, n: int) -> None:
        live_held = {
            o for o, m in self.model.r.items() if m.state == ACQUIRED and m.member != member and m.deadline > self.now
        }
        got = self.s.acquire(
            member, self.now, cands(self.s, self.LOG_END), n, lock_ms=LOCK, limit=LIMIT, max_in_flight=5
        )
        assert got == self.model.acquire(member, self.now, n)
        assert not {o for o, _ in got} & live_held  # never a record another member holds
        self.delivered[member] |= {o for o, _ in got}
        self.replay()

    @rule(
        member=st.sampled_from("abc"),
        kind=st.sampled_from(["accept", "release", "reject"]),
        delay=st.integers(0, 300),
        data=st.data(),
    )
    def ack(self, member: str, kind: str, delay: int, data: st.DataObject) -> None:
        offs = data.draw(st.lists(st.integers(0, self.LOG_END - 1), max_size=3, unique=True))
        self.model.expire(self.now)
        self.s.expire(self.now, LIMIT)
        lost = self.s.acknowledge(member, offs, kind, now_ms=self.now, limit=LIMIT, delay_ms=delay)
        want_lost = []
        for o in offs:
            m = self.model.r[o]
            if m.state != ACQUIRED or m.member != member:
                want_lost.append(o)
            elif kind == "accept":
                m.state, m.member, m.deadline = ACKNOWLEDGED, "", 0
            elif kind == "reject":
                m.state, m.member, m.deadline = self.model.archive_to, "", 0
            else:
                self.model.free(m, self.now + delay if delay else 0)
        assert lost == want_lost
        self.replay()

    @rule(member=st.sampled_from("abc"), data=st.data())
    def gives_back(self, member: str, data: st.DataObject) -> None:
        offs = data.draw(st.lists(st.integers(0, self.LOG_END - 1), max_size=3, unique=True))
        self.model.expire(self.now)
        self.s.expire(self.now, LIMIT)
        lost = self.s.give_back(member, offs)
        for o in offs:
            m = self.model.r[o]
            if m.state == ACQUIRED and m.member == member:
                m.state, m.member, m.deadline, m.avail, m.count = AVAILABLE, "", 0, 0, m.count - 1
            else:
                assert o in lost
        self.replay()

    @rule(member=st.sampled_from("abc"))
    def renew(self, member: str) -> None:
        offs = sorted(self.delivered[member])
        lost = self.s.renew(member, offs, now_ms=self.now, lock_ms=LOCK)
        for o in offs:
            m = self.model.r[o]
            if m.state == ACQUIRED and m.member == member and m.deadline > self.now:
                m.deadline = self.now + LOCK
            else:
                assert o in lost
        self.replay()

    @rule(member=st.sampled_from("abc"))
    def dies(self, member: str) -> None:
        self.s.member_gone(member, LIMIT)
        for m in self.model.r.values():
            if m.state == ACQUIRED and m.member == member:
                self.model.free(m)
        self.delivered[member] = set()
        self.replay()

    @rule(ms=st.sampled_from([1, 50, 100, 250]))
    def time_passes(self, ms: int) -> None:
        self.now += ms

    @rule()
    def archives_complete(self) -> None:
        """The store's last step (or a later operation's recovery after a crash): whatever
        happened in between, the intents end ARCHIVED with their reason and count."""
        before = [a.offset for a in self.s.archiving()]
        assert sorted(self.s.finish_archives()) == before
        self.model.archives_complete()
        self.replay()

    @precondition(lambda self: True)
    @invariant()
    def same_as_model(self) -> None:
        self.s.check()
        assert self.s.spso == self.model.spso()
        assert self.s.end == self.model.end
        for o, r in self.s.records.items():
            m = self.model.r[o]
            assert (r.state, r.count, r.member) == (m.state, m.count, m.member), o
            assert r.count <= LIMIT
        assert self.replayed.spso == self.s.spso and self.replayed.records == self.s.records
        finished = [m for m in self.model.r.values() if m.state in (ACKNOWLEDGED, ARCHIVED, ARCHIVING)]
        t = self.s.totals
        assert t.get("acknowledged", 0) == sum(m.state == ACKNOWLEDGED for m in finished)
        archived = sum(m.state in (ARCHIVED, ARCHIVING) for m in finished)  # counted at the intent
        assert t.get("rejected", 0) + t.get("delivery_limit", 0) == archived
        assert t.get("deliveries", 0) == sum(m.count for m in self.model.r.values())


ShareMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_share_state_matches_the_model = ShareMachine.TestCase


class DeferredShareMachine(ShareMachine):
    DEFER = True


DeferredShareMachine.TestCase.settings = ShareMachine.TestCase.settings
test_share_state_with_archive_intents_matches_the_model = DeferredShareMachine.TestCase


def test_backoff_delays_redelivery_after_expiry_and_death() -> None:
    exp = backoff_fn(100, "exponential", 250)
    assert exp is not None and [exp(c) for c in (1, 2, 3, 4)] == [100, 200, 250, 250]
    assert backoff_fn(0) is None
    fixed = backoff_fn(50)
    assert fixed is not None and [fixed(c) for c in (1, 5)] == [50, 50]
    s = SharePartitionState(0)
    acquire(s, "a", 0, upto=2)
    s.expire(LOCK, LIMIT, exp)  # delivered once: 100 ms
    assert acquire(s, "b", LOCK + 99, upto=2) == []
    assert acquire(s, "b", LOCK + 100, upto=2) == [(0, 2), (1, 2)]
    s.member_gone("b", LIMIT, LOCK + 150, exp)  # delivered twice: 200 ms
    assert acquire(s, "c", LOCK + 349, upto=2) == []
    assert acquire(s, "c", LOCK + 350, upto=2) == [(0, 3), (1, 3)]


# ----------------------------------------------------------------------------- exhaustive

OPS = (
    [("acquire", m, n) for m in "ab" for n in (1, 2)]
    + [("ack", m, o, k) for m in "ab" for o in (0, 1) for k in ("accept", "release", "reject")]
    + [("tick",), ("die", "a"), ("die", "b"), ("archives_complete",)]
)


def step(s: SharePartitionState, model: Model, now: int, op: tuple) -> int:
    """Apply ``op`` to both and compare what a caller sees; returns the new time."""
    if op[0] == "acquire":
        got = s.acquire(op[1], now, cands(s, 2), op[2], lock_ms=LOCK, limit=LIMIT, max_in_flight=5)
        assert got == model.acquire(op[1], now, op[2])
    elif op[0] == "ack":
        _, member, off, kind = op
        model.expire(now)
        s.expire(now, LIMIT)
        lost = s.acknowledge(member, [off], kind, now_ms=now, limit=LIMIT)
        m = model.r[off]
        if m.state != ACQUIRED or m.member != member:
            assert lost == [off]
        else:
            assert lost == []
            if kind == "release":
                model.free(m)
            else:
                m.state, m.member, m.deadline = (ACKNOWLEDGED if kind == "accept" else model.archive_to), "", 0
    elif op[0] == "archives_complete":
        s.finish_archives()
        model.archives_complete()
    elif op[0] == "tick":
        return now + LOCK // 2  # two ticks end a lock
    else:
        s.member_gone(op[1], LIMIT)
        for m in model.r.values():
            if m.state == ACQUIRED and m.member == op[1]:
                model.free(m)
    return now


def clone(s: SharePartitionState, model: Model) -> tuple[SharePartitionState, Model]:
    s2 = SharePartitionState(s.spso, s.end, {o: replace(r) for o, r in s.records.items()})
    s2.defer_archives = s.defer_archives
    m2 = Model(0, model.cap)
    m2.archive_to = model.archive_to
    m2.r = {o: replace(m) for o, m in model.r.items()}
    m2.end = model.end
    return s2, m2


def test_every_sequence_of_four_operations_on_two_records_matches_the_model_with_archive_intents() -> None:
    def dfs(s: SharePartitionState, model: Model, now: int, depth: int) -> int:
        s.check()
        assert (s.spso, s.end) == (model.spso(), model.end)
        for o, r in s.records.items():
            assert (r.state, r.count, r.member) == (model.r[o].state, model.r[o].count, model.r[o].member)
        held = [(o, r.member) for o, r in s.records.items() if r.state == ACQUIRED]
        assert len({o for o, _ in held}) == len(held)  # one holder per record
        if depth == 0:
            return 1
        n = 0
        for op in OPS:
            s2, m2 = clone(s, model)
            n += dfs(s2, m2, step(s2, m2, now, op), depth - 1)
        return n

    start = SharePartitionState(0)
    start.defer_archives = True  # archives pass through ARCHIVING, completed by an operation
    assert dfs(start, Model(2, cap=5, defer=True), 0, 4) == len(OPS) ** 4
