"""The pure assignment rules of logq/groups/assignor.py, checked exhaustively on small groups.

Every combination of up to three members, each subscribed to any subset of two topics, is
assigned from scratch and from many previous assignments (valid, stale, duplicated and
out of range), and every result is held to the rules of the module docstring:
coverage, eligibility, determinism, stickiness and balance.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping

import pytest
from logq.groups.assignor import assign_partitions

COUNTS = {"a": 3, "b": 2}
MEMBERS = ("m1", "m2", "m3")
TOPIC_SETS = [(), ("a",), ("b",), ("a", "b")]

Assignment = dict[str, list[tuple[str, int]]]
Subs = dict[str, dict[str, int]]


def all_subscriptions() -> list[Subs]:
    out = []
    for n in range(1, len(MEMBERS) + 1):
        for members in itertools.combinations(MEMBERS, n):
            for topic_sets in itertools.product(TOPIC_SETS, repeat=n):
                out.append({m: {t: COUNTS[t] for t in ts} for m, ts in zip(members, topic_sets)})
    return out


def previous_assignments(subs: Subs, rng: random.Random, n: int = 6) -> list[Assignment]:
    """Random earlier owners, including members that left, duplicates and dropped partitions."""
    tps = [(t, p) for t, c in COUNTS.items() for p in range(c + 1)]  # + 1: a partition that no longer exists
    owners = list(subs) + ["gone"]
    out: list[Assignment] = [{}]
    for _ in range(n):
        prev: Assignment = {m: [] for m in owners}
        for tp in tps:
            for m in rng.sample(owners, rng.choice((0, 1, 1, 1, 2))):
                prev[m].append(tp)
        out.append(prev)
    return out


def check_rules(subs: Subs, got: Assignment) -> None:
    assert sorted(got) == sorted(subs), "every member gets an entry, and only members"
    owner = {}
    for m, tps in got.items():
        assert tps == sorted(tps)
        for tp in tps:
            assert tp not in owner, f"{tp} assigned twice"
            owner[tp] = m
            assert tp[0] in subs[m], f"{m} is not subscribed to {tp[0]}"
    counts: dict[str, int] = {}
    for s in subs.values():
        for t, n in s.items():
            counts[t] = max(counts.get(t, 0), n)
    wanted = {(t, p) for t, n in counts.items() for p in range(n)}
    assert set(owner) == wanted, "every partition of a subscribed topic is assigned once"
    load = {m: len(tps) for m, tps in got.items()}
    for donor, recv in itertools.permutations(subs, 2):
        if load[donor] - load[recv] >= 2:
            assert not [tp for tp in got[donor] if tp[0] in subs[recv]], "an eligible move was left"
    if len({tuple(sorted(s)) for s in subs.values()}) == 1 and subs[next(iter(subs))]:
        total = len(wanted)
        assert set(load.values()) <= {total // len(subs), -(-total // len(subs))}, "floor or ceil each"


def kept(prev: Mapping[str, list[tuple[str, int]]], got: Assignment, subs: Subs) -> int:
    """How many partitions stay with a previous owner that was eligible to keep them."""
    return sum(1 for m, tps in got.items() for tp in tps if tp in prev.get(m, ()) and tp[0] in subs[m])


@pytest.mark.parametrize(
    "subs", all_subscriptions(), ids=lambda s: ";".join(f"{m}={','.join(t)}" for m, t in s.items())
)
def test_every_small_group_follows_the_rules(subs: Subs) -> None:
    rng = random.Random(repr(subs))
    for prev in previous_assignments(subs, rng):
        got = assign_partitions(subs, prev)
        check_rules(subs, got)
        shuffled_subs = dict(reversed(list(subs.items())))
        shuffled_prev = {m: list(reversed(tps)) for m, tps in reversed(list(prev.items()))}
        assert assign_partitions(shuffled_subs, shuffled_prev) == got, "deterministic"
        assert assign_partitions(subs, got) == got, "a settled assignment stays as it is"


@pytest.mark.parametrize("members", [2, 3, 4, 5])
@pytest.mark.parametrize("partitions", [1, 4, 7, 12])
def test_a_joining_member_takes_partitions_only_from_the_most_loaded(members: int, partitions: int) -> None:
    subs = {f"m{i}": {"t": partitions} for i in range(members)}
    before = assign_partitions({m: s for m, s in subs.items() if m != f"m{members - 1}"})
    after = assign_partitions(subs, before)
    check_rules(subs, after)
    floor = partitions // members
    for m, tps in before.items():
        assert len(set(tps) & set(after[m])) >= min(len(tps), floor), f"{m} lost more than it had to"
    moved = sum(len(tps) for tps in before.values()) - kept(before, after, subs)
    assert moved == len(after[f"m{members - 1}"]), "only the newcomer's share moves"


def test_a_leaving_member_gives_its_partitions_away_and_the_others_keep_theirs() -> None:
    subs = {m: {"a": 5, "b": 4} for m in ("x", "y", "z")}
    before = assign_partitions(subs)
    rest = {m: s for m, s in subs.items() if m != "y"}
    after = assign_partitions(rest, before)
    check_rules(rest, after)
    for m in rest:
        assert set(before[m]) <= set(after[m])


def test_the_partition_count_of_a_topic_is_the_largest_any_member_reports() -> None:
    got = assign_partitions({"m1": {"t": 2}, "m2": {"t": 4}})
    assert sorted(tp for tps in got.values() for tp in tps) == [("t", 0), ("t", 1), ("t", 2), ("t", 3)]


def test_no_members_and_no_topics() -> None:
    assert assign_partitions({}) == {}
    assert assign_partitions({"m1": {}}, {"m1": [("t", 0)]}) == {"m1": []}
