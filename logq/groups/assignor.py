"""Partition assignment for consumer groups: pure rules, no I/O (sans-IO, like h11).

Given what each member subscribes to and who owned what in the previous generation,
:func:`assign_partitions` returns the next generation's assignment. It reads no file,
takes no lock and keeps no state, so every member of a group computes the same answer
from the same inputs, and the rules can be tested exhaustively on their own;
logq/groups/member.py feeds it the group state it read under the group lock.

The rules, in order:

1. Eligibility: a partition goes only to a member subscribed to its topic. The partition
   count of a topic is the largest any member reports (members may see a topic's growth
   at different times).
2. Stickiness: a partition stays with its previous owner when that owner is still a member
   and still eligible (each partition once; malformed or out-of-range entries are dropped).
3. Placement: every other partition, in (topic, partition) order, goes to the least loaded
   eligible member (ties: smallest member id).
4. Balance: while some member holds at least two more partitions than another member that
   could take one of them, the most loaded member gives its last such partition to the
   least loaded one. Each move lowers the sum of squared loads, so this ends.

With equal subscriptions every member ends with floor or ceil of partitions / members.
The result is deterministic: it does not depend on the order of the input mappings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["TopicPartition", "assign_partitions"]

TopicPartition = tuple[str, int]  # plain (topic, partition) keys; logq.types.TopicPartition is one of these


def assign_partitions(
    subscriptions: Mapping[str, Mapping[str, int]],
    previous: Mapping[str, Iterable[TopicPartition]] | None = None,
) -> dict[str, list[TopicPartition]]:
    """Deterministic, sticky, balanced assignment of partitions to members.

    ``subscriptions`` maps member id -> {topic: partition count}; ``previous`` maps member
    id -> the partitions it held. Returns member id -> sorted partitions, for every member.
    """
    members = sorted(subscriptions)
    counts: dict[str, int] = {}
    for m in members:
        for topic, n in subscriptions[m].items():
            counts[topic] = max(counts.get(topic, 0), int(n))
    eligible = {t: {m for m in members if t in subscriptions[m]} for t in counts}
    owner = _sticky_owners(members, counts, eligible, previous or {})
    load = {m: 0 for m in members}
    for m in owner.values():
        load[m] += 1
    for tp in sorted((t, p) for t, n in counts.items() for p in range(n)):
        if tp not in owner and eligible[tp[0]]:
            m = min(eligible[tp[0]], key=lambda x: (load[x], x))
            owner[tp] = m
            load[m] += 1
    held: dict[str, list[TopicPartition]] = {m: [] for m in members}
    for tp in sorted(owner):
        held[owner[tp]].append(tp)
    _balance(members, eligible, held, load)
    return {m: sorted(tps) for m, tps in held.items()}


def _sticky_owners(
    members: list[str],
    counts: Mapping[str, int],
    eligible: Mapping[str, set[str]],
    previous: Mapping[str, Iterable[TopicPartition]],
) -> dict[TopicPartition, str]:
    """Rule 2: the previous owners that may keep their partitions (first member id wins)."""
    owner: dict[TopicPartition, str] = {}
    for m in members:
        for t, p in sorted((str(t), int(p)) for t, p in previous.get(m, ())):
            if t in counts and 0 <= p < counts[t] and m in eligible[t] and (t, p) not in owner:
                owner[(t, p)] = m
    return owner


def _balance(
    members: list[str],
    eligible: Mapping[str, set[str]],
    held: dict[str, list[TopicPartition]],
    load: dict[str, int],
) -> None:
    """Rule 4, in place: move partitions from the most to the least loaded member."""
    total = sum(load.values())
    for _ in range(total * len(members) + 1):  # each move lowers the sum of squared loads
        move = _next_move(members, eligible, held, load)
        if move is None:
            return
        donor, recv, tp = move
        held[donor].remove(tp)
        held[recv].append(tp)
        load[donor] -= 1
        load[recv] += 1


def _next_move(
    members: list[str],
    eligible: Mapping[str, set[str]],
    held: Mapping[str, list[TopicPartition]],
    load: Mapping[str, int],
) -> tuple[str, str, TopicPartition] | None:
    for donor in sorted(members, key=lambda x: (-load[x], x)):
        for recv in sorted(members, key=lambda x: (load[x], x)):
            if load[donor] - load[recv] < 2:
                break
            movable = [tp for tp in held[donor] if recv in eligible[tp[0]]]
            if movable:
                return donor, recv, movable[-1]
    return None
