"""The history of a share-group checker run (tools/share_checker.py) and the checks on it.

History: every process appends one JSON line per event to its own file (``os.write`` on an
O_APPEND descriptor, no fsync: a kill -9 cannot lose a line already written, the kernel has it)::

    [t_ns, "member", member_id, pid]          [t_ns, "poll"]            (before poll())
    [t_ns, "acq", [[partition, offset, delivery_count], ...]]           (after poll())
    [t_ns, "renew", partition, offset, ok, t_start_ns]  (after renew(); t_start_ns: before it)
    [t_ns, "ack", partition, offset, delivery_count, type]              (after acknowledge())
    [t_ns, "commit"]                          (before commit(): acknowledgements apply from here)
    [t_ns, "committed", [[partition, offset], ...]]  (after commit(): the late ones)
    [t_ns, "die", partition, offset]          (a poison record: kill -9 of itself follows)
    [t_ns, "close"]                           (before close() with records held; a new member follows)

and the parent's ``parent.log``: ``[t_ns, "start"|"kill"|"exit", name, pid_or_returncode]``
("kill" is written before the signal is sent). Times are the wall clock (the ShareConsumer's
lock clock), one host.

What is verified (:func:`check`), each failure a line of the report:

- no two acquisitions of a record have the same delivery count, counts never exceed the limit,
  and a higher count is never acquired before a lower one began;
- no record is acquired while another acquisition of it is certainly still held: delivery j
  (count higher than i) must end its poll after the earliest moment i's lock could have ended,
  the minimum of i's commit start (acknowledgement applied), i's poll start + lock_duration_ms
  (or its last successful renew's start + lock_duration_ms) and the kill of i's process;
- a gap in a record's delivery counts is explained only by a process killed inside a poll;
- an acknowledgement refused as late, or a ``renew()`` refused, only once the lock could have
  expired;
- every record finished exactly once: accepted (an accept committed and not refused as late) or
  archived in the dead-letter topic with its reason: "rejected" only if a holder rejected it with
  that count, "delivery_limit" only at the limit; never both, never accepted twice, never
  delivered again after an accept was committed; poison records end as "delivery_limit".
  A dead letter is final: the record is never delivered again with a higher count, never
  accepted, never dead-lettered with another reason or count (archives are crash-consistent:
  an ARCHIVING intent is journaled before the letter, and recovery completes the archive). One
  allowed oddity, reported as a note: the same letter (same reason and count) twice, written
  again by the member that completed the archive of one killed after writing it;
- the group's state: every partition's start offset at its end, nothing in flight, totals equal
  to the outcomes (acknowledged, rejected, delivery_limit); a new consumer gets nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

INF = 1 << 62
MS = 1_000_000  # ns
TOPIC, GROUP, DLQ = "jobs", "checker", "dlq.jobs"
Key = tuple[int, int]  # (partition, offset)


@dataclass(frozen=True)
class Settings:
    """One run's parameters (the worker gets them as JSON)."""

    records: int = 300
    processes: int = 4
    partitions: int = 2
    kills: int = 6
    poison: int = 1
    lock_ms: int = 150
    limit: int = 4
    seed: int = 1
    finish_s: float = 120.0
    work_ms: int = 20  # each poll's records are worked on for 0-work_ms ms (half the polls)
    fault: str = ""  # "steal": a broken store that takes live members' records (negative control)


# ----------------------------------------------------------------------------- history


@dataclass
class Delivery:
    """One acquisition of a record, as its process logged it (times in ns, wall clock)."""

    proc: str
    key: Key
    count: int
    poll_start: int
    poll_end: int
    renewed: int = 0  # start of the last successful renew
    ack: str | None = None
    ack_state: str | None = None  # applied | late | ambiguous (killed in commit) | unapplied
    apply_start: int = INF  # start of the commit that applies the acknowledgement
    apply_end: int = INF  # its end (commit() returned)
    early_refusals: list[int] = field(default_factory=list)  # renew() False before the lock could end
    death: int = INF  # kill of its process (by the parent, or itself on a poison record)

    def hold_end_lb(self, lock_ms: int) -> int:
        """The earliest moment its lock can have ended (acknowledged, expired or holder dead)."""
        deadline = max(self.poll_start, self.renewed) + (lock_ms - 2) * MS
        return min(self.apply_start, deadline, self.death)


