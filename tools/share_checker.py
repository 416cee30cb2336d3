#!/usr/bin/env python3
"""Jepsen-style checker of share groups (issue 13): many runs of worker processes sharing a
topic's partitions, killed with kill -9 and restarted, locks expiring, then a proof from the logs.

A run: a topic of ``--partitions`` partitions holds ``--records`` records (``--poison`` of them
kill the worker that takes them, every time); ``--processes`` worker processes (this file,
``worker`` subcommand) share it as one group with a short ``lock_duration_ms``: each polls a
random number of records, sometimes renews, sometimes works longer than its lock, then
acknowledges each (accept most, release some, reject a few) and commits; now and then it
closes its consumer with records still held (close() releases them) and opens a new one. The parent kills a
random worker with kill -9 ``--kills`` times (starting a new one each time, and replacing any
that died on a poison record), waits until the group has finished every record, stops them and
checks.

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
- every record finished exactly once: accepted (an accept committed and not refused as late) or
  archived in the dead-letter topic with its reason: "rejected" only if a holder rejected it with
  that count, "delivery_limit" only at the limit; never both, never accepted twice, never
  delivered again after an accept was committed; poison records end as "delivery_limit";
- the group's state: every partition's start offset at its end, nothing in flight, totals equal
  to the outcomes (acknowledged, rejected, delivery_limit); a new consumer gets nothing.

    python tools/share_checker.py --runs 20 --records 2000 --processes 6 --seed 1
    python tools/share_checker.py --runs 1 --records 300 --keep    # keep the data and logs

Exit status 1 with a report of every violation (0 when all runs pass).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


# ----------------------------------------------------------------------------- worker process


def _writer(path: str) -> Any:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def emit(*event: Any) -> None:
        os.write(fd, (json.dumps([time.time_ns(), *event]) + "\n").encode())

    return emit


def worker(root: str, workdir: str, name: str, cfg: Settings) -> None:
    """Poll, maybe renew or overrun the lock, acknowledge every record at random, commit."""
    import logq

    if cfg.fault == "steal":  # every other member looks dead: their records are taken while held
        from logq.groups import share_store

        share_store._Alive.__call__ = lambda self, member: member in self.mine  # type: ignore[method-assign]
    rng = random.Random(f"{cfg.seed}-{name}")
    emit = _writer(os.path.join(workdir, f"{name}.log"))
    stop = os.path.join(workdir, "stop")
    while not os.path.exists(stop):
        _member(logq.ShareConsumer, root, cfg, rng, emit, stop)


def _member(make: Any, root: str, cfg: Settings, rng: random.Random, emit: Any, stop: str) -> None:
    """One ShareConsumer: until the stop file, or until it closes itself with records held."""
    with make(
        root,
        [TOPIC],
        group_id=GROUP,
        acknowledgement_mode="explicit",
        auto_offset_reset="earliest",
        lock_duration_ms=cfg.lock_ms,
        delivery_count_limit=cfg.limit,
        dead_letter_topic=DLQ,
    ) as sc:
        emit("member", sc.member_id, os.getpid())
        while not os.path.exists(stop):
            emit("poll")
            recs = sc.poll(timeout=0.05, max_records=rng.randint(1, 12))
            if not recs:
                continue
            emit("acq", [[r.partition, r.offset, r.delivery_count] for r in recs])
            for r in recs:
                if r.value.startswith(b"poison"):
                    emit("die", r.partition, r.offset)
                    os.kill(os.getpid(), signal.SIGKILL)
            if not cfg.fault and rng.random() < 0.03:
                # close() with some records accepted and the rest held: it applies the
                # acknowledgements and releases the others (their counts kept)
                for r in recs[: rng.randint(0, len(recs))]:
                    sc.acknowledge(r, "accept")
                    emit("ack", r.partition, r.offset, r.delivery_count, "accept")
                emit("close")
                sc.close()
                return
            _work(sc, recs, rng, emit, cfg)
            emit("commit")
            late = sc.commit()
            emit("committed", [[r.partition, r.offset] for r in late])


def _work(sc: Any, recs: list[Any], rng: random.Random, emit: Any, cfg: Settings) -> None:
    roll = rng.random()
    if cfg.fault:
        time.sleep(cfg.work_ms / 1000)  # a fault is only seen while records are held
    elif roll < 0.1:
        for r in recs:
            t = time.time_ns()
            ok = sc.renew(r)
            emit("renew", r.partition, r.offset, ok, t)
    elif roll < 0.16:
        time.sleep(cfg.lock_ms * 1.5 / 1000)  # overrun the lock: it expires, the ack may be late
    elif roll < 0.6:
        time.sleep(rng.random() * cfg.work_ms / 1000)  # work (so holds overlap other polls)
    for r in recs:
        roll = rng.random()
        kind = "release" if roll < 0.12 else "reject" if roll < 0.15 else "accept"
        sc.acknowledge(r, kind)
        emit("ack", r.partition, r.offset, r.delivery_count, kind)


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
    notes: list[str] = field(default_factory=list)  # allowed oddities check() saw (stale dead letters)


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
    for key, reason, count in h.dead_letters:
        letters[key].add((reason, count))
    for key in sorted(letters):
        if key not in h.produced:
            bad.append(f"{_name(key)}: dead-lettered but never produced")
    h.notes.clear()
    for key in sorted(h.produced):
        got = sorted(by_key.get(key, []), key=lambda d: (d.count, d.poll_end))
        bad += _check_acquisitions(h.settings, key, got, open_polls, letters.get(key, set()))
        stale = _stale(got, letters.get(key, set()))
        for reason, count in sorted(stale):
            h.notes.append(
                f"{_name(key)}: stale dead letter ({reason}, count {count}): its rejecter was killed inside "
                "commit() after the dead letter was written, before the archive was journaled; delivered again"
            )
        letters[key] = letters.get(key, set()) - stale
        bad += _check_outcome(h, key, got, letters[key])
    bad += _check_state(h, letters)
    return bad


def _stale(got: list[Delivery], letters: set[tuple[str, int]]) -> set[tuple[str, int]]:
    """Dead letters of a reject whose archive was never journaled: the ShareConsumer writes the
    dead letter first (docs/queues.md), so a rejecter killed in between leaves the letter and
    the record comes back with its count kept (a later delivery, or a later dead letter)."""
    top = max([d.count for d in got] + [c for _, c in letters] + [0])
    return {
        (r, c)
        for r, c in letters
        if r == "rejected"
        and c < top
        and any(d.count == c and d.ack == "reject" and d.ack_state == "ambiguous" for d in got)
    }


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


# ----------------------------------------------------------------------------- running


def load(root: str, workdir: str, cfg: Settings, produced: dict[Key, bytes]) -> History:
    """Read the logs, the dead-letter topic and the group's state after a run."""
    import logq
    from logq.groups.share_store import describe_share_group

    procs = {}
    for fn in sorted(os.listdir(workdir)):
        if fn.endswith(".log") and fn != "parent.log":
            procs[fn[:-4]] = _rows(os.path.join(workdir, fn))
    h = History(cfg, produced, procs, _rows(os.path.join(workdir, "parent.log")))
    with logq.Consumer(root, DLQ, auto_offset_reset="earliest") as c:
        while batch := c.poll(1.0):
            for r in batch:
                hd = dict(r.headers)
                key = (int(hd["__dlq.errors.partition"]), int(hd["__dlq.errors.offset"]))
                h.dead_letters.append((key, hd["__dlq.errors.reason"].decode(), int(hd["__dlq.errors.delivery_count"])))
    for p in describe_share_group(root, GROUP).partitions:
        h.partitions[p.partition] = dict(start=p.start_offset, end=p.end_offset, states=p.states, totals=p.totals)
    with logq.ShareConsumer(root, [TOPIC], group_id=GROUP, auto_offset_reset="earliest") as sc:
        h.leftover = [(r.partition, r.offset) for r in sc.poll(timeout=0, max_records=1000)]
        for r in sc.poll(timeout=0):  # implicit mode: the first poll's records are accepted
            h.leftover.append((r.partition, r.offset))
    return h


