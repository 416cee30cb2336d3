"""Share groups under the Jepsen-style checker (tools/share_checker.py), short version.

Real worker processes share two partitions with short locks, acknowledge at random, are killed
with kill -9 and replaced, and one poison record kills every worker that takes it; the checker
then proves from the logs, the dead-letter topic and the group's state that every record finished
exactly once, none was acquired by two live members at once and delivery counts are consistent.
``make share-check`` runs the long version.

The checker is tested too: histories broken on purpose (synthetic ones, and a real run's log
tampered with) must be flagged, and legitimate ones (a lock that expired, a holder killed) not.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_checker() -> Any:
    path = ROOT / "tools" / "share_checker.py"
    spec = importlib.util.spec_from_file_location("share_checker", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["share_checker"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


sc = _load_checker()
MS = 1_000_000
CFG = sc.Settings(records=2, processes=2, partitions=1, kills=0, poison=0, lock_ms=100, limit=3)


_RUNS: dict[tuple[int, str], Any] = {}


def real_run(tmp_path_factory: pytest.TempPathFactory, seed: int, fault: str = "") -> Any:
    """One run of the checker (kept for the tests that reuse it): violations, figures, history."""
    if (seed, fault) not in _RUNS:
        cfg = sc.Settings(records=120, processes=4, partitions=2, kills=3, poison=1, lock_ms=100, limit=3, seed=seed)
        if fault:
            cfg = sc.Settings(records=40, processes=4, partitions=1, kills=0, poison=0, lock_ms=5000, work_ms=30)
            cfg = sc.Settings(**(cfg.__dict__ | {"fault": fault}))
        _RUNS[(seed, fault)] = (cfg, *sc.run_once(cfg, str(tmp_path_factory.mktemp("run"))))
    return _RUNS[(seed, fault)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_workers_killed_at_random_with_expiring_locks_pass_the_checker(
    tmp_path_factory: pytest.TempPathFactory, seed: int
) -> None:
    cfg, bad, figures, history = real_run(tmp_path_factory, seed)
    assert bad == []
    # the run exercised what it claims: kills, replacements, the poison record's crashes
    assert figures["kills"] == cfg.kills
    assert figures["processes"] >= cfg.processes + cfg.kills
    assert figures["poison_deaths"] >= 1
    reasons = {reason for _, reason, _ in history.dead_letters}
    assert "delivery_limit" in reasons  # the poison record at least
    assert figures["deliveries"] >= cfg.records


# ----------------------------------------------------------------------------- the checker itself


def took(t_ms: float, key: tuple[int, int], count: int, ack: str | None = "accept", commit: bool = True) -> list:
    """The events of one poll that acquired ``key`` at ``t_ms`` and acknowledged it."""
    t = int(t_ms * MS)
    events: list[list[Any]] = [[t, "poll"], [t + MS, "acq", [[key[0], key[1], count]]]]
    if ack is not None:
        events.append([t + 2 * MS, "ack", key[0], key[1], count, ack])
        if commit:
            events += [[t + 3 * MS, "commit"], [t + 4 * MS, "committed", []]]
    return events


def history(procs: dict[str, list], letters: list | None = None, parent: list | None = None, **state: Any) -> Any:
    letters = letters or []
    totals = {"acknowledged": 2 - len({k for k, _, _ in letters})}
    for _, reason, _ in letters:
        totals[reason] = totals.get(reason, 0) + 1
    info = dict(start=2, end=2, states={}, totals=totals) | state
    produced = {(0, 0): b"job-0", (0, 1): b"job-1"}
    return sc.History(CFG, produced, procs, parent or [], list(letters), {0: info})


def test_a_clean_history_passes() -> None:
    h = history(
        {"a": took(0, (0, 0), 1) + took(10, (0, 1), 1, "release"), "b": took(20, (0, 1), 2)},
    )
    assert sc.check(h) == []


def test_two_acquisitions_with_one_delivery_count_are_flagged() -> None:
    h = history({"a": took(0, (0, 0), 1) + took(10, (0, 1), 1), "b": took(5, (0, 0), 1, "release")})
    assert any("acquired twice with delivery count 1" in line for line in sc.check(h))


def test_an_acquisition_while_a_live_member_holds_the_lock_is_flagged() -> None:
    # a holds 0@0 from 0 ms (lock 100 ms) and commits its release at 53 ms; b acquires at 31 ms
    h = history({"a": took(0, (0, 1), 1) + took(50, (0, 0), 1, "release"), "b": took(80, (0, 0), 2)})
    assert sc.check(h) == []
    h = history({"a": took(0, (0, 1), 1) + took(50, (0, 0), 1, "release"), "b": took(51, (0, 0), 2)})
    assert any("while a still held it" in line for line in sc.check(h))


def test_an_acquisition_after_the_lock_expired_or_the_holder_was_killed_is_not_flagged() -> None:
    expired = history({"a": took(0, (0, 1), 1) + took(10, (0, 0), 1, None), "b": took(150, (0, 0), 2)})
    assert sc.check(expired) == []
    killed = history(
        {"a": took(0, (0, 1), 1) + took(10, (0, 0), 1, None), "b": took(30, (0, 0), 2)},
        parent=[[20 * MS, "kill", "a", 123]],
    )
    assert sc.check(killed) == []
    alive = history({"a": took(0, (0, 1), 1) + took(10, (0, 0), 1, None), "b": took(30, (0, 0), 2)})
    assert any("while a still held it" in line for line in sc.check(alive))


def test_a_lost_record_is_flagged() -> None:
    h = history({"a": took(0, (0, 0), 1) + took(10, (0, 1), 1, "accept", commit=False)})
    assert any(line.startswith("jobs-0@1: lost") for line in sc.check(h))


def test_a_record_accepted_twice_or_delivered_after_its_accept_is_flagged() -> None:
    h = history({"a": took(0, (0, 0), 1) + took(10, (0, 1), 1), "b": took(200, (0, 1), 2)})
    bad = sc.check(h)
    assert any("accepted 2 times" in line for line in bad)
    assert any("delivered again (count 2, b)" in line for line in bad)


def test_dead_letters_must_match_a_reject_or_the_limit() -> None:
    rejected = history({"a": took(0, (0, 0), 1) + took(10, (0, 1), 1, "reject")}, letters=[((0, 1), "rejected", 1)])
    assert sc.check(rejected) == []
    not_letter = history({"a": took(0, (0, 0), 1) + took(10, (0, 1), 1, "reject")}, totals={"acknowledged": 1})
    assert any("not dead-lettered" in line for line in sc.check(not_letter))
    nobody = history({"a": took(0, (0, 0), 1) + took(10, (0, 1), 1, "release")}, letters=[((0, 1), "rejected", 1)])
    assert any("no holder rejected it" in line for line in sc.check(nobody))
    early = [took(10 + 200 * i, (0, 1), i + 1, "release") for i in range(2)]
    short = history({"a": took(0, (0, 0), 1) + early[0] + early[1]}, letters=[((0, 1), "delivery_limit", 2)])
    assert any("delivery limit with count 2" in line for line in sc.check(short))


def test_a_stale_dead_letter_of_a_record_that_came_back_is_a_violation() -> None:
    # archives are crash-consistent (an ARCHIVING intent journaled before the letter): a
    # rejecter killed inside commit() after writing the letter must not see the record come
    # back; if b then accepts it, the letter is stale
    dying = took(10, (0, 1), 1, "reject")[:-1]
    procs = {"a": took(0, (0, 0), 1) + dying, "b": took(200, (0, 1), 2)}
    h = history(procs, letters=[((0, 1), "rejected", 1)], totals={"acknowledged": 2})
    bad = sc.check(h)
    assert any("accepted by b and also dead-lettered" in line for line in bad)
    assert any("delivered again (count 2, b) after it was dead-lettered (rejected, count 1)" in line for line in bad)
    # at the limit (3), archived again as "delivery_limit" by the member that reclaimed it
    before = took(10, (0, 1), 1, "release") + took(30, (0, 1), 2, "release")
    at_limit = {"a": took(0, (0, 0), 1) + before + took(60, (0, 1), 3, "reject")[:-1]}
    letters = [((0, 1), "rejected", 3), ((0, 1), "delivery_limit", 3)]
    h = history(at_limit, letters=letters, totals={"acknowledged": 1, "delivery_limit": 1})
    assert any("dead-lettered with different reasons or counts" in line for line in sc.check(h))


def test_the_same_dead_letter_twice_after_a_killed_archiver_is_a_note_not_a_violation() -> None:
    # a is killed inside commit() after writing the letter; the next operation completes the
    # archive and writes the same letter (same reason, same count) again: at least once
    dying = took(10, (0, 1), 1, "reject")[:-1]
    procs = {"a": took(0, (0, 0), 1) + dying}
    letters = [((0, 1), "rejected", 1), ((0, 1), "rejected", 1)]
    h = history(procs, letters=letters, totals={"acknowledged": 1, "rejected": 1})
    assert sc.check(h) == [] and len(h.notes) == 1
    assert h.notes[0].startswith("jobs-0@1: duplicate dead letter (rejected, count 1) x2")


def test_a_gap_in_delivery_counts_needs_a_process_killed_inside_a_poll() -> None:
    procs = {"a": took(0, (0, 0), 1) + took(10, (0, 1), 1, "release"), "b": took(300, (0, 1), 3)}
    assert any("delivery count 2 was never logged" in line for line in sc.check(history(procs)))
    procs["c"] = [[150 * MS, "poll"]]  # c died inside this poll: it may have taken count 2
    assert sc.check(history(procs, parent=[[160 * MS, "kill", "c", 9]])) == []


def test_an_acknowledgement_or_renewal_refused_before_the_lock_could_expire_is_flagged() -> None:
    early = took(0, (0, 0), 1)
    early[-1][2] = [[0, 0]]  # commit() at 4 ms said the accept came too late (lock: 100 ms)
    procs = {"a": early + took(10, (0, 1), 1), "b": took(150, (0, 0), 2)}
    assert any("refused as late before its lock could expire" in line for line in sc.check(history(procs)))
    late = took(0, (0, 0), 1)
    late[-1][0], late[-1][2] = 120 * MS, [[0, 0]]  # at 120 ms it could have expired: fine
    assert sc.check(history({"a": late + took(10, (0, 1), 1), "b": took(150, (0, 0), 2)})) == []
    renewed = took(0, (0, 0), 1)
    renewed.insert(2, [5 * MS, "renew", 0, 0, False, 4 * MS])
    bad = sc.check(history({"a": renewed + took(10, (0, 1), 1)}))
    assert any("renew() by a (count 1) returned False" in line for line in bad)


def test_a_state_that_disagrees_with_the_logs_is_flagged() -> None:
    procs = {"a": took(0, (0, 0), 1) + took(10, (0, 1), 1)}
    assert any("totals" in line for line in sc.check(history(procs, totals={"acknowledged": 1})))
    assert any("state not finished" in line for line in sc.check(history(procs, start=1)))


def test_a_real_run_whose_log_is_tampered_with_is_flagged(tmp_path_factory: pytest.TempPathFactory) -> None:
    _, bad, _, h = real_run(tmp_path_factory, 1)
    assert bad == []
    h = sc.History(
        h.settings,
        h.produced,
        {n: list(e) for n, e in h.procs.items()},
        h.parent,
        h.dead_letters,
        h.partitions,
        h.leftover,
    )
    # another process claims one real acquisition (of a record accepted) too: a double acquisition
    done = next(d for d in sc.deliveries(h)[0] if d.ack == "accept" and d.ack_state == "applied")
    (p, o), c = done.key, done.count
    h.procs["forged"] = [[done.poll_start, "poll"], [done.poll_end, "acq", [[p, o, c]]]]
    assert any(f"jobs-{p}@{o}: acquired twice with delivery count {c}" in line for line in sc.check(h))
    # its accept is dropped from the logs: lost
    del h.procs["forged"]
    for evs in h.procs.values():
        evs[:] = [e for e in evs if not (e[1] == "ack" and (e[2], e[3]) == (p, o))]
    assert any(line.startswith(f"jobs-{p}@{o}: lost") for line in sc.check(h))


def test_a_store_that_takes_the_records_of_live_members_fails_the_checker(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # fault injection in the workers: every other member is taken for dead, so its acquired
    # records are handed out again while it still works on them
    _, bad, _, _ = real_run(tmp_path_factory, 1, fault="steal")
    # seen as an acquisition while the victim certainly held the lock, or as the victim's
    # acknowledgement refused as late before its lock could have expired
    symptoms = ("still held it", "refused as late before its lock could expire")
    assert any(s in line for line in bad for s in symptoms), bad[:5]