@dataclass
class History:
    """Everything the checker reads: the logs, the dead letters and the group's final state."""

    settings: Settings
    produced: dict[Key, bytes]  # record -> value
    procs: dict[str, list[list[Any]]]  # process name -> events
    parent: list[list[Any]] = field(default_factory=list)
    dead_letters: list[tuple[Key, str, int]] = field(default_factory=list)  # (record, reason, count)
    partitions: dict[int, dict[str, Any]] = field(default_factory=dict)  # start, end, states, totals
    leftover: list[Key] = field(default_factory=list)  # what a fresh consumer still got
    notes: list[str] = field(default_factory=list)  # allowed oddities check() saw (duplicate dead letters)


def _deaths(h: History) -> dict[str, int]:
    out: dict[str, int] = {}
    for t, kind, name, *_ in h.parent:
        if kind == "kill":
            out[name] = min(out.get(name, INF), t)
    for name, events in h.procs.items():
        for ev in events:
            if ev[1] == "die":
                out[name] = min(out.get(name, INF), ev[0])
    return out


def deliveries(h: History) -> tuple[list[Delivery], list[tuple[str, int]]]:
    """Every logged acquisition with its acknowledgement, and the (process, poll start) of
    the polls a kill interrupted (their acquisitions may be unlogged)."""
    deaths = _deaths(h)
    out: list[Delivery] = []
    open_polls: list[tuple[str, int]] = []
    for name, events in h.procs.items():
        mine, poll_start = _replay(h.settings, name, events)
        for d in mine:
            d.death = deaths.get(name, INF)
        out += mine
        if poll_start is not None and name in deaths:
            open_polls.append((name, poll_start))
    return out, open_polls


def _replay(cfg: Settings, name: str, events: list[list[Any]]) -> tuple[list[Delivery], int | None]:
    """One process's deliveries, and the start of a poll it never returned from (or None)."""
    out: list[Delivery] = []
    held: dict[Key, Delivery] = {}
    waiting: list[Delivery] = []  # acknowledged, not applied yet
    committing: list[Delivery] = []  # in the commit() in progress
    poll_start: int | None = None
    for ev in events:
        t, kind = ev[0], ev[1]
        if kind == "poll":
            poll_start = t
        elif kind == "acq":
            for p, o, c in ev[2]:
                held[(p, o)] = Delivery(name, (p, o), c, poll_start if poll_start is not None else t, t)
                out.append(held[(p, o)])
            poll_start = None
        elif kind == "renew" and (ev[2], ev[3]) in held:
            d = held[(ev[2], ev[3])]
            if ev[4]:
                d.renewed = ev[5]
            elif t < max(d.poll_start, d.renewed) + (cfg.lock_ms - 2) * MS:
                d.early_refusals.append(t)
        elif kind == "ack" and (ev[2], ev[3]) in held:
            d = held.pop((ev[2], ev[3]))
            d.ack = ev[5]
            waiting.append(d)
        elif kind == "commit":
            for d in waiting:
                d.apply_start = t
            committing, waiting = waiting, []
        elif kind == "close":  # acknowledgements applied (late ones unknown), the rest released
            for d in [*held.values(), *waiting]:
                d.apply_start = t
            for d in waiting:
                d.ack_state = "ambiguous"
            held, waiting = {}, []
        elif kind == "committed":
            late = {tuple(k) for k in ev[2]}
            for d in committing:
                d.ack_state, d.apply_end = ("late" if d.key in late else "applied"), t
            committing = []
    for d in committing:
        d.ack_state = "ambiguous"
    for d in waiting:
        d.ack_state = "unapplied"
    return out, poll_start