def _rows(path: str) -> list[list[Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]  # a torn last line is cut


class Run:
    """One run's processes: started, killed, replaced (every step in parent.log)."""

    def __init__(self, root: str, workdir: str, cfg: Settings) -> None:
        self.root, self.workdir, self.cfg = root, workdir, cfg
        self.rng = random.Random(cfg.seed)
        self.emit = _writer(os.path.join(workdir, "parent.log"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.serial = 0
        self.crashes: list[str] = []

    def start(self) -> None:
        name = f"w{self.serial:03d}"
        self.serial += 1
        args = [sys.executable, os.path.abspath(__file__), "worker", self.root, self.workdir, name]
        env = dict(os.environ, SHARE_CHECKER_SETTINGS=json.dumps(self.cfg.__dict__))
        err = open(os.path.join(self.workdir, f"{name}.err"), "wb")
        self.procs[name] = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
        err.close()
        self.emit("start", name, self.procs[name].pid)

    def reap(self) -> None:
        """Note exited workers and replace them (a poison record killed them, or a crash)."""
        for name, p in list(self.procs.items()):
            rc = p.poll()
            if rc is not None:
                self.emit("exit", name, rc)
                del self.procs[name]
                if rc != -signal.SIGKILL:
                    with open(os.path.join(self.workdir, f"{name}.err"), errors="replace") as f:
                        self.crashes.append(f"worker {name} exited with {rc}: {f.read()[-600:]}")
                self.start()

    def kill_one(self) -> None:
        alive = sorted(n for n, p in self.procs.items() if p.poll() is None)
        if not alive:
            return
        busy = [n for n in alive if os.path.exists(os.path.join(self.workdir, f"{n}.log"))]
        name = self.rng.choice(busy or alive)  # one that joined the group, if any has
        self.emit("kill", name, self.procs[name].pid)
        os.kill(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait()
        self.reap()

    def stop(self) -> None:
        open(os.path.join(self.workdir, "stop"), "w").close()
        for name, p in self.procs.items():
            try:
                rc = p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
                self.crashes.append(f"worker {name} did not stop within 60 s")
            self.emit("exit", name, rc)
            if rc not in (0, -signal.SIGKILL):
                self.crashes.append(f"worker {name} exited with {rc} at stop")


def _finished(root: str, cfg: Settings) -> bool:
    from logq.errors import UnknownGroupError
    from logq.groups.share_store import describe_share_group

    try:
        parts = describe_share_group(root, GROUP).partitions
    except UnknownGroupError:
        return False
    per = [len(range(p, cfg.records, cfg.partitions)) for p in range(cfg.partitions)]
    return sorted((p.partition, p.start_offset) for p in parts) == list(enumerate(per))


def prepare(root: str, cfg: Settings) -> dict[Key, bytes]:
    """The topic (records spread round-robin, the poison ones among them) and the dead-letter topic."""
    import logq

    rng = random.Random(cfg.seed)
    poison = set(rng.sample(range(cfg.records), min(cfg.poison, cfg.records)))
    produced: dict[Key, bytes] = {}
    with logq.Admin(root) as a:
        a.create_topic(TOPIC, partitions=cfg.partitions)
        a.create_topic(DLQ)
    with logq.Producer(root) as p:
        for i in range(cfg.records):
            value = (b"poison-%d-" if i in poison else b"job-%d-") % i
            value += b"x" * (100 - len(value))
            part = i % cfg.partitions
            p.send(TOPIC, value, partition=part)
            produced[(part, i // cfg.partitions)] = value
    return produced


def run_once(cfg: Settings, base: str) -> tuple[list[str], dict[str, int], History]:
    """One run in ``base``: violations, figures (deliveries, kills, dead letters) and the history."""
    root, workdir = os.path.join(base, "data"), os.path.join(base, "logs")
    os.makedirs(workdir)
    produced = prepare(root, cfg)
    run = Run(root, workdir, cfg)
    for _ in range(cfg.processes):
        run.start()
    joined = time.monotonic() + 60
    while sum(f.endswith(".log") for f in os.listdir(workdir)) < 2 and time.monotonic() < joined:
        time.sleep(0.01)  # until a worker joined (its .log besides parent.log)
    for _ in range(cfg.kills):
        time.sleep(run.rng.random() * 0.4)
        run.reap()
        run.kill_one()
    deadline = time.monotonic() + cfg.finish_s
    while not _finished(root, cfg) and time.monotonic() < deadline and len(run.crashes) < 5:
        run.reap()
        time.sleep(0.05)
    done = _finished(root, cfg)
    run.stop()
    h = load(root, workdir, cfg, produced)
    bad = list(run.crashes)
    if not done:
        bad.append(f"the group did not finish every record within {cfg.finish_s:.0f} s: {h.partitions}")
    bad += check(h)
    ds, _ = deliveries(h)
    figures = dict(
        deliveries=len(ds),
        late=sum(1 for d in ds if d.ack_state == "late"),
        kills=sum(1 for e in h.parent if e[1] == "kill"),
        poison_deaths=sum(1 for ev in (e for evs in h.procs.values() for e in evs) if ev[1] == "die"),
        dead_letters=len(h.dead_letters),
        stale_dead_letters=len(h.notes),
        processes=sum(1 for e in h.parent if e[1] == "start"),
    )
    return bad, figures, h


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--processes", type=int, default=6, help="workers alive at once (4-8 is the issue's range)")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--kills", type=int, default=12, help="kill -9 of a random worker per run")
    ap.add_argument("--poison", type=int, default=2, help="records that kill their worker every time")
    ap.add_argument("--lock-ms", type=int, default=150)
    ap.add_argument("--limit", type=int, default=4, help="delivery_count_limit")
    ap.add_argument("--seed", type=int, default=1, help="run i uses seed + i")
    ap.add_argument("--work-ms", type=int, default=20, help="work per poll: 0-N ms, half the polls")
    ap.add_argument("--fault", choices=["", "steal"], default="", help="inject a bug: the checker must fail")
    ap.add_argument("--keep", action="store_true", help="keep each run's data and logs (printed)")
    args = ap.parse_args(None if argv is None else list(argv))
    failed = 0
    for i in range(args.runs):
        cfg = Settings(
            args.records,
            args.processes,
            args.partitions,
            args.kills,
            args.poison,
            args.lock_ms,
            args.limit,
            args.seed + i,
            work_ms=args.work_ms,
            fault=args.fault,
        )
        base = tempfile.mkdtemp(prefix="share-check-")
        t0 = time.monotonic()
        bad, figures, _ = run_once(cfg, base)
        took = time.monotonic() - t0
        status = "ok" if not bad else f"{len(bad)} VIOLATION(S)"
        print(f"run {i + 1}/{args.runs} seed {cfg.seed}: {status} in {took:.1f} s {figures}", flush=True)
        for line in bad[:50]:
            print(f"  {line}")
        failed += bool(bad)
        if args.keep or bad:
            print(f"  data and logs kept in {base}")
        else:
            subprocess.run(["rm", "-rf", base], check=False)
    print(f"{args.runs - failed}/{args.runs} runs passed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], Settings(**json.loads(os.environ["SHARE_CHECKER_SETTINGS"])))
    else:
        sys.exit(main())
