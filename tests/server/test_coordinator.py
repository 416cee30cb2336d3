"""The sans-IO group coordinator (logq/server/coordinator.py) as a pure state machine.

Time is a number the test moves; no sleeps. The simulated clients at the end follow what
kafka-python, aiokafka and librdkafka do with each error code, and every order of joins,
leaves and kills of 1-3 members must settle into one Stable generation of the live ones.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from logq.server import coordinator as c
from logq.server.coordinator import Coordinator, JoinResult, SyncResult

G = "g"
RANGE = ("range", b"r-meta")
RR = ("roundrobin", b"rr-meta")


def make() -> Coordinator:
    ids = itertools.count(1)
    return Coordinator(new_id=lambda: f"id{next(ids)}")


class Box:
    """Collects the answers of long-polled calls."""

    def __init__(self) -> None:
        self.got: list[Any] = []

    def __call__(self, result: Any) -> None:
        self.got.append(result)

    @property
    def last(self) -> Any:
        assert self.got, "no answer yet"
        return self.got[-1]


def join(
    co: Coordinator,
    member_id: str = "",
    now: int = 0,
    *,
    protocols: tuple[tuple[str, bytes], ...] = (RANGE,),
    session: int = 1000,
    rebalance: int = 5000,
    v4: bool = False,
    instance: str | None = None,
    ptype: str = "consumer",
) -> Box:
    box = Box()
    co.join(
        G,
        member_id,
        instance_id=instance,
        client_id="cli",
        client_host="/127.0.0.1",
        session_timeout_ms=session,
        rebalance_timeout_ms=rebalance,
        protocol_type=ptype,
        protocols=protocols,
        require_known_member_id=v4,
        now_ms=now,
        reply=box,
    )
    return box


def sync(co: Coordinator, member_id: str, gen: int, now: int = 0, assignments: dict[str, bytes] | None = None) -> Box:
    box = Box()
    co.sync(G, member_id, gen, instance_id=None, assignments=list((assignments or {}).items()), now_ms=now, reply=box)
    return box


def one_member(co: Coordinator) -> str:
    r = join(co).last
    assert r.error == c.NONE and r.generation == 1 and r.leader == r.member_id
    assert sync(co, r.member_id, 1, assignments={r.member_id: b"A"}).last == SyncResult(
        c.NONE, b"A", "consumer", "range"
    )
    return str(r.member_id)


def test_first_member_leads_generation_one_and_gets_its_assignment() -> None:
    co = make()
    mid = one_member(co)
    assert co.group(G).state == c.STABLE  # type: ignore[union-attr]
    assert co.heartbeat(G, mid, 1, instance_id=None, now_ms=10) == c.NONE


def test_join_v4_needs_the_member_id_round_trip() -> None:
    co = make()
    first = join(co, v4=True).last
    assert first.error == c.MEMBER_ID_REQUIRED and first.member_id == "cli-id1"
    again = join(co, first.member_id, v4=True).last
    assert (again.error, again.member_id, again.generation) == (c.NONE, "cli-id1", 1)


def test_handed_out_member_id_expires_after_the_session_timeout() -> None:
    co = make()
    mid = join(co, v4=True, session=1000).last.member_id
    assert co.next_deadline_ms() == 1000
    co.tick(1000)
    assert join(co, mid, now=1001, v4=True).last.error == c.UNKNOWN_MEMBER_ID


def test_second_member_triggers_rebalance_and_both_get_generation_two() -> None:
    co = make()
    a = one_member(co)
    b_box = join(co, now=5)
    assert not b_box.got  # waits for a to rejoin
    assert co.heartbeat(G, a, 1, instance_id=None, now_ms=6) == c.REBALANCE_IN_PROGRESS
    a_box = join(co, a, now=7)
    ra, rb = a_box.last, b_box.last
    assert ra.generation == rb.generation == 2 and ra.leader == rb.leader == a
    assert [m[0] for m in ra.members] == [a, rb.member_id] and rb.members == ()
    b_sync = sync(co, rb.member_id, 2, now=8)
    assert not b_sync.got  # waits for the leader
    assert co.heartbeat(G, rb.member_id, 2, instance_id=None, now_ms=8) == c.NONE  # CompletingRebalance
    a_sync = sync(co, a, 2, now=9, assignments={a: b"pa", rb.member_id: b"pb"})
    assert a_sync.last.assignment == b"pa" and b_sync.last.assignment == b"pb"


def test_protocol_chosen_is_one_every_member_supports() -> None:
    co = make()
    a = join(co, protocols=(RANGE, RR)).last.member_id
    sync(co, a, 1)
    b = join(co, now=1, protocols=(RR,))
    join(co, a, now=2, protocols=(RANGE, RR))
    assert b.last.protocol_name == "roundrobin"
    assert join(co, now=3, protocols=(("cooperative-sticky", b""),)).last.error == c.INCONSISTENT_GROUP_PROTOCOL
    assert join(co, now=3, protocols=(RR,), ptype="connect").last.error == c.INCONSISTENT_GROUP_PROTOCOL


def test_vote_picks_the_protocol_most_members_prefer() -> None:
    co = make()
    a = join(co, protocols=(RANGE, RR)).last.member_id
    sync(co, a, 1)
    b, d = join(co, now=1, protocols=(RR, RANGE)), join(co, now=1, protocols=(RR, RANGE))
    join(co, a, now=2, protocols=(RANGE, RR))
    assert b.last.protocol_name == d.last.protocol_name == "roundrobin"


def test_unknown_member_and_illegal_generation() -> None:
    co = make()
    assert co.heartbeat(G, "nobody", 1, instance_id=None, now_ms=0) == c.UNKNOWN_MEMBER_ID
    assert join(co, "nobody").last.error == c.UNKNOWN_MEMBER_ID
    a = one_member(co)
    assert co.heartbeat(G, "nobody", 1, instance_id=None, now_ms=0) == c.UNKNOWN_MEMBER_ID
    assert co.heartbeat(G, a, 0, instance_id=None, now_ms=0) == c.ILLEGAL_GENERATION
    assert sync(co, a, 7).last.error == c.ILLEGAL_GENERATION
    assert sync(co, "nobody", 1).last.error == c.UNKNOWN_MEMBER_ID
    assert co.check_commit(G, a, 0, instance_id=None, now_ms=0) == c.ILLEGAL_GENERATION
    assert co.check_commit(G, "nobody", 1, instance_id=None, now_ms=0) == c.UNKNOWN_MEMBER_ID
    assert co.check_commit(G, a, 1, instance_id=None, now_ms=0) == c.NONE


def test_admin_commit_only_while_the_group_is_empty() -> None:
    co = make()
    assert co.check_commit(G, "", -1, instance_id=None, now_ms=0) == c.NONE
    a = one_member(co)
    assert co.check_commit(G, "", -1, instance_id=None, now_ms=0) == c.UNKNOWN_MEMBER_ID
    co.leave(G, [(a, None)], now_ms=1)
    assert co.group(G).state == c.EMPTY  # type: ignore[union-attr]
    assert co.check_commit(G, "", -1, instance_id=None, now_ms=2) == c.NONE


def test_commit_refused_while_completing_rebalance() -> None:
    co = make()
    a = one_member(co)
    join(co, now=1)
    assert co.check_commit(G, a, 1, instance_id=None, now_ms=1) == c.NONE  # PreparingRebalance: revoke-commits work
    join(co, a, now=2)
    assert co.check_commit(G, a, 2, instance_id=None, now_ms=3) == c.REBALANCE_IN_PROGRESS


def test_session_timeout_removes_a_silent_member() -> None:
    co = make()
    a = one_member(co)
    b_box = join(co, now=0)
    join(co, a, now=0)
    b = b_box.last.member_id
    sync(co, b, 2)
    sync(co, a, 2, assignments={a: b"x", b: b"y"})
    co.heartbeat(G, a, 2, instance_id=None, now_ms=900)
    assert co.next_deadline_ms() == 1000  # b's session ends
    co.tick(1000)
    assert b not in co.group(G).members  # type: ignore[union-attr]
    assert co.heartbeat(G, a, 2, instance_id=None, now_ms=1001) == c.REBALANCE_IN_PROGRESS
    r = join(co, a, now=1002).last
    assert (r.generation, [m[0] for m in r.members]) == (3, [a])
    assert co.heartbeat(G, b, 2, instance_id=None, now_ms=1003) == c.UNKNOWN_MEMBER_ID


def test_rebalance_timeout_drops_members_that_do_not_rejoin() -> None:
    co = make()
    a = one_member(co)
    b_box = join(co, now=0)
    join(co, a, now=0)
    b = b_box.last.member_id
    sync(co, b, 2)
    sync(co, a, 2)
    c_box = join(co, now=100, rebalance=300)  # deadline: the largest rebalance timeout (5000)
    join(co, a, now=100)
    co.heartbeat(G, b, 2, instance_id=None, now_ms=200)  # b answers heartbeats but never rejoins
    for t in range(300, 5100, 300):
        co.heartbeat(G, b, 2, instance_id=None, now_ms=t)
        co.tick(t)
    assert not c_box.got
    co.tick(5100)
    assert c_box.last.generation == 3 and b not in co.group(G).members  # type: ignore[union-attr]


def test_leader_that_never_syncs_is_dropped_and_followers_rebalance() -> None:
    co = make()
    a = join(co, session=60_000, rebalance=3000).last.member_id
    sync(co, a, 1)
    b_box = join(co, now=0, session=60_000, rebalance=3000)
    join(co, a, now=0, session=60_000, rebalance=3000)
    b = b_box.last.member_id
    waiting = sync(co, b, 2, now=1)
    assert co.next_deadline_ms() == 3000  # the sync phase is bounded by the rebalance timeout
    co.tick(3000)
    assert waiting.last.error == c.REBALANCE_IN_PROGRESS
    assert list(co.group(G).members) == [b]  # type: ignore[union-attr]
    r = join(co, b, now=3001, session=60_000).last
    assert (r.generation, r.leader) == (3, b)


def test_leader_whose_session_ends_before_it_syncs_is_dropped() -> None:
    co = make()
    a = one_member(co)
    b_box = join(co, now=0)
    join(co, a, now=0)
    b = b_box.last.member_id
    waiting = sync(co, b, 2, now=1)
    co.tick(1000)  # a's session (1000 ms) ends; b waits on its sync, so it stays
    assert waiting.last.error == c.REBALANCE_IN_PROGRESS
    assert list(co.group(G).members) == [b]  # type: ignore[union-attr]


def test_leave_of_the_leader_moves_leadership() -> None:
    co = make()
    a = one_member(co)
    b_box = join(co)
    join(co, a)
    b = b_box.last.member_id
    sync(co, b, 2)
    sync(co, a, 2)
    out = co.leave(G, [(a, None), ("ghost", None)], now_ms=5)
    assert [o.error for o in out] == [c.NONE, c.UNKNOWN_MEMBER_ID]
    r = join(co, b, now=6).last
    assert (r.generation, r.leader, [m[0] for m in r.members]) == (3, b, [b])


def test_leave_while_others_wait_in_join_completes_the_rebalance() -> None:
    co = make()
    a = one_member(co)
    b_box = join(co, now=1)
    co.leave(G, [(a, None)], now_ms=2)
    assert b_box.last.generation == 2 and b_box.last.leader == b_box.last.member_id


def test_invalid_session_timeout_and_group_id() -> None:
    co = make()
    assert join(co, session=10).last.error == c.INVALID_SESSION_TIMEOUT
    box = Box()
    co.join(
        "",
        "",
        instance_id=None,
        client_id="x",
        client_host="h",
        session_timeout_ms=1000,
        rebalance_timeout_ms=1000,
        protocol_type="consumer",
        protocols=[RANGE],
        require_known_member_id=False,
        now_ms=0,
        reply=box,
    )
    assert box.last.error == c.INVALID_GROUP_ID


def test_unchanged_follower_join_in_stable_gets_the_current_generation_without_rebalance() -> None:
    co = make()
    a = one_member(co)
    b_box = join(co)
    join(co, a)
    b = b_box.last.member_id
    sync(co, b, 2)
    sync(co, a, 2, assignments={b: b"B"})
    again = join(co, b, now=3).last
    assert (again.error, again.generation) == (c.NONE, 2)
    assert co.group(G).state == c.STABLE  # type: ignore[union-attr]
    assert sync(co, b, 2).last.assignment == b"B"


def test_static_member_rejoining_fences_its_old_id() -> None:
    co = make()
    old = join(co, instance="i1", v4=True).last  # static members skip MEMBER_ID_REQUIRED
    assert old.error == c.NONE
    sync(co, old.member_id, 1)
    new = join(co, instance="i1", now=5).last
    assert new.error == c.NONE and new.member_id != old.member_id and new.generation == 2
    assert co.heartbeat(G, old.member_id, 1, instance_id="i1", now_ms=6) == c.FENCED_INSTANCE_ID
    assert co.leave(G, [("", "i1")], now_ms=7)[0].error == c.NONE
    assert co.group(G).state == c.EMPTY  # type: ignore[union-attr]


def test_retried_sync_and_join_answer_the_superseded_request() -> None:
    co = make()
    a = one_member(co)
    b_box = join(co)
    first = join(co, a)
    b = b_box.last.member_id
    s1 = sync(co, b, 2)
    s2 = sync(co, b, 2)
    assert s1.last.error == c.REBALANCE_IN_PROGRESS and not s2.got
    assert first.last.generation == 2


# ----------------------------------------------------------------------------- simulated clients


class Client:
    """A consumer that reacts to every answer the way the real clients do."""

    def __init__(self, co: Coordinator, name: str, v4: bool) -> None:
        self.co, self.name, self.v4 = co, name, v4
        self.member_id = ""
        self.generation = -1
        self.alive = True
        self.joining: Box | None = None
        self.syncing: Box | None = None
        self.assignment: bytes | None = None

    def step(self, now: int) -> None:
        if not self.alive:
            return
        if self.joining is not None:
            if not self.joining.got:
                return
            r: JoinResult = self.joining.last
            self.joining = None
            if r.error == c.MEMBER_ID_REQUIRED:
                self.member_id = r.member_id
                return self._join(now)
            if r.error != c.NONE:
                self.member_id = "" if r.error == c.UNKNOWN_MEMBER_ID else self.member_id
                return self._join(now)
            self.member_id, self.generation = r.member_id, r.generation
            plan = {m[0]: m[0].encode() for m in r.members}
            self.syncing = sync(self.co, self.member_id, r.generation, now, plan)
            return
        if self.syncing is not None:
            if not self.syncing.got:
                return
            s: SyncResult = self.syncing.last
            self.syncing = None
            if s.error != c.NONE:
                if s.error == c.UNKNOWN_MEMBER_ID:
                    self.member_id = ""
                return self._join(now)
            self.assignment = s.assignment
            return
        if self.assignment is None:
            return self._join(now)
        err = self.co.heartbeat(G, self.member_id, self.generation, instance_id=None, now_ms=now)
        if err != c.NONE:
            self.assignment = None
            if err == c.UNKNOWN_MEMBER_ID:
                self.member_id = ""
            self._join(now)

    def _join(self, now: int) -> None:
        self.assignment = None
        self.joining = join(self.co, self.member_id, now, v4=self.v4, session=1000, rebalance=3000)

    def leave(self, now: int) -> None:
        if self.member_id:
            self.co.leave(G, [(self.member_id, None)], now_ms=now)
        self.alive = False

    def kill(self) -> None:
        self.alive = False


def settle(co: Coordinator, clients: list[Client], now: int) -> int:
    for _ in range(400):
        for cl in clients:
            cl.step(now)
        co.tick(now)
        now += 50
        live = [cl for cl in clients if cl.alive]
        g = co.group(G)
        if (
            g is not None
            and all(cl.assignment is not None for cl in live)
            and set(g.members) == {cl.member_id for cl in live}
        ):
            if g.state == c.STABLE or (not live and g.state == c.EMPTY):
                return now
    raise AssertionError(f"did not settle: {co.group(G)}")


def check_settled(co: Coordinator, clients: list[Client], now: int) -> None:
    live = [cl for cl in clients if cl.alive]
    g = co.group(G)
    assert g is not None
    assert set(g.members) == {cl.member_id for cl in live}
    assert len({cl.member_id for cl in live}) == len(live)
    if live:
        assert g.state == c.STABLE and g.leader in g.members
        assert {cl.generation for cl in live} == {g.generation}
        assert all(cl.assignment == cl.member_id.encode() for cl in live)  # the leader's plan reached everyone
        for cl in live:  # commits: the current generation only
            assert co.check_commit(G, cl.member_id, cl.generation, instance_id=None, now_ms=now) == c.NONE
            assert (
                co.check_commit(G, cl.member_id, cl.generation - 1, instance_id=None, now_ms=now)
                == c.ILLEGAL_GENERATION
            )
    else:
        assert g.state == c.EMPTY and not g.members
    for cl in clients:  # stopped members are gone
        if not cl.alive and cl.member_id:
            assert co.heartbeat(G, cl.member_id, cl.generation, instance_id=None, now_ms=now) == c.UNKNOWN_MEMBER_ID


Op = tuple[str, int]
ops = st.lists(st.tuples(st.sampled_from(["start", "leave", "kill", "wait"]), st.integers(0, 2)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(ops, st.booleans())
def test_any_order_of_joins_leaves_and_kills_settles_to_one_stable_generation(script: list[Op], v4: bool) -> None:
    co = make()
    clients: list[Client] = []
    now = 0
    for op, i in script:
        if op == "start" and len(clients) < 3:
            clients.append(Client(co, f"c{len(clients)}", v4))
        elif op in ("leave", "kill") and i < len(clients) and clients[i].alive:
            if op == "leave":
                clients[i].leave(now)
            else:
                clients[i].kill()
        for cl in clients:
            cl.step(now)
        co.tick(now)
        now += 200 if op == "wait" else 10
    if clients:
        now = settle(co, clients, now)
        check_settled(co, clients, now)
        gen = co.group(G).generation  # type: ignore[union-attr]
        for _ in range(40):  # and then stays put: heartbeats keep everyone in, no rebalance
            now += 100
            for cl in clients:
                cl.step(now)
            co.tick(now)
        assert co.group(G).generation == gen  # type: ignore[union-attr]
        check_settled(co, clients, now)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("how", ["leave", "kill"])
def test_every_order_of_stopping_members_leaves_the_rest_stable(n: int, how: str) -> None:
    for order in itertools.permutations(range(n)):
        co = make()
        clients = [Client(co, f"c{i}", True) for i in range(n)]
        now = settle(co, clients, 0)
        for i in order:
            (clients[i].leave(now) if how == "leave" else clients[i].kill())
            now = settle(co, clients, now)
            check_settled(co, clients, now)
        assert co.group(G).state == c.EMPTY  # type: ignore[union-attr]


def test_a_group_is_bounded_by_max_group_members() -> None:
    ids = itertools.count(1)
    co = Coordinator(max_group_members=3, new_id=lambda: f"id{next(ids)}")
    handed = [join(co, v4=True).last for _ in range(3)]
    assert [r.error for r in handed] == [c.MEMBER_ID_REQUIRED] * 3
    assert join(co, v4=True).last.error == c.GROUP_MAX_SIZE_REACHED
    assert join(co, handed[0].member_id, v4=True).last.error == c.NONE  # a handed-out id still joins
    co.tick(1000)  # the two unused ids expire
    assert join(co, v4=True, now=1001).last.error == c.MEMBER_ID_REQUIRED


# ----------------------------------------------------------------------------- arbitrary calls


class Once:
    """A reply callback that must be called at most once."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, _result: Any) -> None:
        self.calls += 1
        assert self.calls == 1, "a request was answered twice"