# ----------------------------------------------------------------------------- checks


def check(h: History) -> list[str]:
    """Every violation of the share-group promises found in ``h`` (empty: none)."""
    ds, open_polls = deliveries(h)
    by_key: dict[Key, list[Delivery]] = defaultdict(list)
    for d in ds:
        by_key[d.key].append(d)
    bad: list[str] = []
    for key in sorted(by_key):
        if key not in h.produced:
            bad.append(f"{_name(key)}: acquired but never produced")
    letters: dict[Key, set[tuple[str, int]]] = defaultdict(set)
    copies: dict[tuple[Key, str, int], int] = defaultdict(int)
    for key, reason, count in h.dead_letters:
        letters[key].add((reason, count))
        copies[(key, reason, count)] += 1
    for key in sorted(letters):
        if key not in h.produced:
            bad.append(f"{_name(key)}: dead-lettered but never produced")
    h.notes.clear()
    for key in sorted(h.produced):
        got = sorted(by_key.get(key, []), key=lambda d: (d.count, d.poll_end))
        bad += _check_acquisitions(h.settings, key, got, open_polls, letters.get(key, set()))
        for reason, count in sorted(letters.get(key, set())):
            if copies[(key, reason, count)] > 1:
                h.notes.append(
                    f"{_name(key)}: duplicate dead letter ({reason}, count {count}) x{copies[(key, reason, count)]}: "
                    "written again when the archive of a member killed after writing it was completed"
                )
        bad += _check_outcome(h, key, got, letters.get(key, set()))
    bad += _check_state(h, letters)
    return bad


def _name(key: Key) -> str:
    return f"{TOPIC}-{key[0]}@{key[1]}"


def _check_acquisitions(
    cfg: Settings, key: Key, got: list[Delivery], open_polls: list[tuple[str, int]], letters: set[tuple[str, int]]
) -> list[str]:
    """Counts unique, within the limit, in time order, gaps explained; holds never overlap."""
    bad: list[str] = []
    name = _name(key)
    counts = [d.count for d in got]
    for c in sorted({c for c in counts if counts.count(c) > 1}):
        who = [f"{d.proc}@{d.poll_end}" for d in got if d.count == c]
        bad.append(f"{name}: acquired twice with delivery count {c} ({', '.join(who)})")
    for d in got:
        if not 1 <= d.count <= cfg.limit:
            bad.append(f"{name}: delivery count {d.count} by {d.proc} outside 1..{cfg.limit}")
    for i, a in enumerate(got):
        for b in got[i + 1 :]:
            if b.count == a.count:
                continue
            if b.poll_end < a.poll_start:
                bad.append(f"{name}: count {b.count} ({b.proc}) acquired before count {a.count} ({a.proc}) was")
            elif b.poll_end < a.hold_end_lb(cfg.lock_ms):
                bad.append(
                    f"{name}: acquired by {b.proc} (count {b.count}) while {a.proc} still held it (count "
                    f"{a.count}): acquisition done {(a.hold_end_lb(cfg.lock_ms) - b.poll_end) / MS:.1f} ms "
                    "before that lock could have ended"
                )
    for d in got:
        if d.early_refusals:
            bad.append(f"{name}: renew() by {d.proc} (count {d.count}) returned False before its lock could expire")
        earliest = max(d.poll_start, d.renewed) + (cfg.lock_ms - 2) * MS
        if d.ack_state == "late" and d.apply_end < min(earliest, d.death):
            bad.append(f"{name}: {d.proc}'s {d.ack} (count {d.count}) refused as late before its lock could expire")
    top = max([c for _, c in letters if c] + counts + [0])
    later = {c: min((d.poll_end for d in got if d.count > c), default=INF) for c in range(1, top + 1)}
    for c in range(1, top + 1):
        if c not in counts and not any(t < later[c] for _, t in open_polls):
            bad.append(f"{name}: delivery count {c} was never logged and no process died inside a poll before")
    return bad


def _check_outcome(h: History, key: Key, got: list[Delivery], letters: set[tuple[str, int]]) -> list[str]:
    """Accepted exactly once or archived with the right reason; nothing after an accept."""
    name, cfg = _name(key), h.settings
    accepted = [d for d in got if d.ack == "accept" and d.ack_state == "applied"]
    maybe = [d for d in got if d.ack == "accept" and d.ack_state == "ambiguous"]
    rejects = {d.count for d in got if d.ack == "reject" and d.ack_state in ("applied", "ambiguous")}
    sure_rejects = {d.count for d in got if d.ack == "reject" and d.ack_state == "applied"}
    bad: list[str] = []
    if len(accepted) > 1:
        bad.append(f"{name}: accepted {len(accepted)} times ({', '.join(d.proc for d in accepted)})")
    if accepted and letters:
        bad.append(f"{name}: accepted by {accepted[0].proc} and also dead-lettered {sorted(letters)}")
    if len(letters) > 1:
        bad.append(f"{name}: dead-lettered with different reasons or counts {sorted(letters)}")
    if not accepted and not maybe and not letters:
        bad.append(f"{name}: lost: never accepted and not in the dead-letter topic (deliveries {len(got)})")
    for a in accepted:
        for d in got:
            if d.count > a.count:
                bad.append(f"{name}: delivered again (count {d.count}, {d.proc}) after {a.proc}'s accept committed")
    for reason, count in letters:
        for d in got:
            if d.count > count:
                bad.append(
                    f"{name}: delivered again (count {d.count}, {d.proc}) after it was dead-lettered ({reason}, count {count})"
                )
        if reason == "rejected" and count not in rejects:
            bad.append(f"{name}: dead-lettered as rejected at count {count}, but no holder rejected it then")
        elif reason == "delivery_limit" and count != cfg.limit:
            bad.append(f"{name}: dead-lettered at the delivery limit with count {count} (limit {cfg.limit})")
        elif reason not in ("rejected", "delivery_limit"):
            bad.append(f"{name}: dead-lettered with unexpected reason {reason!r}")
    for c in sure_rejects:
        if ("rejected", c) not in letters:
            bad.append(f"{name}: rejected (count {c}, committed) but not dead-lettered as rejected")
    if h.produced[key].startswith(b"poison") and {r for r, _ in letters} != {"delivery_limit"}:
        bad.append(f"{name}: a poison record should end at the delivery limit, got {sorted(letters) or 'accepted'}")
    return bad


def _check_state(h: History, letters: dict[Key, set[tuple[str, int]]]) -> list[str]:
    bad: list[str] = []
    for key in h.leftover:
        bad.append(f"{_name(key)}: a new consumer still got it after the group finished")
    for p in range(h.settings.partitions):
        n = sum(1 for k in h.produced if k[0] == p)
        info = h.partitions.get(p)
        if info is None:
            bad.append(f"{TOPIC}-{p}: no share state")
            continue
        if (info["start"], info["end"], info["states"]) != (n, n, {}):
            bad.append(f"{TOPIC}-{p}: state not finished: start {info['start']}, end {info['end']}, {info['states']}")
        want = {"acknowledged": 0, "rejected": 0, "delivery_limit": 0}
        for key in (k for k in h.produced if k[0] == p):
            reasons = {r for r, _ in letters.get(key, set())}
            for r in reasons or {"acknowledged"}:
                want[r] = want.get(r, 0) + 1
        have = {k: info["totals"].get(k, 0) for k in want}
        if have != want:
            bad.append(f"{TOPIC}-{p}: totals {have} but the logs and dead letters say {want}")
    return bad