calls = st.lists(
    st.tuples(
        st.sampled_from(["join", "join4", "sync", "heartbeat", "leave", "commit", "tick"]),
        st.integers(0, 4),  # which member id (0: empty, else one seen before)
        st.integers(-1, 4),  # generation
        st.integers(0, 3000),  # time step
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(calls)
def test_arbitrary_calls_keep_the_group_consistent_and_answer_each_request_once(script: list[Any]) -> None:
    co = make()
    seen: list[str] = [""]
    replies: list[Once] = []
    now = 0
    for op, who, gen, step in script:
        now += step
        mid = seen[who % len(seen)]
        if op in ("join", "join4"):
            box, once = Box(), Once()
            replies.append(once)

            def reply(r: JoinResult, box: Box = box, once: Once = once) -> None:
                once(r)
                box(r)

            co.join(
                G,
                mid,
                instance_id=None,
                client_id="x",
                client_host="h",
                session_timeout_ms=1000,
                rebalance_timeout_ms=2000,
                protocol_type="consumer",
                protocols=[RANGE],
                require_known_member_id=op == "join4",
                now_ms=now,
                reply=reply,
            )
            if box.got and box.last.member_id and box.last.member_id not in seen:
                seen.append(box.last.member_id)
        elif op == "sync":
            once = Once()
            replies.append(once)
            co.sync(G, mid, gen, instance_id=None, assignments=[(mid, b"a")], now_ms=now, reply=once)
        elif op == "heartbeat":
            assert co.heartbeat(G, mid, gen, instance_id=None, now_ms=now) in (
                c.NONE,
                c.UNKNOWN_MEMBER_ID,
                c.ILLEGAL_GENERATION,
                c.REBALANCE_IN_PROGRESS,
            )
        elif op == "leave":
            co.leave(G, [(mid, None)], now_ms=now)
        elif op == "commit":
            co.check_commit(G, mid, gen, instance_id=None, now_ms=now)
        else:
            co.tick(now)
        g = co.group(G)
        if g is not None:
            assert (g.leader in g.members) if g.members else g.leader is None or g.state == c.PREPARING
            assert g.state != c.EMPTY or not g.members
            assert all(m.member_id == mid_ for mid_, m in g.members.items())
    for _ in range(10):  # every waiting request is answered once time moves on
        now += 10_000
        co.tick(now)
    assert all(r.calls == 1 for r in replies)
